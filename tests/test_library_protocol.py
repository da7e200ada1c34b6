"""The library protocol: musical agreement rules, the scoring on hand-made rankings with known
answers, and the whole protocol through the real indexer and engine on a tiny dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import melody, tone

from stemserver.config import Settings, TextSettings
from stemserver.engine import StemMatch
from stemserver.music import Key, keys_agree, parse_key, tempi_agree
from stemserver_training.cache import PreparedDataset, PreparedStem, PreparedTrack, build_cache
from stemserver_training.datasets import read_dataset
from stemserver_training.library_protocol import (
    LibraryQuery,
    PoolStem,
    chance_library,
    draw_queries,
    evaluate_library,
    query_mix,
    score_library,
    write_pool,
)
from stemserver_training.sampler import SamplerConfig

RATE = 16_000


# -- keys and tempi ----------------------------------------------------------------------------------


def test_keys_parse_as_producers_write_them():
    assert parse_key("F# minor") == Key(6, "minor")
    assert parse_key("Bb major") == Key(10, "major")
    assert parse_key("c  Dorian") == Key(0, "dorian")
    assert parse_key("Gb major") == parse_key("F# major") == Key(6, "major")
    for text in ("", "H major", "F#", "C blues", "minor", None):
        assert parse_key(text) is None


def test_keys_agree_when_they_share_a_scale():
    c_major = parse_key("C major")
    for same_scale in ("C major", "A minor", "D dorian", "G mixolydian", "E phrygian", "F lydian", "B locrian"):
        assert keys_agree(c_major, parse_key(same_scale)), same_scale
    for other in ("C minor", "G major", "A major", "C# major", "D minor"):
        assert not keys_agree(c_major, parse_key(other)), other


def test_tempi_agree_within_four_percent_or_at_double_and_half_time():
    assert tempi_agree(120, 120) and tempi_agree(120, 124.8) and tempi_agree(124.8, 120.1)
    assert tempi_agree(120, 60) and tempi_agree(60, 120) and tempi_agree(87, 174)
    assert not tempi_agree(120, 126) and not tempi_agree(120, 90) and not tempi_agree(120, 40)


# -- scoring hand-made rankings -------------------------------------------------------------------------


def hand_made_pool(tmp_path: Path) -> tuple[PreparedDataset, list[PoolStem]]:
    """Two tracks of three stems (bass, drums, keys), in C major at 120 and in F# minor at 93 BPM;
    no audio is read by the scoring."""
    tracks = []
    for name, key, tempo in (("one", "C major", 120.0), ("two", "F# minor", 93.0)):
        stems = tuple(PreparedStem(label, ("instrument", label), tmp_path / f"{name}-{label}.npy", RATE * 20, 1.0, 1.0)
                      for label in ("bass", "drums", "keys"))
        tracks.append(PreparedTrack(name, "test", stems, tempo_bpm=tempo, key=key))
    dataset = PreparedDataset(tmp_path, RATE, tuple(tracks))
    pool = [PoolStem(t, s, tmp_path / f"{3 * t + s + 1:04d}.wav") for t in range(2) for s in range(3)]
    return dataset, pool


def ranking(pool: list[PoolStem], order: list[int], offsets: dict[int, float] | None = None) -> list[StemMatch]:
    offsets = offsets or {}
    return [StemMatch(rank=r + 1, path=str(pool[i].path.absolute()), score=1.0 - r / 10, offset_s=offsets.get(i, 0.0),
                      offset_at_end_s=8.0, alignment_score=0.5, duration_s=20.0, window_start_s=0.0, loop=False,
                      label="", sample_rate=RATE, channels=1) for r, i in enumerate(order)]


def test_scores_of_known_rankings(tmp_path):
    dataset, pool = hand_made_pool(tmp_path)
    # Query 0 asks for track one's bass (window starting at 2 s); query 1 for track two's keys (at 5 s).
    queries = [LibraryQuery(0, 2 * RATE, (1, 2)), LibraryQuery(5, 5 * RATE, (0, 1))]
    matches = [ranking(pool, [0, 3, 1, 2, 4, 5], {0: 2.1}),  # first; the other bass second; offset 0.1 s off
               ranking(pool, [0, 1, 5, 2, 3, 4], {5: 5.5})]  # third; keys of track one fourth; 0.5 s off
    scored = score_library(dataset, pool, queries, matches, "fine", seconds_per_column=0.16)
    assert scored["queries"] == 2 and scored["pool_size"] == 6
    assert scored["R@1"] == 50 and scored["R@5"] == scored["R@10"] == 100
    assert scored["mean_normalised_rank"] == pytest.approx(100 * (0 + 2) / 2 / 6)
    assert scored["median_normalised_rank"] == pytest.approx(100 * 1 / 6)
    # Two basses in the pool: query 0's top 2 are both basses (1.0); keys: top 2 are bass, drums (0.0).
    assert scored["instrument_precision@10"] == pytest.approx(50.0)
    # Each top 10 is the whole pool: half of it in the mix's key and tempo.
    assert scored["key_agreement@10"] == scored["tempo_agreement@10"] == pytest.approx(50.0)
    assert scored["offset_within_one_column"] == 50.0
    assert scored["offset_median_error_s"] == pytest.approx(0.3)
    coarse = score_library(dataset, pool, queries, matches, "coarse", seconds_per_column=0.16)
    assert coarse["instrument_precision@10"] == 100.0  # every stem is an "instrument"
    only_second = score_library(dataset, pool, queries, matches, "fine", 0.16, select=np.array([False, True]))
    assert only_second["queries"] == 1 and only_second["R@1"] == 0 and only_second["R@5"] == 100
    chance = chance_library(dataset, pool, queries, "fine")
    assert chance["R@1"] == pytest.approx(100 / 6) and chance["instrument_precision@10"] == pytest.approx(100 * 2 / 6)


def test_a_ranking_that_leaves_out_pool_stems_is_refused(tmp_path):
    dataset, pool = hand_made_pool(tmp_path)
    with pytest.raises(ValueError, match="ranked 5 of the pool's 6"):
        score_library(dataset, pool, [LibraryQuery(0, 0, (1,))], [ranking(pool, [0, 1, 2, 3, 4])], "fine", 0.16)


def test_agreement_is_left_out_where_the_data_states_no_key_or_tempo(tmp_path):
    dataset, pool = hand_made_pool(tmp_path)
    unknown = PreparedDataset(tmp_path, RATE, tuple(PreparedTrack(t.name, t.split, t.stems) for t in dataset.tracks))
    scored = score_library(unknown, pool, [LibraryQuery(0, 0, (1,))], [ranking(pool, [0, 1, 2, 3, 4, 5])], "fine",
                           0.16)
    assert scored["key_agreement@10"] is None and scored["tempo_agreement@10"] is None


# -- the protocol end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def duets(tmp_path_factory) -> PreparedDataset:
    """Five 12 s tracks, each one melody over a drone of its own pitch (so that even a random model
    tells the tracks apart) played by two stems ("bass" and "drums": the labels the checkpoint knows), the second
    quieter; a folder layout, so no key or tempo."""
    root = tmp_path_factory.mktemp("duets")
    for t in range(5):
        tune = melody(12.0, seed=t) + tone(150 * 1.5 ** t, 12.0, RATE, amplitude=0.2)
        folder = root / "data" / f"duet{t}"
        folder.mkdir(parents=True)
        soundfile.write(folder / "left.wav", tune, RATE)
        soundfile.write(folder / "right.wav", 0.6 * tune, RATE)
        (folder / "labels.yaml").write_text("left: [bass]\nright: [drums]\n")
    return build_cache(read_dataset("folder", root / "data"), root / "cache", valid_fraction=0.0, test_fraction=0.0,
                       progress=False)


def test_the_pool_is_opaque_files_and_the_queries_are_unaligned_mixes_of_the_other_stems(duets, tmp_path):
    pool = write_pool(duets, tmp_path / "pool")
    assert [p.path.name for p in pool] == [f"{i:04d}.wav" for i in range(1, 11)]
    written, rate = soundfile.read(pool[3].path, dtype="float32")
    assert rate == RATE and np.array_equal(written, duets.tracks[1].stems[1].read(0, 12 * RATE))
    queries = draw_queries(duets, pool, seed=3)
    assert draw_queries(duets, pool, seed=3) == queries != draw_queries(duets, pool, seed=4)
    assert [q.target for q in queries] == list(range(10))
    for query in queries:
        member = pool[query.target]
        assert query.others == (1 - member.stem,) and 0 <= query.start <= 4 * RATE
        mix = query_mix(duets, pool, query)
        expected = duets.tracks[member.track].stems[1 - member.stem].read(query.start, query.start + 8 * RATE)
        assert np.array_equal(mix, expected)
    assert any(q.start % 2560 for q in queries)  # off the 160 ms column grid


def test_silent_stems_get_no_query(duets, tmp_path):
    pool = write_pool(duets, tmp_path / "pool")
    strict = draw_queries(duets, pool, sampler=SamplerConfig(min_peak=10.0))  # nothing is that loud
    assert strict == []


def test_the_protocol_through_the_indexer_and_the_engine(duets, identity_checkpoint, tmp_path):
    """With an identity predictor and equal encoders, a query (the other stem: the same melody) is
    its target's own sound: the target and its twin take the first two places, and the offset is
    the window's."""
    settings = Settings(device="cpu", text=TextSettings(backend="none"), threads=1)
    result = evaluate_library(identity_checkpoint, duets, settings, levels=("fine",), seed=1, progress=False,
                              workdir=tmp_path / "work", holdout_labels=("drums",))
    assert (tmp_path / "work" / "library" / "library.sqlite").is_file()
    assert result["data"]["pool"] == result["data"]["queries"] == 10
    model = result["levels"]["fine"]["model"]
    assert model["mean_normalised_rank"] <= 100 * 1 / 10  # ranks 0 and 1 (the target or its twin first)
    assert model["R@5"] == 100.0 and model["R@1"] > 0
    assert model["offset_within_one_column"] >= 80.0
    assert model["key_agreement@10"] is None and model["tempo_agreement@10"] is None
    zero_shot = result["levels"]["fine"]["zero_shot"]
    assert zero_shot["held_out"]["queries"] == zero_shot["seen"]["queries"] == 5
    json.dumps(result)  # the report stores it as JSON
