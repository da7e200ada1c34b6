"""The context/target sampler (Stem-JEPA 3.2) and the evaluation view, on a tiny real cache."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from stemserver_training.cache import PreparedDataset, build_cache
from stemserver_training.datasets import Stem, Track
from stemserver_training.sampler import (
    Batch,
    ContextTargetDataset,
    EvaluationView,
    SamplerConfig,
    SamplingError,
    active_stems,
    collate_examples,
    evaluation_chunk_starts,
    read_chunk,
)

RATE = 16000
SECONDS = 2.0
CONFIG = SamplerConfig(chunk_seconds=0.5)  # 8000-sample chunks in 2 s tracks
CHUNK = 8000
DRAWS = 2000
CHI_SQUARE_999 = {1: 10.83, 2: 13.82, 3: 16.27}  # chi-square critical values at p = 0.001, by df


def signal(kind: str, active: tuple[float, float] = (0.0, SECONDS), amplitude: float = 0.5,
           seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    """A tone or noise burst sounding only within `active` (seconds)."""
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "noise":
        x = np.random.default_rng(seed).uniform(-1, 1, len(t))
    else:
        x = np.sin(2 * np.pi * float(kind) * t)
    return (amplitude * x * ((t >= active[0]) & (t < active[1]))).astype(np.float32)


# name -> stems: (name, label path, samples)
TRACKS = {
    "band": [
        ("bass", ("bass", "fingered bass"), signal("55")),
        ("drums", ("drums", "drum kit"), signal("noise", (0.0, 1.0))),
        ("violin", ("strings", "violin"), signal("660", (1.0, 2.0))),
        ("pad", (), signal("330")),  # unlabelled: conditioned on "music"
        ("keys", ("piano", "electric piano"), signal("440")),
        ("whisper", ("vocals",), signal("880", amplitude=0.005)),  # below the threshold everywhere
        ("silence", ("other",), np.zeros(int(SECONDS * RATE), np.float32)),
    ],
    "trio": [
        ("piano", ("piano", "grand piano"), signal("262")),
        ("guitar", ("guitar",), signal("noise", seed=1, amplitude=0.2)),
        ("vocals", ("vocals", "lead female singer"), signal("523")),
    ],
    "short": [  # shorter than a chunk: read from its start, zero-padded
        ("a", ("bass",), signal("110", seconds=0.3)),
        ("b", ("drums",), signal("noise", seconds=0.3)),
    ],
    "sparse": [  # two stems that never sound in the same chunk: never an example
        ("early", ("guitar",), signal("196", (0.0, 0.5))),
        ("late", ("bass",), signal("98", (1.5, 2.0))),
    ],
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("sampler")
    tracks = []
    for track_name, stems in TRACKS.items():
        built = []
        for name, label_path, samples in stems:
            path = root / track_name / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, samples, RATE, subtype="FLOAT")
            built.append(Stem(name, (path,), label_path))
        tracks.append(Track(track_name, tuple(built)))
    return build_cache(tracks, root / "cache", valid_fraction=0, test_fraction=0, progress=False)


@pytest.fixture(scope="module")
def draws(prepared) -> list:
    dataset = ContextTargetDataset(prepared, num_examples=DRAWS, seed=7, config=CONFIG)
    return [dataset[i] for i in range(DRAWS)]


def track_named(prepared: PreparedDataset, name: str):
    return next(track for track in prepared.tracks if track.name == name)


def test_every_example_is_a_valid_context_target_pair(prepared, draws):
    for example in draws:
        track = track_named(prepared, example.track)
        names = [stem.name for stem in track.stems]
        chunk = read_chunk(track, example.start, CHUNK)
        active = {names[i] for i in active_stems(chunk, CONFIG)}
        assert example.context.shape == example.target.shape == (CHUNK,)
        assert example.context.dtype == example.target.dtype == np.float32
        # Never a silent target; the context is a sum of other active stems, never the target.
        assert np.abs(example.target).max() > CONFIG.min_peak
        assert example.stem in active
        assert example.stem not in example.context_stems
        assert set(example.context_stems) <= active
        assert 1 <= len(example.context_stems) <= len(active) - 1
        np.testing.assert_array_equal(example.target, chunk[names.index(example.stem)])
        expected_context = sum(chunk[names.index(name)] for name in example.context_stems)
        np.testing.assert_allclose(example.context, expected_context, atol=1e-6)
        # The label is one level of the target's path, or "music" when it has none.
        label_path = track.stems[names.index(example.stem)].label_path
        assert example.label_path == label_path
        assert example.label in label_path if label_path else example.label == "music"


def test_inactive_stems_and_impossible_tracks_never_appear(draws):
    used = Counter((e.track, name) for e in draws for name in (e.stem, *e.context_stems))
    assert used[("band", "whisper")] == used[("band", "silence")] == 0
    assert "sparse" not in {e.track for e in draws}
    assert {e.track for e in draws} == {"band", "trio", "short"}
    # Tracks are drawn uniformly; "sparse" never yields a chunk, so its draws go to the others.
    shares = Counter(e.track for e in draws)
    assert all(abs(shares[name] / DRAWS - 1 / 3) < 0.05 for name in shares)


def test_short_tracks_are_zero_padded(draws):
    short = [e for e in draws if e.track == "short"]
    assert short and all(e.start == 0 for e in short)
    assert all(not e.target[int(0.3 * RATE):].any() and np.abs(e.target[:100]).max() > 0 for e in short)


def test_k_is_uniform_in_1_to_n_active_minus_1(prepared, draws):
    by_active = defaultdict(list)
    for e in draws:
        track = track_named(prepared, e.track)
        n_active = len(active_stems(read_chunk(track, e.start, CHUNK), CONFIG))
        by_active[n_active].append(len(e.context_stems))
    assert set(by_active) >= {2, 3, 4}  # band has 3 to 5 active stems depending on the chunk
    for n_active, ks in by_active.items():
        counts = np.bincount(ks, minlength=n_active)[1:]
        assert len(counts) == n_active - 1 and counts.all(), f"n_active={n_active}: k counts {counts}"
        if n_active > 2 and len(ks) >= 100:
            expected = len(ks) / (n_active - 1)
            chi_square = float(((counts - expected) ** 2 / expected).sum())
            assert chi_square < CHI_SQUARE_999[n_active - 2], f"n_active={n_active}: k counts {counts}"


def test_labels_are_drawn_from_every_level_of_the_path(draws):
    by_path = defaultdict(Counter)
    for e in draws:
        by_path[e.label_path][e.label] += 1
    assert set(by_path[()]) == {"music"}
    assert set(by_path[("guitar",)]) == {"guitar"}
    two_level = [(path, labels) for path, labels in by_path.items() if len(path) == 2]
    assert len(two_level) >= 5
    for path, labels in two_level:
        assert set(labels) == set(path)
        assert labels[path[0]] / sum(labels.values()) == pytest.approx(0.5, abs=0.15)
    coarse = sum(labels[path[0]] for path, labels in two_level)
    assert coarse / sum(sum(labels.values()) for _, labels in two_level) == pytest.approx(0.5, abs=0.05)


def test_an_example_is_a_pure_function_of_seed_and_index(prepared, draws):
    again = ContextTargetDataset(prepared, num_examples=DRAWS, seed=7, config=CONFIG)
    for i in (0, 1, 999, DRAWS - 1):
        example = again[i]
        assert np.array_equal(example.context, draws[i].context)
        assert np.array_equal(example.target, draws[i].target)
        assert (example.label, example.track, example.stem, example.start, example.context_stems) == (
            draws[i].label, draws[i].track, draws[i].stem, draws[i].start, draws[i].context_stems)
    other_seed = ContextTargetDataset(prepared, num_examples=DRAWS, seed=8, config=CONFIG)
    assert [other_seed[i].start for i in range(20)] != [draws[i].start for i in range(20)]
    with pytest.raises(IndexError):
        again[DRAWS]


def batches_equal(a: Batch, b: Batch) -> bool:
    return (torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
            and torch.equal(a.starts, b.starts)
            and (a.labels, a.label_paths, a.tracks, a.stems, a.context_stems)
            == (b.labels, b.label_paths, b.tracks, b.stems, b.context_stems))


def test_dataloader_batches_are_the_same_with_any_number_of_workers_and_on_resume(prepared):
    dataset = ContextTargetDataset(prepared, num_examples=32, seed=3, config=CONFIG)
    serial = list(DataLoader(dataset, batch_size=8, collate_fn=collate_examples))
    parallel = list(DataLoader(dataset, batch_size=8, collate_fn=collate_examples, num_workers=2))
    assert len(serial) == len(parallel) == 4
    assert all(batches_equal(a, b) for a, b in zip(serial, parallel))
    # Resuming at step 2 needs nothing but the step.
    resumed = list(DataLoader(dataset, batch_size=8, collate_fn=collate_examples, sampler=range(16, 32)))
    assert all(batches_equal(a, b) for a, b in zip(resumed, serial[2:]))
    batch = serial[0]
    assert batch.context.shape == batch.target.shape == (8, CHUNK)
    assert batch.context.dtype == batch.target.dtype == torch.float32
    assert batch.starts.dtype == torch.int64 and len(batch.labels) == 8


def test_unsatisfiable_thresholds_and_empty_splits_are_clear_errors(prepared):
    strict = SamplerConfig(chunk_seconds=0.5, min_peak=5.0, chunk_tries=2, track_tries=3)
    with pytest.raises(SamplingError, match="no chunk with two active stems in 3 tracks x 2 chunks"):
        ContextTargetDataset(prepared, num_examples=1, config=strict)[0]
    with pytest.raises(SamplingError, match="no tracks to sample from"):
        ContextTargetDataset(prepared.split("test"), num_examples=1, config=CONFIG)


@pytest.mark.parametrize("settings, message", [
    ({"chunk_seconds": 0}, "chunk_seconds"), ({"min_peak": -1}, "thresholds"), ({"chunk_tries": 0}, "tries")])
def test_invalid_sampler_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**settings)


def test_activity_by_peak_and_by_rms():
    clicks = np.zeros(RATE, np.float32)
    clicks[::4000] = 0.5  # loud but momentary: bleed or a click track
    chunk = np.stack([signal("440", seconds=1.0), clicks, np.zeros(RATE, np.float32),
                      signal("440", seconds=1.0, amplitude=0.005)])
    assert list(active_stems(chunk, SamplerConfig())) == [0, 1]
    assert list(active_stems(chunk, SamplerConfig(min_rms=0.01))) == [0]


# --- Evaluation view ----------------------------------------------------------------------------

@pytest.mark.parametrize("num_samples, max_chunks, starts", [
    (32000, 10, [0, 8000, 16000, 24000]),  # as many as fit, back to back
    (32000, 3, [1333, 12000, 22667]),  # centres of three equal parts
    (20000, 1, [6000]),  # one chunk: the middle of the track
    (5000, 4, [0]),  # shorter than a chunk: read from the start, padded
])
def test_evaluation_chunk_starts(num_samples, max_chunks, starts):
    got = evaluation_chunk_starts(num_samples, CHUNK, max_chunks)
    assert got == starts
    assert all(b - a >= CHUNK for a, b in zip(got, got[1:]))
    assert all(0 <= s <= max(num_samples - CHUNK, 0) for s in got)


def test_evaluation_view_pairs_every_active_stem_with_the_mix_of_the_others(prepared):
    view = EvaluationView(prepared, CONFIG, chunks_per_track=4)
    chunks = defaultdict(list)
    for i in range(len(view)):
        item = view[i]
        chunks[(item.track, item.start)].append(item)
    assert {track for track, _ in chunks} == {"band", "trio", "short"}  # "sparse" never has 2 active
    for (track_name, start), items in chunks.items():
        track = track_named(prepared, track_name)
        assert start in evaluation_chunk_starts(track.num_samples, CHUNK, 4)
        names = [stem.name for stem in track.stems]
        chunk = read_chunk(track, start, CHUNK)
        active = [names[i] for i in active_stems(chunk, CONFIG)]
        assert sorted(item.stem for item in items) == sorted(active)  # every active stem, once
        for item in items:
            others = [name for name in active if name != item.stem]
            assert sorted(item.context_stems) == sorted(others)
            np.testing.assert_array_equal(item.target, chunk[names.index(item.stem)])
            np.testing.assert_allclose(item.context, sum(chunk[names.index(n)] for n in others), atol=1e-6)
            label_path = track.stems[names.index(item.stem)].label_path
            assert item.label_path == label_path
            assert item.label == (label_path[-1] if label_path else "music")
    assert len(chunks) == 4 + 4 + 1
    band = [item.stem for (track, _), items in chunks.items() if track == "band" for item in items]
    assert "whisper" not in band and "silence" not in band
    assert EvaluationView(prepared, CONFIG, chunks_per_track=4).items == view.items  # fixed
    batch = next(iter(DataLoader(view, batch_size=5, collate_fn=collate_examples)))
    assert batch.context.shape == (5, CHUNK)


@pytest.mark.parametrize("shift", [CHUNK // 3, -CHUNK // 3])
def test_evaluation_view_can_read_targets_later_or_earlier_than_their_mix(prepared, shift):
    aligned = EvaluationView(prepared, CONFIG, chunks_per_track=4)
    shifted = EvaluationView(prepared, CONFIG, chunks_per_track=4, target_shift=shift)
    assert shifted.items == aligned.items  # same queries, same pool members
    for i in range(len(aligned)):
        a, b = aligned[i], shifted[i]
        np.testing.assert_array_equal(a.context, b.context)
        stem = next(s for s in track_named(prepared, a.track).stems if s.name == a.stem)
        start = a.start + shift
        expected = np.concatenate([np.zeros(max(0, -start), np.float32), stem.read(max(0, start), start + CHUNK)])
        np.testing.assert_array_equal(b.target, expected)
        assert len(b.target) == CHUNK
