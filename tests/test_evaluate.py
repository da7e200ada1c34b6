"""The retrieval evaluation: metrics on hand-made embeddings with known answers, the protocol on a
tiny prepared dataset checked against the product's own embedding functions, and the command
line end to end (report files, JSON, PNGs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from conftest import TEXT_DIM, build_library, make_identity_predictor, melody, tiny_config

from stemserver.alignment import centred_unit_columns
from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import Settings, TextSettings
from stemserver.engine import Engine, Query
from stemserver.inference import encode_audio, mean_vector, stem_representation
from stemserver.model import StemJEPA
from stemserver.text import LabelEmbedder
from stemserver_training.cache import PreparedDataset, build_cache
from stemserver_training.datasets import read_dataset
from stemserver_training.evaluate import (
    CATEGORIES,
    alignment_curves,
    category_shares,
    chance_metrics,
    confusion_matrix,
    embed_targets,
    evaluate,
    level_label,
    main,
    nearest_neighbour_categories,
    rank_targets,
    retrieval_metrics,
    summarise,
)
from stemserver_training.sampler import EvaluationView, SamplerConfig

RATE = 16_000
SAMPLER = SamplerConfig(chunk_seconds=2.0)  # 12 columns of 160 ms: small, fast, still a sequence
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENV = {**os.environ, "STEMSERVER_CONFIG": ""}  # never read the developer's own config


# -- metrics on hand-made embeddings ---------------------------------------------------------------


def fan(n: int) -> np.ndarray:
    """n unit vectors at 0, 9, 18... degrees: the cosine to (1, 0) falls strictly with the index."""
    angles = np.deg2rad(9.0 * np.arange(n))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def test_retrieval_metrics_known_ranks():
    pool = fan(20)
    # Every query points at angle 0 (lengths differ: only the direction counts), so target t has rank t.
    targets = np.array([0, 0, 3, 7, 12, 19])
    queries = np.array([[1.0, 0.0], [3.0, 0.0], [0.5, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    metrics = retrieval_metrics(queries, pool, targets)
    assert metrics["queries"] == 6 and metrics["pool_size"] == 20
    assert metrics["R@1"] == pytest.approx(100 * 2 / 6)
    assert metrics["R@5"] == pytest.approx(100 * 3 / 6)  # ranks 0, 0, 3
    assert metrics["R@10"] == pytest.approx(100 * 4 / 6)  # ... and 7
    assert metrics["mean_normalised_rank"] == pytest.approx(100 * (0 + 0 + 3 + 7 + 12 + 19) / 6 / 20)
    assert metrics["median_normalised_rank"] == pytest.approx(100 * 5 / 20)  # median of 0 0 3 7 12 19 = 5
    ranks = rank_targets(queries, pool, targets)
    assert ranks.rank.tolist() == [0, 0, 3, 7, 12, 19]
    assert ranks.nearest.tolist() == [0] * 6


def test_ties_count_half_and_a_collapsed_model_scores_chance():
    a, b = [1.0, 0.0], [0.0, 1.0]
    # The target (0) shares its cosine with item 1: expected rank 0.5, found first half the time.
    ranks = rank_targets(np.array([a]), np.array([a, a, b]), np.array([0]))
    assert (ranks.above[0], ranks.tied[0], ranks.rank[0]) == (0, 1, 0.5)
    tied = summarise(ranks, ks=(1, 2))
    assert tied["R@1"] == pytest.approx(50.0) and tied["R@2"] == pytest.approx(100.0)
    # Collapse: every pool item the same vector (up to float noise below the tolerance).
    pool = np.ones((10, 4)) + np.random.default_rng(0).normal(scale=1e-9, size=(10, 4))
    collapsed = retrieval_metrics(np.ones((10, 4)), pool, np.arange(10))
    chance = chance_metrics(10)
    for key in ("R@1", "R@5", "R@10", "mean_normalised_rank", "median_normalised_rank"):
        assert collapsed[key] == pytest.approx(chance[key])


def test_chance_metrics():
    chance = chance_metrics(600)  # MUSDB18: 150 tracks x 4 stems
    assert chance["R@1"] == pytest.approx(100 / 600) and chance["R@10"] == pytest.approx(100 * 10 / 600)
    assert chance["median_normalised_rank"] == pytest.approx(100 * 299.5 / 600)  # ~50 %
    assert chance_metrics(3)["R@5"] == 100.0  # a pool smaller than k is always found


def test_rank_targets_checks_its_inputs():
    with pytest.raises(ValueError, match="target indices"):
        rank_targets(np.eye(2), np.eye(2), np.array([0, 2]))
    with pytest.raises(ValueError, match="2 queries but 1"):
        rank_targets(np.eye(2), np.eye(2), np.array([0]))


def test_nearest_neighbour_categories_by_hand():
    tracks = ["A", "A", "B", "B", "A"]
    labels = ["bass", "drums", "bass", "drums", "bass"]  # item 4: A's bass in another chunk
    target = np.array([0, 0, 0, 0, 1])
    nearest = np.array([0, 4, 2, 1, 2])
    categories = nearest_neighbour_categories(nearest, target, tracks, labels)
    assert categories.tolist() == list(CATEGORIES)  # one of each, in order
    assert category_shares(categories) == {name: 20.0 for name in CATEGORIES}
    # From embeddings: R@1 is exactly the "both right" share.
    pool = np.eye(5)
    queries = pool[[0, 4, 2, 1, 2]] + 0.1 * pool[target]  # nearest as above, the target second
    ranks = rank_targets(queries, pool, target)
    assert ranks.nearest.tolist() == nearest.tolist()
    assert summarise(ranks)["R@1"] == category_shares(
        nearest_neighbour_categories(ranks.nearest, target, tracks, labels))["both_right"] == 20.0


def test_confusion_matrix():
    counts = confusion_matrix(["bass", "bass", "drums", "vocals"], ["bass", "drums", "drums", "bass"],
                              ["bass", "drums", "vocals"])
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_alignment_curve_peaks_at_the_true_shift_and_matches_best_shift_centring():
    rng = np.random.default_rng(1)
    columns, shift = 20, 3
    stem = rng.normal(size=(columns, 8)).astype(np.float32)
    predicted = rng.normal(size=(columns, 8)).astype(np.float32)
    predicted[shift:] = stem[:-shift]  # prediction column i + 3 is stem column i
    curves = alignment_curves(torch.from_numpy(stem)[None], torch.from_numpy(predicted)[None], max_shift=5)
    raw, centred = curves["raw"][0].numpy(), curves["centred"][0].numpy()
    assert raw.shape == centred.shape == (11,)
    assert raw[5 + shift] == pytest.approx(1.0, abs=1e-6)
    assert int(np.argmax(raw)) == int(np.argmax(centred)) == 5 + shift
    s, p = centred_unit_columns(stem), centred_unit_columns(predicted)
    expected = [np.mean([s[i] @ p[i + j] for i in range(columns) if 0 <= i + j < columns]) for j in range(-5, 6)]
    np.testing.assert_allclose(centred, expected, atol=1e-6)


def test_label_levels():
    assert level_label(("guitar", "acoustic guitar"), "fine") == "acoustic guitar"
    assert level_label(("guitar", "acoustic guitar"), "coarse") == "guitar"
    assert level_label(("bass",), "coarse") == level_label(("bass",), "fine") == "bass"
    assert level_label((), "fine") == "music"


# -- the protocol on a tiny prepared dataset -------------------------------------------------------

LABEL_PATHS = {"bass": ["bass", "synth bass"], "lead": ["reed", "clarinet"], "keys": ["piano", "electric piano"]}
LABELS = sorted({label for path in LABEL_PATHS.values() for label in path})


def write_tracks(root: Path, tracks: dict[str, dict[str, np.ndarray]], labels: dict[str, list[str]]) -> Path:
    for track, stems in tracks.items():
        folder = root / track
        folder.mkdir(parents=True)
        for name, samples in stems.items():
            soundfile.write(folder / f"{name}.wav", samples, RATE)
        (folder / "labels.yaml").write_text("".join(f"{name}: [{', '.join(labels[name])}]\n" for name in stems))
    return root


def save_checkpoint(path: Path, model: StemJEPA, labels: list[str]) -> Path:
    embeddings = F.normalize(torch.randn(len(labels), TEXT_DIM, generator=torch.Generator().manual_seed(1)), dim=-1)
    Checkpoint.from_model(model, LabelEmbedder(labels, embeddings, {"backend": "test", "dim": TEXT_DIM})).save(path)
    return path


@pytest.fixture(scope="module")
def band(tmp_path_factory) -> dict[str, Path]:
    """Four 4 s tracks of three melodies with two-level labels, all in the test split; and a random
    tiny checkpoint whose target encoder differs from its context encoder (as after training)."""
    root = tmp_path_factory.mktemp("band")
    tracks = {f"track{t}": {name: melody(4.0, seed=10 * t + i) for i, name in enumerate(LABEL_PATHS)}
              for t in range(4)}
    write_tracks(root / "data", tracks, LABEL_PATHS)
    build_cache(read_dataset("folder", root / "data"), root / "cache", valid_fraction=0.0, test_fraction=0.0,
                progress=False)
    torch.manual_seed(0)
    model = StemJEPA(tiny_config())
    with torch.no_grad():
        for parameter in model.target_encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return {"cache": root / "cache", "checkpoint": save_checkpoint(root / "model.safetensors", model, LABELS),
            "root": root}


def band_view(cache: Path) -> EvaluationView:
    from stemserver_training.cache import open_cache

    return EvaluationView(open_cache(cache), SAMPLER, chunks_per_track=2)


def test_queries_and_pool_are_what_the_engine_and_the_library_compute(band, tmp_path):
    """The view's stems indexed into a real library: Engine.query, given each mix and label, scores
    every stem exactly as evaluate's query vector does against the stored window vectors, and
    evaluate's pool vectors are those stored vectors (up to their float16 storage)."""
    checkpoint = load_checkpoint(band["checkpoint"])
    model, labels = checkpoint.build_model(), checkpoint.label_embedder()
    view = band_view(band["cache"])
    embedded = embed_targets(model, labels, view, ("fine", "coarse"), batch_size=5, progress=False)
    assert len(embedded.targets) == len(view) == 4 * 2 * 3
    stems = tmp_path / "stems"
    stems.mkdir()
    for i in range(len(view)):
        soundfile.write(stems / f"{i:02d}.wav", view[i].target, RATE, subtype="FLOAT")
    library = build_library(stems, tmp_path / "library", band["checkpoint"])
    # the model's path alone: no bonus for the key and tempo the library estimated for these stems
    engine = Engine(band["checkpoint"], library, Settings(device="cpu", text=TextSettings(backend="none"),
                                                          key_weight=0.0, tempo_weight=0.0))
    index = engine.index
    assert len(index) == len(view)  # 2 s stems: one window each
    stored = {Path(index.files[int(file_id)].path).name: np.asarray(index.vectors[row], np.float32)
              for row, (file_id, _) in enumerate(index.windows)}
    for i in range(len(view)):
        np.testing.assert_allclose(embedded.pool[i], stored[f"{i:02d}.wav"], atol=1e-3)
    for i in (0, 7, len(view) - 1):
        example = view[i]
        assert (embedded.targets[i].track, embedded.targets[i].stem) == (example.track, example.stem)
        for level in ("fine", "coarse"):
            result = engine.query(Query(example.context, level_label(example.label_path, level), k=len(view)))
            expected = {name: float(vector @ embedded.queries[level][i]) for name, vector in stored.items()}
            scores = {Path(m.path).name: m.score for m in result.matches}
            assert scores == pytest.approx(expected, abs=1e-5)
            ranked = [expected[Path(m.path).name] for m in result.matches]
            assert ranked == pytest.approx(sorted(ranked, reverse=True), abs=1e-6)


