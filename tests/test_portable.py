"""Packing a prepared cache into Opus shards and unpacking it on another machine."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from conftest import melody, tone

from stemserver.features import FrontEndConfig, LogMel
from stemserver_training.cache import CacheError, build_cache, open_cache
from stemserver_training.datasets import read_dataset
from stemserver_training.portable import main, pack, unpack

RATE = 16_000


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracks")
    for t in range(6):
        (root / f"t{t}").mkdir()
        soundfile.write(root / f"t{t}" / "lead.wav", 0.6 * melody(3.0, seed=t), RATE)
        soundfile.write(root / f"t{t}" / "bass.wav", tone(55 * (1 + t / 6), 3.0, RATE, 0.02), RATE)  # quiet
    out = tmp_path_factory.mktemp("cache")
    build_cache(read_dataset("folder", root), out, valid_fraction=0.2, test_fraction=0.2, progress=False)
    return out


def test_pack_then_unpack_gives_the_same_cache_within_the_codec(cache, tmp_path):
    original = open_cache(cache)
    sizes = [sum(f.stat().st_size for f in s.iterdir()) for s in
             pack(cache, tmp_path / "packed", max_shard_bytes=40_000, workers=1)]
    assert len(sizes) > 1 and max(sizes) <= 40_000 + 4096  # shard.json comes on top of the audio
    shards = sorted((tmp_path / "packed").iterdir())
    assert unpack(shards[:1], tmp_path / "copy", workers=1) < len(original.tracks)
    assert unpack(shards[1:], tmp_path / "copy", workers=1) == len(original.tracks)  # adds to the first
    copy = open_cache(tmp_path / "copy")
    log_mel = LogMel(FrontEndConfig())
    assert [t.name for t in copy.tracks] == [t.name for t in original.tracks]
    assert [t.split for t in copy.tracks] == [t.split for t in original.tracks]
    packed_bytes = sum(sizes)
    pcm_bytes = sum(2 * s.num_samples for t in original.tracks for s in t.stems)
    assert packed_bytes < pcm_bytes / 4
    for a, b in zip(original.tracks, copy.tracks):
        for x, y in zip(a.stems, b.stems):
            assert (x.name, x.label_path, x.num_samples) == (y.name, y.label_path, y.num_samples)
            clean, coded = (x.read(0, x.num_samples), y.read(0, y.num_samples))
            rms = [float(np.sqrt(np.mean(np.square(v)))) for v in (clean, coded)]
            assert rms[1] == pytest.approx(rms[0], rel=0.1)  # the quiet stem keeps its level
            error = (log_mel(torch.from_numpy(clean)[None]) - log_mel(torch.from_numpy(coded)[None])).abs()
            assert error.mean() < 0.3, (x.name, float(error.mean()))


def test_only_the_asked_splits_travel_and_errors_are_clear(cache, tmp_path, capsys):
    (shard,) = pack(cache, tmp_path / "p", splits=["train"], workers=1)
    assert unpack([shard], tmp_path / "c", workers=1) == sum(t.split == "train" for t in open_cache(cache).tracks)
    assert {t.split for t in open_cache(tmp_path / "c").tracks} == {"train"}
    with pytest.raises(CacheError, match="no shard found"):
        unpack([tmp_path / "nothing"], tmp_path / "c2")
    assert main(["unpack", str(tmp_path / "nothing"), "--into", str(tmp_path / "c3")]) == 1
    assert "no shard found" in capsys.readouterr().err
