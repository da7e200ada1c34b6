"""benchmarks/music_accuracy.py: its scores are the definitions (Accuracy1 and 2, MIREX, no tempo and no
key counted as wrong), and its run over real files (a tiny popular corpus of click and chord songs, its
loop export, a classical track whose key truth comes from a music21 score) gives the figures those
files must give."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_music import A_MINOR, C_MAJOR, RATE, chords, click_track

from stemserver import estimate
from stemserver.music import Key

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the benchmark imports its sibling `common`, as when run as a script
    try:
        yield importlib.import_module("music_accuracy")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_tempo_key_and_bar_scores_follow_their_definitions(bench):
    Truth, Estimate = bench.Truth, bench.Estimate
    truth = Truth(bpm=120.0, key=Key(0, "major"), bars=2)
    estimates = [Estimate(bpm=121.0, key=Key(0, "major"), bars=2),  # within 4 %: Accuracy1; the same key
                 Estimate(bpm=60.0, key=Key(7, "major"), bars=1),  # half time: Accuracy2 only; a fifth above
                 Estimate(bpm=40.0, key=Key(9, "minor")),  # a third: Accuracy2 only; the relative
                 Estimate(bpm=90.0, key=Key(5, "major")),  # neither; a fifth below scores nothing
                 Estimate(bpm=None, key=None)]  # no tempo and no key: wrong, and counted as missing
    figures = bench.score("both", [(truth, e) for e in estimates])
    assert (figures["tempo_accuracy1"], figures["tempo_accuracy2"], figures["no_tempo"]) == (20.0, 60.0, 20.0)
    assert figures["key_mirex"] == pytest.approx((1.0 + 0.5 + 0.3) / 5, abs=1e-3)
    assert (figures["key_exact"], figures["key_same_scale"], figures["no_key"]) == (20.0, 40.0, 20.0)
    assert figures["bars_accuracy"] == 20.0

    drums = [(Truth(bpm=120.0, keyed=False), Estimate(key=None)), (Truth(bpm=120.0, keyed=False),
                                                                   Estimate(key=Key(2, "minor")))]
    assert bench.score("key", drums)["unkeyed_no_key"] == 50.0 and "key_mirex" not in bench.score("key", drums)
    assert "tempo_accuracy1" not in bench.score("key", drums)  # a key estimator has no tempo figures
    hits = [(Truth(timed=False), Estimate(bpm=None)), (Truth(timed=False), Estimate(bpm=120.0))]
    assert bench.score("tempo", hits)["untimed_no_tempo"] == 50.0


def test_the_goals_are_checked_on_the_default_estimators(bench):
    groups = {"popular mixes, whole song": {"autocorrelation": {"tempo_accuracy2": 95.0},
                                            bench.KEY_DEFAULT: {"key_mirex": 0.79}}}
    checked = {g["metric"]: g["met"] for g in bench.goals(groups)}
    assert checked == {"tempo_accuracy2": True, "key_mirex": False}


def test_a_query_window_depends_only_on_the_seed_and_the_place(bench):
    mix = np.arange(20 * RATE, dtype=np.float32)
    first = bench.query_window(mix, 8.0, seed=0, place=3)
    assert len(first) == 8 * RATE and np.array_equal(first, bench.query_window(mix, 8.0, seed=0, place=3))
    assert not np.array_equal(first, bench.query_window(mix, 8.0, seed=1, place=3))


SONGS = [("pop_0_00001", 120.0, "C major", "major", C_MAJOR), ("pop_0_00002", 100.0, "A minor", "minor", A_MINOR)]


def write_song(root: Path, name: str, bpm: float, key: str, mode: str, progression: list[list[int]]) -> None:
    """Four bars: a click on every beat (a separate kick, its onsets listed) and a chord on every bar."""
    bar_s = 4 * 60.0 / bpm
    stems = {"drums": ("kick", "drums", click_track(bpm, 4 * bar_s)), "piano": ("chords", "chords",
                                                                               chords(progression, bar_s))}
    data = {"song": name, "id": name, "genre": "pop", "bpm": bpm, "meter": 4, "key": key, "mode": mode, "bars": 4,
            "chords": ["x"] * 4, "stems": []}
    for i, (stem_name, (part, role, samples)) in enumerate(stems.items()):
        (root / name / stem_name).mkdir(parents=True)
        soundfile.write(root / name / stem_name / f"t{i}.flac", samples, RATE)
        track = {"id": f"t{i}", "extension": "flac", "part": part, "role": role, "label_path": [stem_name],
                 "bars_playing": [0, 1, 2, 3]}
        if part == "kick":
            track["onsets"] = [beat * 60.0 / bpm for beat in range(16)]
        data["stems"].append({"stemName": stem_name, "id": f"s{i}", "tracks": [track]})
    (root / name / "data.json").write_text(json.dumps(data))


def write_classical(root: Path) -> None:
    """One track of a Bach chorale whose first 16 quarters music21 reads as F# minor (3 sharps, as its
    signature), played 3 semitones up: A minor chords and clicks at 120 quarters a minute for 8 s."""
    track_id = "0000-chorale"
    (root / track_id / "organ").mkdir(parents=True)
    audio = chords(A_MINOR, 2.0) + click_track(120.0, 8.0) * 0.3
    soundfile.write(root / track_id / "organ" / "part0.flac", audio, RATE)
    record = {"type": "track", "track_id": track_id, "work_id": "bach/bwv66.6", "quarter_bpm": 120.0,
              "tempo_changes": 0, "duration": 8.0, "transposition": 3, "meter": "4/4"}
    (root / "manifest.jsonl").write_text(json.dumps(record) + "\n")


def test_the_key_truth_of_a_score_is_its_analysed_key_transposed(bench):
    assert bench.score_key("bach/bwv66.6", 16.0, 3) == Key(9, "minor")
    assert bench.score_key("bach/bwv66.6", 16.0, 0) == Key(6, "minor")
    assert bench.score_key("no/such/work.mxl", 16.0, 0) is None  # a score music21 cannot read: no key truth


@pytest.mark.slow
def test_a_run_over_real_files_gives_what_the_files_must_give(bench, tmp_path, capsys):
    for song in SONGS:
        write_song(tmp_path / "popular", *song)
    (tmp_path / "splits.json").write_text(json.dumps({"splits": {SONGS[0][0]: "test", SONGS[1][0]: "test",
                                                                 "elsewhere": "train"}}))
    write_classical(tmp_path / "classical")
    code = bench.main(["--popular", str(tmp_path / "popular"), "--splits", str(tmp_path / "splits.json"),
                       "--loop-songs", "1", "--classical", str(tmp_path / "classical"), "--workdir", str(tmp_path),
                       "--no-progress", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    groups = result["groups"]
    assert result["protocol"]["popular"]["songs"] == 2 and result["protocol"]["classical"]["with_key_truth"] == 1

    whole = groups["popular mixes, whole song"]
    assert whole["autocorrelation"]["tempo_files"] == 2 and whole["autocorrelation"]["tempo_accuracy1"] == 100.0
    key = bench.KEY_DEFAULT
    assert whole[key]["key_mirex"] == 1.0 and whole[key]["key_exact"] == 100.0
    assert set(whole) == {"autocorrelation", "librosa-tempo", "librosa-beat-track", *estimate.KEY_PROFILES}
    assert groups["popular stems, drums"][key]["unkeyed_no_key"] == 100.0  # a click has no key
    assert groups["popular stems, tonal"][key]["key_mirex"] == 1.0
    assert groups["popular stems, all"]["autocorrelation"]["tempo_files"] == 4

    named, renamed = groups["loops, named"]["file_facts"], groups["loops, renamed"]["file_facts"]
    assert named["tempo_files"] == renamed["tempo_files"] == 6  # 1, 2 and 4 bars of the 2 stems of 1 song
    assert (named["tempo_accuracy1"], named["bars_accuracy"], named["key_mirex"]) == (100.0, 100.0, 1.0)
    assert named["sources"]["tempo name"] == 6 and named["sources"]["key name"] == 3
    assert not {"tempo name", "key name"} & set(renamed.get("sources", {}))  # renamed: the audio alone
    assert groups["one-shots"]["file_facts"]["untimed_no_tempo"] == 100.0  # a kick of at most 1 s has no tempo

    classical = groups["classical mixes, whole"]
    assert classical["autocorrelation"]["tempo_accuracy2"] == 100.0 and classical[key]["key_mirex"] == 1.0
    assert {g["group"] for g in result["goals"]} == {"popular mixes, whole song", "popular mixes, query"}


def test_usage_errors_exit_2(bench, tmp_path):
    with pytest.raises(SystemExit) as nothing:
        bench.main([])
    with pytest.raises(SystemExit) as no_splits:
        bench.main(["--popular", str(tmp_path)])
    assert nothing.value.code == no_splits.value.code == 2
    assert bench.main(["--popular", str(tmp_path), "--split", "all", "--no-progress"]) == 1  # no song: explained