def test_a_context_encoder_pool_is_the_stem_representation_of_the_context_encoder(band):
    checkpoint = load_checkpoint(band["checkpoint"])
    model, labels = checkpoint.build_model(), checkpoint.label_embedder()
    view = band_view(band["cache"])
    embedded = embed_targets(model, labels, view, ("fine",), "context", batch_size=5, progress=False)
    for i in (0, 7, len(view) - 1):
        for samples, vectors in ((view[i].target, embedded.pool), (view[i].context, embedded.baseline)):
            grid = torch.from_numpy(encode_audio(model, samples, torch.device("cpu"), target=False))
            np.testing.assert_allclose(vectors[i], mean_vector(stem_representation(grid).numpy()), atol=1e-5)
    again = embed_targets(model, labels, view, ("fine",), "context", batch_size=5, progress=False)
    assert np.array_equal(again.pool, embedded.pool) and np.array_equal(again.queries["fine"], embedded.queries["fine"])


def doubled_stems(tmp_path: Path) -> tuple[StemJEPA, LabelEmbedder, PreparedDataset]:
    """3 tracks, each one melody on two stems (guitar and organ); an identity predictor and equal
    encoders, so a query is exactly its target's embedding, tied with the double."""
    tracks = {}
    for t in range(3):
        tune = melody(4.0, seed=t)
        tracks[f"duo{t}"] = {"left": tune, "right": tune.copy()}
    write_tracks(tmp_path / "data", tracks, {"left": ["guitar"], "right": ["organ"]})
    dataset = build_cache(read_dataset("folder", tmp_path / "data"), tmp_path / "cache", valid_fraction=0.0,
                          test_fraction=0.0, progress=False)
    torch.manual_seed(0)
    model = make_identity_predictor(StemJEPA(tiny_config())).eval()
    labels = LabelEmbedder(["guitar", "organ"], F.normalize(torch.randn(2, TEXT_DIM), dim=-1),
                           {"backend": "test", "dim": TEXT_DIM})
    return model, labels, dataset


