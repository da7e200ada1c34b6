"""benchmarks/retrieval.py: the library protocol through the real command line (index, serve, query
--server) gives exactly the figures of the in-process protocol (evaluate_library) on the same data
and seed; and a pool larger than a server query's k is refused with the --tracks that fits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch
import torch.nn.functional as F
from conftest import TEXT_DIM, melody, tiny_config, tone

from stemserver.checkpoint import Checkpoint
from stemserver.config import Settings, TextSettings
from stemserver.model import StemJEPA
from stemserver.text import LabelEmbedder
from stemserver_training.cache import build_cache
from stemserver_training.datasets import read_dataset
from stemserver_training.library_protocol import evaluate_library

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval.py"
ENV = {**os.environ, "STEMSERVER_CONFIG": ""}  # never read the developer's own config
RATE = 16_000
SEED = 3
STEMS = {"bass": "bass synthesizer (moog etc)", "guitar": "clean electric guitar", "bowed_strings": "violin (solo)"}
TRACKS = [(120, "A minor"), (90, "C major"), (122, "E minor"), (180, "F# major")]  # tempo, key of each track


def write_moises_tracks(root: Path) -> None:
    """Four 10 s tracks of three melodic stems each, with the tempo and key a data.json states."""
    for t, (bpm, key) in enumerate(TRACKS):
        folder = root / f"track-{t}"
        stems = []
        for s, (stem_name, track_type) in enumerate(STEMS.items()):
            (folder / stem_name).mkdir(parents=True)
            soundfile.write(folder / stem_name / f"src{t}{s}.wav", melody(10.0, seed=10 * t + s), RATE)
            stems.append({"stemName": stem_name, "id": f"s{s}",
                          "tracks": [{"trackType": track_type, "id": f"src{t}{s}", "extension": "wav"}]})
        (folder / "data.json").write_text(json.dumps({"song": f"song {t}", "artist": "someone", "bpm": bpm,
                                                     "key": key, "stems": stems}))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """The tiny cache, and a random tiny checkpoint whose label cache holds every label of it (so no
    text model is needed) and whose target encoder differs from its context encoder."""
    root = tmp_path_factory.mktemp("retrieval")
    write_moises_tracks(root / "data")
    dataset = build_cache(read_dataset("moisesdb", root / "data"), root / "cache", valid_fraction=0.0,
                          test_fraction=0.0, progress=False)
    labels = sorted({label for track in dataset.tracks for stem in track.stems for label in stem.label_path})
    torch.manual_seed(0)
    model = StemJEPA(tiny_config())
    with torch.no_grad():
        for parameter in model.target_encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    embeddings = F.normalize(torch.randn(len(labels), TEXT_DIM, generator=torch.Generator().manual_seed(1)), dim=-1)
    checkpoint = root / "model.safetensors"
    cache = LabelEmbedder(labels, embeddings, {"backend": "test", "dim": TEXT_DIM})
    Checkpoint.from_model(model, cache).save(checkpoint)
    return {"cache": root / "cache", "dataset": dataset, "checkpoint": checkpoint}


def benchmark(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARK), *arguments], capture_output=True, text=True, env=ENV,
                          timeout=600)


@pytest.mark.slow
def test_the_product_scores_what_the_in_process_protocol_scores(prepared, tmp_path):
    done = benchmark("--cache", str(prepared["cache"]), "--split", "all", "--tracks", "3", "--checkpoint",
                     str(prepared["checkpoint"]), "--seed", str(SEED), "--threads", "1", "--device", "cpu",
                     "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)

    dataset = prepared["dataset"]
    first_three = type(dataset)(dataset.cache_dir, dataset.sample_rate, dataset.tracks[:3])
    expected = evaluate_library(prepared["checkpoint"], first_three,
                                Settings(device="cpu", threads=1, text=TextSettings(backend="none")), seed=SEED,
                                progress=False)
    assert measured["data"]["pool"] == expected["data"]["pool"] == 9
    assert measured["data"]["queries"] == expected["data"]["queries"] > 0
    assert measured["data"]["audio_seconds"] == pytest.approx(expected["data"]["audio_seconds"])
    assert measured["levels"] == expected["levels"]  # every figure, at both label levels, model and chance
    fine = measured["levels"]["fine"]["model"]
    assert fine["key_agreement@10"] is not None and fine["tempo_agreement@10"] is not None
    assert fine["offset_median_error_s"] is not None  # some true stems are found, and their offsets compared
    timings = measured["timings"]
    assert timings["query_processes"] == 2 * measured["data"]["queries"]
    assert timings["index_process_s"] >= timings["index_s"] > 0

    table = benchmark("--cache", str(prepared["cache"]), "--split", "all", "--tracks", "1", "--checkpoint",
                      str(prepared["checkpoint"]), "--threads", "1", "--device", "cpu", "--no-progress")
    assert table.returncode == 0, table.stderr
    assert "fine labels" in table.stdout and "chance (coarse)" in table.stdout


def test_a_pool_larger_than_a_query_can_rank_is_refused_with_the_tracks_that_fit(tmp_path):
    """35 tracks of 3 stems: 105 > MAX_K; the first 33 tracks hold 99."""
    root = tmp_path / "data"
    for t in range(35):
        folder = root / f"track{t:02d}"
        folder.mkdir(parents=True)
        for name in ("a", "b", "c"):
            soundfile.write(folder / f"{name}.wav", tone(220.0, 0.25, RATE), RATE)
    build_cache(read_dataset("folder", root), tmp_path / "cache", valid_fraction=0.0, test_fraction=0.0,
                progress=False)
    done = benchmark("--cache", str(tmp_path / "cache"), "--split", "train", "--no-progress")
    assert done.returncode == 1
    assert "105 stems" in done.stderr and "--tracks 33 (the first 33 tracks hold 99 stems)" in done.stderr
    assert benchmark("--demo", "--tracks", "3").returncode == 2  # usage: --tracks goes with --cache
