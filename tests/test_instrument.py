"""The instrument head: trained on a real cache of real audio, it names stems; bundles carry it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import TEXT_DIM, make_checkpoint, tiny_config

from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import Settings, TextSettings
from stemserver.engine import Engine, Query
from stemserver.errors import AudioError, CheckpointError, LibraryError
from stemserver.features import band_statistics
from stemserver.indexing import index_folders
from stemserver.inference import instrument_vectors
from stemserver.model import ModelConfig, StemJEPA
from stemserver.text import LabelEmbedder
from stemserver_training.cache import build_cache
from stemserver_training.datasets import Stem, Track
from stemserver_training.instrument import HeadTraining, train_head
from stemserver_training.instrument_eval import evaluate, linear_probe

RATE = 16_000
CPU = torch.device("cpu")
LABELS = ["bass", "synth bass", "drums", "kick drum", "keys", "piano"]
SETTINGS = HeadTraining(steps=120, batch_size=64, lr=3e-3, warmup_steps=10, hidden=64, crops_per_stem=8,
                        min_crop_seconds=0.5, max_crop_seconds=1.5)


def bass_line(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Low sustained sines, a new pitch every half second: tonal, dark, smooth."""
    out = np.zeros(int(seconds * RATE), np.float32)
    for start in range(0, len(out), RATE // 2):
        t = np.arange(min(RATE // 2, len(out) - start)) / RATE
        out[start : start + len(t)] = 0.4 * np.sin(2 * np.pi * rng.uniform(40, 110) * t)
    return out


def drum_hits(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Bursts of white noise decaying fast, at random moments: broadband and percussive."""
    out = np.zeros(int(seconds * RATE), np.float32)
    for start in rng.integers(0, len(out) - RATE // 8, size=int(4 * seconds)):
        t = np.arange(RATE // 8) / RATE
        out[start : start + len(t)] += (0.4 * rng.standard_normal(len(t)) * np.exp(-30 * t)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A prepared cache, built by the real builder from wav files: 8 train and 6 test tracks of a
    bass and a drum stem each, and one unlabelled stem."""
    root = tmp_path_factory.mktemp("tracks")
    rng = np.random.default_rng(0)
    tracks = []
    for i in range(14):
        stems = []
        for name, path, make in (("bass", ("bass", "synth bass"), bass_line), ("drums", ("drums", "kick drum"),
                                                                                 drum_hits)):
            file = root / f"t{i}" / f"{name}.wav"
            file.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(file, make(3.0, rng), RATE)
            stems.append(Stem(name, (file,), path))
        if i == 0:  # a stem whose instrument the dataset does not know: neither trained on nor scored
            soundfile.write(root / "t0" / "mystery.wav", drum_hits(3.0, rng), RATE)
            stems.append(Stem("mystery", (root / "t0" / "mystery.wav",), ()))
        tracks.append(Track(f"t{i}", tuple(stems), split="train" if i < 8 else "test"))
    cache_dir = tmp_path_factory.mktemp("cache")
    build_cache(tracks, cache_dir, progress=False)
    return cache_dir


@pytest.fixture(scope="module")
def embedder() -> LabelEmbedder:
    """Random unit text embeddings for the labels: the head must learn to point at them."""
    generator = torch.Generator().manual_seed(1)
    vectors = torch.nn.functional.normalize(torch.randn(len(LABELS), TEXT_DIM, generator=generator), dim=-1)
    return LabelEmbedder(LABELS, vectors, {"backend": "test", "dim": TEXT_DIM})


@pytest.fixture(scope="module")
def base(tmp_path_factory, embedder) -> Path:
    """A tiny model bundle without a head, whose label cache holds every label of the cache."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    Checkpoint.from_model(StemJEPA(tiny_config()), embedder, info={"steps": 7}).save(path)
    return path


@pytest.fixture(scope="module")
def trained(base, cache) -> Checkpoint:
    from stemserver_training.cache import open_cache

    return train_head(load_checkpoint(base), open_cache(cache), SETTINGS, progress=False, log=lambda _: None)


def margins(model: StemJEPA, cache: Path, embedder: LabelEmbedder) -> list[float]:
    """For each test stem: cos(vector, text(its coarse label)) - cos(vector, text(the other))."""
    from stemserver_training.cache import open_cache

    test = [stem for track in open_cache(cache).split("test").tracks for stem in track.stems]
    assert len(test) == 12
    text = dict(zip(["bass", "drums"], embedder.embed(["bass", "drums"]).numpy()))
    result = []
    for stem in test:
        vector = instrument_vectors(model, stem.read(0, stem.num_samples), CPU)
        right, wrong = stem.label_path[0], ({"bass", "drums"} - {stem.label_path[0]}).pop()
        result.append(float(vector @ text[right] - vector @ text[wrong]))
    return result


def test_the_trained_head_names_held_out_stems_by_their_text(trained, cache, embedder):
    assert min(margins(trained.build_model(), cache, embedder)) > 0.2


def test_before_training_the_same_check_fails(base, cache, embedder):
    """The check above can fail: random text directions are nearly orthogonal, so a head that has
    not learned to point at them (the same run with a learning rate of 1e-9) has no margin."""
    from stemserver_training.cache import open_cache

    untrained = train_head(load_checkpoint(base), open_cache(cache), HeadTraining(**{**asdict(SETTINGS), "lr": 1e-9}),
                           progress=False, log=lambda _: None).build_model()
    assert min(margins(untrained, cache, embedder)) < 0.2


def test_the_bundle_is_its_input_plus_the_head_and_saves_bit_exact(base, trained, tmp_path):
    original = load_checkpoint(base)
    head = {k for k in trained.state if k.startswith("instrument.")}
    assert head and set(trained.state) - head == set(original.state)
    for name, tensor in original.state.items():
        assert trained.state[name].dtype == tensor.dtype and torch.equal(trained.state[name], tensor), name
    assert trained.config.instrument_hidden == SETTINGS.hidden
    assert trained.info["steps"] == 7 and trained.info["instrument_head"]["steps"] == SETTINGS.steps

    trained.save(tmp_path / "head.safetensors")
    loaded = load_checkpoint(tmp_path / "head.safetensors")
    assert loaded.config == trained.config and loaded.labels == trained.labels
    assert set(loaded.state) == set(trained.state)
    for name, tensor in trained.state.items():
        assert loaded.state[name].dtype == tensor.dtype and torch.equal(loaded.state[name], tensor), name
    samples = bass_line(2.0, np.random.default_rng(5))
    np.testing.assert_array_equal(instrument_vectors(loaded.build_model(), samples, CPU),
                                  instrument_vectors(trained.build_model(), samples, CPU))


def test_a_bundle_without_a_head_still_loads(tmp_path):
    make_checkpoint(tmp_path / "old.safetensors")
    model = load_checkpoint(tmp_path / "old.safetensors").build_model()
    assert model.config.instrument_hidden == 0 and model.instrument is None
    old_config = model.config.to_dict()
    del old_config["instrument_hidden"]  # what a checkpoint from before the head stores
    assert ModelConfig.from_dict(old_config) == model.config


def test_a_model_without_a_head_says_how_to_get_one():
    with pytest.raises(CheckpointError, match="no instrument head.*train-instrument"):
        instrument_vectors(StemJEPA(tiny_config()).eval(), np.zeros(RATE, np.float32) + 0.1, CPU)


@pytest.mark.parametrize("samples, message", [
    (np.full(RATE, np.nan, np.float32), "NaN or infinite"),
    (np.zeros(0, np.float32), "at least 0.16 s"),
    (np.zeros(RATE, np.float32), "silent"),
    (np.zeros((2, RATE), np.float32), "mono"),
])
def test_unusable_audio_is_a_clear_error(samples, message):
    model = StemJEPA(tiny_config(instrument_hidden=16)).eval()
    with pytest.raises(AudioError, match=message):
        instrument_vectors(model, samples, CPU)


def test_long_audio_is_windowed_and_level_does_not_matter():
    """A minute-long stem gives a unit vector from bounded windows, whatever its gain."""
    model = StemJEPA(tiny_config(instrument_hidden=16)).eval()
    samples = bass_line(60.0, np.random.default_rng(2))
    vector = instrument_vectors(model, samples, CPU)
    assert vector.shape == (TEXT_DIM,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(instrument_vectors(model, 0.05 * samples, CPU), vector, atol=1e-5)


def test_silent_gaps_do_not_dilute_the_vector():
    """A part that rests for most of a file is named by what it plays, not by its silence."""
    model = StemJEPA(tiny_config(instrument_hidden=16)).eval()
    played = bass_line(8.0, np.random.default_rng(3))
    with_rests = np.concatenate([played, np.zeros(24 * RATE, np.float32)])
    np.testing.assert_allclose(instrument_vectors(model, with_rests, CPU), instrument_vectors(model, played, CPU),
                               atol=1e-5)


def test_band_statistics_see_sustain_and_onsets():
    mel = torch.zeros(1, 80, 100)
    mel[:, :, ::10] = 1.0  # clicks
    steady = torch.ones(1, 80, 100) * 0.1
    clicks, flat = band_statistics(mel)[0], band_statistics(steady)[0]
    assert clicks.shape == (240,)
    assert (clicks[160:] > 0.1).all() and flat[80:].abs().max() < 1e-6


def test_held_out_labels_are_not_trained_on(base, cache):
    from stemserver_training.cache import open_cache

    settings = HeadTraining(**{**asdict(SETTINGS), "steps": 2, "holdout_labels": ("kick drum",)})
    facts = train_head(load_checkpoint(base), open_cache(cache), settings, progress=False,
                       log=lambda _: None).info["instrument_head"]
    assert facts["labels"] == {"coarse": ["bass"], "fine": ["synth bass"]}
    assert facts["stems"] == 8


def test_the_evaluation_scores_the_trained_head(trained, cache, tmp_path):
    trained.save(tmp_path / "head.safetensors")
    report = evaluate(tmp_path / "head.safetensors", cache, probe=True, progress=False)
    assert report["stems"] == 12
    for level in ("coarse", "fine"):
        assert report["levels"][level]["top1"] == 1.0
        assert report["levels"][level]["precision_at_10"] == 1.0
        assert report["probes"][level]["log_mel"] == 1.0


def test_the_linear_probe_learns_and_misses_labels_it_never_saw():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5))
    y = np.where(x[:, 0] + 0.1 * x[:, 1] > 0, "a", "b")
    assert linear_probe(x[:150], y[:150], x[150:], y[150:]) > 0.9
    assert linear_probe(x[:150], y[:150], x[150:], np.full(50, "c")) == 0.0


def test_the_verb_writes_a_bundle_and_explains_a_missing_checkpoint(base, cache, tmp_path):
    out = tmp_path / "with-head.safetensors"
    done = subprocess.run([sys.executable, "-m", "stemserver", "train-instrument", str(base), str(cache), "--out",
                           str(out), "--steps", "3", "--hidden", "8", "--threads", "1", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out).config.instrument_hidden == 8
    missing = subprocess.run([sys.executable, "-m", "stemserver", "train-instrument", str(tmp_path / "nope"),
                              str(cache), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "stemserver: error: no checkpoint file" in missing.stderr


def test_the_instrument_asked_decides_what_comes_back(trained, tmp_path):
    """A library of 5 bass lines and 5 drum tracks under opaque names, indexed by the real indexer
    with the trained head: a query for "bass" returns the basses first, one for "drums" the drums,
    whatever the mix; `library list` names each file's instrument; weight 0 turns it off, and what it adds
    is a log-probability: at most 0, larger for every bass than for any drum track when "bass" is asked."""
    bundle = tmp_path / "with-head.safetensors"
    trained.save(bundle)
    rng = np.random.default_rng(5)
    folder = tmp_path / "samples"
    folder.mkdir()
    kinds = {}
    for i in range(10):
        kind = "bass" if i % 2 else "drums"
        soundfile.write(folder / f"{i:04d}.wav", (bass_line if kind == "bass" else drum_hits)(10.0, rng), RATE)
        kinds[f"{i:04d}.wav"] = kind
    settings = Settings(device="cpu", threads=1, text=TextSettings(backend="none"))
    indexed = index_folders([folder], tmp_path / "library", bundle, settings, progress=False)
    assert indexed["index"]["files_with_an_instrument"] == 10
    engine = Engine(bundle, tmp_path / "library", settings)
    mix = bass_line(8.0, rng) + drum_hits(8.0, rng)
    for asked in ("bass", "drums"):
        matches = engine.query(Query(mix, asked, k=10)).matches
        assert [kinds[Path(m.path).name] for m in matches[:5]] == [asked] * 5
        assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    plain = Engine(bundle, tmp_path / "library", replace(settings, instrument_weight=0.0))
    scores = {asked: {Path(m.path).name: m.score for m in plain.query(Query(mix, asked, k=10)).matches}
              for asked in ("bass", "drums")}
    weighted = {Path(m.path).name: m.score for m in engine.query(Query(mix, "bass", k=10)).matches}
    gain = {name: weighted[name] - scores["bass"][name] for name in kinds}  # the log-probability of "bass", weighted
    assert min(gain[name] for name, kind in kinds.items() if kind == "bass") \
        > max(gain[name] for name, kind in kinds.items() if kind == "drums")
    assert max(gain.values()) <= 1e-4  # a probability is at most 1
    listed = subprocess.run([sys.executable, "-m", "stemserver", "library", "list", "--library",
                             str(tmp_path / "library"), "--checkpoint", str(bundle), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    predicted = {Path(r["path"]).name: r["instrument"] for r in json.loads(listed.stdout)}
    family = {"bass": "bass", "synth bass": "bass", "drums": "drums", "kick drum": "drums"}
    assert {name: family.get(instrument) for name, instrument in predicted.items()} == kinds


def test_a_damaged_instrument_file_is_a_library_error_that_says_how_to_repair(trained, tmp_path):
    bundle = tmp_path / "with-head.safetensors"
    trained.save(bundle)
    folder = tmp_path / "samples"
    folder.mkdir()
    soundfile.write(folder / "0001.wav", bass_line(3.0, np.random.default_rng(0)), RATE)
    settings = Settings(device="cpu", threads=1, text=TextSettings(backend="none"))
    indexed = index_folders([folder], tmp_path / "library", bundle, settings, progress=False)
    stored = tmp_path / "library" / "index" / indexed["index"]["folder"] / "instruments.npz"
    stored.write_bytes(stored.read_bytes()[:40])  # truncated
    with pytest.raises(LibraryError, match="instruments.npz is unreadable.*library repair"):
        Engine(bundle, tmp_path / "library", settings)