def test_known_answer_with_doubled_stems(tmp_path):
    """R@1 is 50 % (the target ties with its double), the target ranks 0.5, the nearest neighbour
    is the target or its double, and the alignment curve peaks at shift 0 with cosine 1."""
    model, labels, dataset = doubled_stems(tmp_path)
    metrics = evaluate(model, labels, dataset, sampler=SAMPLER, chunks_per_track=2, progress=False)
    assert list(metrics["levels"]) == ["fine"] and "one level" in metrics["notes"][0]
    fine = metrics["levels"]["fine"]
    pool_size = 3 * 2 * 2
    assert fine["retrieval"]["jepa"] == pytest.approx({
        "queries": pool_size, "pool_size": pool_size, "R@1": 50.0, "R@5": 100.0, "R@10": 100.0,
        "mean_normalised_rank": 100 * 0.5 / pool_size, "median_normalised_rank": 100 * 0.5 / pool_size})
    assert fine["retrieval"]["contrastive_baseline"]["R@1"] == pytest.approx(50.0)  # the mix is the double
    shares = fine["categories"]["jepa"]
    assert shares["both_right"] + shares["right_track_wrong_instrument"] == pytest.approx(100.0)
    alignment = fine["alignment"]
    zero = alignment["shifts"].index(0)
    assert alignment["shifts"] == list(range(-6, 7))  # half of the 12 columns each way
    assert alignment["peak_shift_raw"] == alignment["peak_shift_centred"] == 0
    assert alignment["raw"][zero] == pytest.approx(1.0, abs=1e-4)
    assert alignment["offset_found"] == 100.0
    assert fine["confusion"]["labels"] == ["guitar", "organ"]
    assert np.sum(fine["confusion"]["counts"]) == pool_size
    for target in metrics["targets"]:
        assert target["rank"]["fine"] == 0.5


