"""The preprocessing cache: build, memory-mapped reads, reuse without decoding, invalidation, splits."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stemserver import audio
from stemserver_training.cache import (
    CacheError,
    PreparedDataset,
    assign_split,
    build_cache,
    open_cache,
)
from stemserver_training.datasets import DatasetWarning, Stem, Track, read_folder

RATE = 44100  # sources at CD rate: the cache resamples to 16 kHz


def write_audio(path: Path, freq: float, amplitude: float = 0.5, seconds: float = 0.5,
                subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    soundfile.write(path, amplitude * np.sin(2 * np.pi * freq * t), RATE, subtype=subtype)
    return path


@pytest.fixture
def dataset_root(tmp_path) -> Path:
    root = tmp_path / "multitracks"
    for t, track in enumerate(["alpha", "beta", "gamma"]):
        for s, stem in enumerate(["bass", "drums", "keys"]):
            write_audio(root / track / f"{stem}.wav", freq=100 + 100 * s + 10 * t)
    return root


@pytest.fixture
def decodes(monkeypatch) -> list[Path]:
    """Every path the cache decodes, in order (stemserver.audio.load wrapped to count calls)."""
    calls = []
    real_load = audio.load

    def counting_load(path, *args, **kwargs):
        calls.append(Path(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(audio, "load", counting_load)
    return calls


def stem_of(prepared: PreparedDataset, track: str, stem: str):
    (found,) = [s for t in prepared.tracks if t.name == track for s in t.stems if s.name == stem]
    return found


def test_build_decodes_every_stem_once_and_reads_back_memory_mapped(dataset_root, tmp_path, decodes):
    prepared = build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False)
    assert len(decodes) == 9
    assert prepared.sample_rate == 16000
    assert [t.name for t in prepared.tracks] == ["alpha", "beta", "gamma"]
    for track in prepared.tracks:
        for stem in track.stems:
            assert stem.label_path == (stem.name,)
            assert isinstance(stem.audio, np.memmap) and stem.audio.dtype == np.int16
            expected, _ = audio.load(dataset_root / track.name / f"{stem.name}.wav")
            assert stem.num_samples == len(expected) == 8000
            assert stem.peak == pytest.approx(np.abs(expected).max())
            # Equal to the decoded audio within int16 quantisation (half a step of the stem's scale).
            np.testing.assert_allclose(stem.read(0, stem.num_samples), expected, rtol=0, atol=stem.scale / 2 + 1e-7)
    # What open_cache gives later is the same dataset.
    assert open_cache(tmp_path / "cache") == prepared


def test_read_pads_past_the_end_and_rejects_bad_ranges(dataset_root, tmp_path):
    stem = build_cache(read_folder(dataset_root), tmp_path / "cache").tracks[0].stems[0]  # with a progress bar
    chunk = stem.read(7000, 9000)
    assert chunk.dtype == np.float32 and chunk.shape == (2000,)
    assert np.abs(chunk[:1000]).max() > 0.1 and not chunk[1000:].any()
    assert not stem.read(10_000, 10_100).any()
    with pytest.raises(ValueError, match="invalid sample range"):
        stem.read(-1, 10)


def test_quiet_stems_keep_their_resolution_and_loud_ones_do_not_clip(tmp_path):
    quiet = write_audio(tmp_path / "song" / "quiet.wav", 300, amplitude=0.001)
    loud = write_audio(tmp_path / "song" / "loud.wav", 200, amplitude=1.8, subtype="FLOAT")
    prepared = build_cache(read_folder(tmp_path), tmp_path / "cache", progress=False)
    for path in (quiet, loud):
        stem = stem_of(prepared, "song", path.stem)
        expected, _ = audio.load(path)
        assert stem.peak == pytest.approx(np.abs(expected).max())
        error = np.abs(stem.read(0, stem.num_samples) - expected).max()
        assert error <= stem.peak / 32767  # relative precision of 15 bits, whatever the level
    assert stem_of(prepared, "song", "loud").peak > 1.7


def test_a_multi_file_stem_is_the_sum_of_its_sources(tmp_path):
    a = write_audio(tmp_path / "src" / "a.wav", 220, amplitude=0.3)
    b = write_audio(tmp_path / "src" / "b.flac", 330, amplitude=0.2, seconds=0.25)
    c = write_audio(tmp_path / "src" / "c.wav", 440)
    tracks = [Track("song", (Stem("guitars", (a, b), ("guitar",)), Stem("keys", (c,), ())))]
    prepared = build_cache(tracks, tmp_path / "cache", progress=False)
    guitars = stem_of(prepared, "song", "guitars")
    expected = audio.load(a)[0]
    expected[:4000] += audio.load(b)[0]  # the shorter source is padded with silence
    np.testing.assert_allclose(guitars.read(0, guitars.num_samples), expected, atol=guitars.scale / 2 + 1e-7)
    assert stem_of(prepared, "song", "keys").label_path == ()


def test_unchanged_sources_are_reused_without_decoding(dataset_root, tmp_path, decodes):
    first = build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False)
    decodes.clear()
    second = build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False)
    assert decodes == []
    assert second == first


def test_touched_modified_and_deleted_sources_invalidate_their_stem_only(dataset_root, tmp_path, decodes):
    cache = tmp_path / "cache"
    first = build_cache(read_folder(dataset_root), cache, progress=False)
    old_file = stem_of(first, "beta", "drums").path

    touched = dataset_root / "alpha" / "bass.wav"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    modified = write_audio(dataset_root / "beta" / "drums.wav", freq=1000, amplitude=0.25)
    deleted = dataset_root / "gamma" / "keys.wav"
    deleted.unlink()
    decodes.clear()
    second = build_cache(read_folder(dataset_root), cache, progress=False)

    assert sorted(decodes) == sorted([touched, modified])
    drums = stem_of(second, "beta", "drums")
    np.testing.assert_allclose(drums.read(0, drums.num_samples), audio.load(modified)[0], atol=drums.scale / 2 + 1e-7)
    assert [stem.name for stem in second.tracks[2].stems] == ["bass", "drums"]
    # The replaced and the dropped stems' files are gone; only what the index uses remains.
    assert not old_file.exists()
    used = {stem.path.name for track in second.tracks for stem in track.stems}
    assert {p.name for p in (cache / "audio").glob("*.npy")} == used
    assert len(list((cache / "audio").glob("*.json"))) == len(used) == 8


def test_relabelling_reuses_the_audio(dataset_root, tmp_path, decodes):
    build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False)
    (dataset_root / "alpha" / "labels.yaml").write_text("keys: [keys, electric piano]\n")
    decodes.clear()
    prepared = build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False)
    assert decodes == []
    assert stem_of(prepared, "alpha", "keys").label_path == ("keys", "electric piano")


def test_an_interrupted_build_resumes_and_leftovers_are_cleaned(dataset_root, tmp_path, decodes, monkeypatch):
    cache = tmp_path / "cache"
    real_load = audio.load

    def crash_on_gamma(path, *args, **kwargs):
        if "gamma" in str(path):
            raise KeyboardInterrupt
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(audio, "load", crash_on_gamma)
    with pytest.raises(KeyboardInterrupt):
        build_cache(read_folder(dataset_root), cache, progress=False)
    assert not (cache / "index.json").exists()
    (cache / "audio" / "0123.npy.4242.tmp").write_bytes(b"half a file")

    decoded = []
    monkeypatch.setattr(audio, "load", lambda path, *a, **k: decoded.append(Path(path)) or real_load(path, *a, **k))
    prepared = build_cache(read_folder(dataset_root), cache, progress=False)
    assert sorted(p.parent.name for p in decoded) == ["gamma"] * 3  # alpha and beta were kept
    assert len(prepared.tracks) == 3
    assert not (cache / "audio" / "0123.npy.4242.tmp").exists()


def test_a_track_left_with_one_decodable_stem_is_skipped(dataset_root, tmp_path):
    for name in ["drums", "keys"]:
        (dataset_root / "gamma" / f"{name}.wav").write_bytes(b"this is not a wav file at all")
    with pytest.warns(DatasetWarning) as caught:
        prepared = build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False)
    messages = "\n".join(str(w.message) for w in caught)
    assert str(dataset_root / "gamma" / "drums.wav") in messages
    assert "skipped track 'gamma': 1 stem(s) could be decoded and it needs 2" in messages
    assert [t.name for t in prepared.tracks] == ["alpha", "beta"]


def test_a_source_gone_since_reading_is_warned_and_skipped(dataset_root, tmp_path):
    tracks = read_folder(dataset_root)
    gone = dataset_root / "alpha" / "keys.wav"
    gone.unlink()
    with pytest.warns(DatasetWarning, match=f"{gone}: skipped stem 'keys', cannot read the source"):
        prepared = build_cache(tracks, tmp_path / "cache", progress=False)
    assert [stem.name for stem in prepared.tracks[0].stems] == ["bass", "drums"]


def test_duplicate_names_are_rejected(tmp_path):
    stem = Stem("s", (Path("s.wav"),), ())
    with pytest.raises(ValueError, match="2 tracks are named 'a'"):
        build_cache([Track("a", (stem, Stem("t", (Path("t.wav"),), ()))), Track("a", ())], tmp_path, progress=False)
    with pytest.raises(ValueError, match="track 'a' has 2 stems named 's'"):
        build_cache([Track("a", (stem, stem))], tmp_path, progress=False)


def test_nothing_decodable_is_a_clear_error(tmp_path):
    for name in ["a", "b"]:
        (tmp_path / "song").mkdir(exist_ok=True)
        (tmp_path / "song" / f"{name}.wav").write_bytes(b"garbage")
    with pytest.warns(DatasetWarning), pytest.raises(CacheError, match="no track has two stems"):
        build_cache(read_folder(tmp_path), tmp_path / "cache", progress=False)


def test_open_cache_errors_are_clear(dataset_root, tmp_path):
    with pytest.raises(CacheError, match="index.json: no such file; build it first"):
        open_cache(tmp_path / "nothing here")
    prepared = build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False)
    prepared.tracks[0].stems[0].path.unlink()
    with pytest.raises(CacheError, match="missing from the cache; build the cache again"):
        open_cache(tmp_path / "cache")


def test_a_prepared_stem_pickles_as_a_path_not_as_audio(dataset_root, tmp_path):
    # DataLoader workers receive the dataset pickled (spawn/forkserver): audio must not travel.
    stem = build_cache(read_folder(dataset_root), tmp_path / "cache", progress=False).tracks[0].stems[0]
    stem.read(0, 100)  # mapped in this process
    data = pickle.dumps(stem)
    assert len(data) < 1000
    assert np.array_equal(pickle.loads(data).audio, stem.audio)


# --- Splits -------------------------------------------------------------------------------------

def fake_tracks(n: int, split: str | None = None) -> list[Track]:
    stem = Stem("s", (Path("s.wav"),), ())
    return [Track(f"track {i:04d}", (stem, stem), split) for i in range(n)]


def test_assign_split_is_deterministic_seeded_and_roughly_proportional():
    tracks = fake_tracks(3000)
    first = [assign_split(t, seed=0) for t in tracks]
    assert first == [assign_split(t, seed=0) for t in tracks]
    counts = {name: first.count(name) / len(first) for name in ("train", "valid", "test")}
    assert counts["train"] == pytest.approx(0.8, abs=0.03)
    assert counts["valid"] == pytest.approx(0.1, abs=0.02)
    assert counts["test"] == pytest.approx(0.1, abs=0.02)
    other_seed = [assign_split(t, seed=1) for t in tracks]
    assert 0.2 < np.mean([a != b for a, b in zip(first, other_seed)]) < 0.5
    # A track's split depends on its name only, not on which other tracks exist.
    assert assign_split(tracks[7], seed=0) == first[7]
    assert [assign_split(t, 0, valid_fraction=0, test_fraction=0.5) for t in tracks].count("valid") == 0


def test_tracks_of_one_group_share_a_split():
    stem = Stem("s", (Path("s.wav"),), ())
    for seed in range(3):
        for work in range(100):
            variants = [Track(f"work {work} variant {v}", (stem, stem), group=f"work {work}") for v in range(3)]
            assert len({assign_split(track, seed) for track in variants}) == 1
    splits = {assign_split(Track(f"t{i}", (stem, stem), group=f"work {i}"), seed=0) for i in range(100)}
    assert splits == {"train", "valid", "test"}


def test_an_official_split_is_respected():
    assert {assign_split(t, seed=0) for t in fake_tracks(200, split="test")} == {"test"}
    with pytest.raises(ValueError, match="together < 1"):
        assign_split(fake_tracks(1)[0], seed=0, valid_fraction=0.5, test_fraction=0.5)


def test_splits_are_stored_with_the_cache_and_kept(dataset_root, tmp_path):
    cache = tmp_path / "cache"
    tracks = read_folder(dataset_root)
    tracks[0] = Track(tracks[0].name, tracks[0].stems, split="test")  # an official split
    prepared = build_cache(tracks, cache, seed=3, valid_fraction=0.3, test_fraction=0.3, progress=False)
    stored = json.loads((cache / "splits.json").read_text())
    assert stored == {"seed": 3, "valid_fraction": 0.3, "test_fraction": 0.3,
                      "splits": {t.name: t.split for t in prepared.tracks}}
    assert stored["splits"]["alpha"] == "test"
    assert stored["splits"] == {t.name: assign_split(t, 3, 0.3, 0.3) for t in tracks}

    # A later build keeps every stored assignment, even if the dataset's official split changed.
    tracks[0] = Track(tracks[0].name, tracks[0].stems, split="train")
    again = build_cache(tracks, cache, seed=3, valid_fraction=0.3, test_fraction=0.3, progress=False)
    assert again == prepared
    assert [t.name for t in again.split("test").tracks] == [t.name for t in prepared.tracks if t.split == "test"]
    assert sum(len(again.split(name).tracks) for name in ("train", "valid", "test")) == 3
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        again.split("validation")

    # A track that leaves the dataset and comes back keeps its stored split.
    json_splits = json.loads((cache / "splits.json").read_text())["splits"]
    build_cache(tracks[1:], cache, seed=3, valid_fraction=0.3, test_fraction=0.3, progress=False)
    assert json.loads((cache / "splits.json").read_text())["splits"] == json_splits
    assert build_cache(tracks, cache, seed=3, valid_fraction=0.3, test_fraction=0.3, progress=False) == prepared

    with pytest.raises(CacheError, match="split with .*'seed': 3.* delete splits.json"):
        build_cache(tracks, cache, seed=4, valid_fraction=0.3, test_fraction=0.3, progress=False)