def test_held_out_labels_are_reported_apart(tmp_path):
    """The zero-shot rows split the targets by whether their label was held out of training."""
    model, labels, dataset = doubled_stems(tmp_path)
    metrics = evaluate(model, labels, dataset, sampler=SAMPLER, chunks_per_track=2, progress=False,
                       holdout_labels=["organ"])
    fine = metrics["levels"]["fine"]
    zero_shot = fine["zero_shot"]
    assert zero_shot["holdout_labels"] == ["organ"]
    assert zero_shot["held_out"]["jepa"]["R@1"] == pytest.approx(fine["per_label"]["organ"]["R@1"])
    assert zero_shot["seen"]["jepa"]["R@1"] == pytest.approx(fine["per_label"]["guitar"]["R@1"])
    assert zero_shot["held_out"]["jepa"]["queries"] == zero_shot["seen"]["jepa"]["queries"] == 6
    assert zero_shot["held_out"]["contrastive_baseline"]["pool_size"] == 12
    assert "zero_shot" not in evaluate(model, labels, dataset, sampler=SAMPLER, chunks_per_track=2,
                                       progress=False)["levels"]["fine"]


# -- the command line ----------------------------------------------------------------------------


def test_command_line_writes_the_report(band, tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "stemserver_training.evaluate", str(band["checkpoint"]), str(band["cache"]),
         "--split", "all", "--chunk-seconds", "2", "--chunks-per-track", "2", "--out", str(out), "--device", "cpu",
         "--json"],
        capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    names = {"metrics.json", "report.md", "confusion.png", "confusion_coarse.png", "alignment.png"}
    assert {Path(p).name for p in printed["files"].values()} == names == {p.name for p in out.iterdir()}

    metrics = json.loads((out / "metrics.json").read_text())
    assert {"checkpoint", "dataset", "device", "elapsed_s", "protocol", "data", "levels", "targets",
            "notes", "library"} <= set(metrics)
    assert metrics["library"]["data"] == {**metrics["library"]["data"], "pool": 12, "queries": 12}
    assert list(metrics["library"]["levels"]) == ["fine", "coarse"]
    assert "targets" not in printed and printed["levels"] == metrics["levels"]
    assert metrics["protocol"]["pool_encoder"] == "target" and metrics["data"]["targets"] == 24
    assert list(metrics["levels"]) == ["fine", "coarse"]
    for level, results in metrics["levels"].items():
        assert set(results) == {"retrieval", "categories", "per_label", "confusion", "alignment"}
        assert set(results["retrieval"]) == {"jepa", "contrastive_baseline", "chance"}
        for row in results["retrieval"].values():
            assert 0 <= row["R@1"] <= row["R@5"] <= row["R@10"] <= 100
            assert 0 <= row["median_normalised_rank"] < 100 and 0 <= row["mean_normalised_rank"] < 100
        for shares in results["categories"].values():
            assert sum(shares.values()) == pytest.approx(100.0)
        assert set(results["per_label"]) == set(results["confusion"]["labels"]) == {
            level_label(path, level) for path in LABEL_PATHS.values()}
        assert sum(r["queries"] for r in results["per_label"].values()) == 24
        alignment = results["alignment"]
        assert len(alignment["raw"]) == len(alignment["centred"]) == len(alignment["shifts"]) == 13
        assert all(-1 <= c <= 1 for c in alignment["raw"] + alignment["centred"])
    assert len(metrics["targets"]) == 24
    assert all(0 <= t["nearest"]["coarse"] < 24 and 0 <= t["rank"]["fine"] < 24 for t in metrics["targets"])

    report = (out / "report.md").read_text()
    for text in ("## Library protocol", "| model, fine labels |", "| chance, coarse labels |", "## Papers' protocol",
                 "| JEPA, fine labels |", "| JEPA, coarse labels |", "contrastive baseline", "| chance |",
                 "(confusion.png)", "(confusion_coarse.png)", "(alignment.png)", "| clarinet |"):
        assert text in report
    for png in ("confusion.png", "confusion_coarse.png", "alignment.png"):
        assert (out / png).read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(out / png)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300


def test_command_line_errors(band, tmp_path, capsys):
    common = ["--chunk-seconds", "2", "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]
    assert main([str(tmp_path / "missing.safetensors"), str(band["cache"]), "--split", "all", *common]) == 1
    assert "no checkpoint file" in capsys.readouterr().err
    assert main([str(band["checkpoint"]), str(band["cache"]), *common]) == 1  # the default split, test, is empty
    assert "no test tracks" in capsys.readouterr().err
    assert main([str(band["checkpoint"]), str(tmp_path), "--split", "all", *common]) == 1
    assert "index.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(band["checkpoint"]), str(band["cache"]), "--chunks-per-track", "0"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "out").exists()


def test_a_target_shift_moves_the_alignment_peak_by_as_many_columns(tmp_path):
    """Pool stems read 2 columns (0.32 s) later than their mix: the identity predictor's curve
    peaks at j = +2, and the aligned protocol's perfect cosine is gone from j = 0."""
    model, labels, dataset = doubled_stems(tmp_path)
    metrics = evaluate(model, labels, dataset, sampler=SAMPLER, chunks_per_track=1, progress=False,
                       target_shift_s=0.32)
    assert metrics["data"]["target_shift_s"] == 0.32
    alignment = metrics["levels"]["fine"]["alignment"]
    assert alignment["peak_shift_raw"] == 2
    assert alignment["raw"][alignment["shifts"].index(2)] > alignment["raw"][alignment["shifts"].index(0)]
