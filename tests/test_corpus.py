"""The open multitrack corpus: real scores rendered with the real FluidSynth and soundfont.

One small build (3 works x 2 variants, 6 s each) is shared by most tests; the rendering tests
are skipped, with the reason, where FluidSynth or the General MIDI soundfont is not installed.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stemserver import __version__
from stemserver.audio import load
from stemserver.vocabulary import DRUM_KIT_LABEL_PATH, GM_FAMILIES, gm_label_path
from stemserver_training.corpus.__main__ import main
from stemserver_training.corpus.build import build, build_track
from stemserver_training.corpus.drums import KICK, PATTERNS, drum_part
from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.instruments import BASS_PROGRAMS, BASS_RANGE, PROGRAM_RANGES, choose_programs
from stemserver_training.corpus.midi import Note, write_midi
from stemserver_training.corpus.render import DEFAULT_SOUNDFONT, check_soundfont, file_sha256
from stemserver_training.corpus.scores import Bar, Part, Score, ScoreNote, Work, eligible_works
from stemserver_training.corpus.variants import plan_track

pytestmark = pytest.mark.slow  # the whole file: subprocesses, rendering or training (README: test tiers)

SECONDS = 6.0
WORKS = 3
renders = pytest.mark.skipif(
    not DEFAULT_SOUNDFONT.is_file() or shutil.which("fluidsynth") is None,
    reason=f"needs the fluidsynth program and {DEFAULT_SOUNDFONT} "
    "(apt-get install fluidsynth fluid-soundfont-gm)",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not DEFAULT_SOUNDFONT.is_file() or shutil.which("fluidsynth") is None:
        pytest.skip(f"needs the fluidsynth program and {DEFAULT_SOUNDFONT}")
    out = tmp_path_factory.mktemp("corpus") / "out"
    summary = build(out, limit=WORKS, seconds=SECONDS, workers=2, seed=0, progress=False)
    assert not summary.failed, summary.failed
    return out


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def tracks(out: Path) -> list[dict]:
    return [r for r in manifest(out) if r["type"] == "track"]


def flac_path(out: Path, record: dict, stem: dict) -> Path:
    return out / record["track_id"] / stem["stem_name"] / f"{stem['source_id']}.flac"


# ----------------------------------------------------------------------------- without rendering

def test_enough_eligible_works_from_the_metadata_cache():
    works = eligible_works()
    assert len(works) >= 900
    assert all(w.parts >= 3 for w in works)
    assert len({(Path(w.path).with_suffix(""), w.number) for w in works}) == len(works)  # one encoding per score
    assert {"bach", "palestrina", "monteverdi"} <= {w.work_id.split("/")[0] for w in works}


def _bars(count: int, beats: int = 4, beat: float = 1.0, subdivisions: int = 2, pickup: float = 0.0) -> list[Bar]:
    bars = [Bar(0.0, pickup, beat, beats, subdivisions)] if pickup else []
    bars += [Bar(pickup + i * beats * beat, beats * beat, beat, beats, subdivisions) for i in range(count)]
    return bars


@pytest.mark.parametrize("meter", [(4, 1.0, 2), (3, 1.0, 2), (2, 1.5, 3), (4, 2.0, 2)])
def test_drums_play_on_the_beat_grid_with_fills_and_are_seeded(meter):
    beats, beat, subdivisions = meter
    bars = _bars(16, beats, beat, subdivisions, pickup=beat)
    families = set()
    for seed in range(30):
        name, hits = drum_part(bars, random.Random(seed))
        families.add(name)
        assert (name, hits) == drum_part(bars, random.Random(seed))
        assert all(0 <= h.start < bars[-1].start + bars[-1].length and 1 <= h.velocity <= 127 for h in hits)
        grid = beat / 12  # holds subdivisions, fills, and the shuffle's swung off-beats
        assert all(abs(h.start / grid - round(h.start / grid)) < 1e-6 for h in hits), name
        kicks = {h.start for h in hits if h.note == KICK}
        downbeats = [b.start for b in bars[1:]]
        assert sum(d in kicks for d in downbeats) >= len(downbeats) // 2, name
    assert len(families) >= 4 and families <= set(PATTERNS)


def test_programs_fit_the_part_range_and_bass_is_reserved():
    rng = random.Random(0)
    for _ in range(200):
        low = rng.randint(30, 80)
        ranges = [(low, low + rng.randint(0, 20)) for _ in range(5)]
        for (lo, hi), program in zip(ranges, choose_programs(ranges, rng)):
            assert PROGRAM_RANGES[program][0] <= lo and hi <= PROGRAM_RANGES[program][1]
            assert program not in BASS_PROGRAMS


def _score(parts: list[list[tuple[float, float, int]]]) -> Score:
    work = Work(work_id="test/score.xml", path="test/score.xml", number=None, composer="Test", title="Test",
                parts=len(parts), notes=sum(map(len, parts)))
    return Score(
        work=work,
        parts=tuple(Part(f"p{i}", tuple(ScoreNote(*n) for n in notes)) for i, notes in enumerate(parts)),
        bars=tuple(_bars(8)), tempos=((0.0, 120.0),), tempo_marked=True, meter="4/4",
    )


def test_plan_is_seeded_and_leaves_out_parts_silent_in_the_window():
    score = _score([
        [(0, 4, 72), (4, 8, 74)],
        [(0, 8, 60)],
        [(16, 20, 66)],  # starts after 8 s at 120 BPM x 1.15 at most: all rests in a 6 s window
    ])
    plan = plan_track(score, 0, seed=1, seconds=SECONDS, bass=True)
    assert plan == plan_track(score, 0, seed=1, seconds=SECONDS, bass=True)
    assert plan.track_id != plan_track(score, 1, seed=1, seconds=SECONDS, bass=True).track_id
    assert plan.track_id != plan_track(score, 0, seed=2, seconds=SECONDS, bass=True).track_id
    assert [key for key, _, _ in plan.skipped] == ["part2"]
    assert [s.key for s in plan.stems] == ["part0", "part1", "bass", "drums"]
    assert plan.truncated and plan.duration == SECONDS
    assert all(n.end <= SECONDS for s in plan.stems for n in s.notes)
    bass = next(s for s in plan.stems if s.key == "bass")
    assert all(BASS_RANGE[0] <= n.pitch <= BASS_RANGE[1] for n in bass.notes)
    assert -5 <= plan.transposition <= 6 and 0.85 <= plan.tempo_factor <= 1.15


def test_a_short_build_is_the_beginning_of_the_full_one():
    melody = [(t, t + 1, 72 + t % 5) for t in range(32)]
    pulse = [(t, t + 2, 64) for t in range(0, 32, 2)]
    score = _score([melody, [(0, 32, 60)], pulse])
    short, full = (plan_track(score, 1, seed=3, seconds=seconds, bass=True) for seconds in (SECONDS, None))
    assert not full.truncated and full.duration > SECONDS
    assert (short.track_id, short.transposition, short.tempo_factor, short.drum_pattern) == \
           (full.track_id, full.transposition, full.tempo_factor, full.drum_pattern)
    for a, b in zip(short.stems, full.stems, strict=True):
        assert (a.key, a.program, a.source_id) == (b.key, b.program, b.source_id)
        assert [(n.start, n.pitch, n.velocity) for n in a.notes] == \
               [(n.start, n.pitch, n.velocity) for n in b.notes if n.start < SECONDS]


def test_midi_file_is_well_formed(tmp_path):
    path = tmp_path / "x.mid"
    write_midi(path, [Note(0.0, 1.0, 60, 90), Note(0.5, 2.0, 60, 90), Note(1.0, 1.5, 64, 80)], 40, 0, end=3.0)
    data = path.read_bytes()
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk" and data.endswith(b"\xff\x2f\x00")
    assert data.count(b"\x90\x3c") == 2 and data.count(b"\x80\x3c") == 2  # overlap shortened, not lost


def test_missing_fluidsynth_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CorpusError, match="apt-get install fluidsynth fluid-soundfont-gm.*brew install fluid-synth"):
        build(tmp_path / "out", limit=1, seconds=1.0, progress=False)
    assert main(["build", str(tmp_path / "out"), "--limit", "1"]) == 1
    assert "fluidsynth" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs the fluidsynth program")
def test_missing_or_bad_soundfont_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(CorpusError, match="not found.*--soundfont"):
        build(tmp_path / "out", soundfont=tmp_path / "missing.sf2", progress=False)
    (tmp_path / "fake.sf2").write_bytes(b"not a soundfont")
    with pytest.raises(CorpusError, match="not a SoundFont 2"):
        build(tmp_path / "out", soundfont=tmp_path / "fake.sf2", progress=False)
    monkeypatch.setattr("stemserver_training.corpus.render.DEFAULT_SOUNDFONT", tmp_path / "FluidR3_GM.sf2")
    with pytest.raises(CorpusError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        check_soundfont(tmp_path / "FluidR3_GM.sf2")


@pytest.mark.parametrize("argv", [["build"], ["build", "out", "--limit", "0"], ["build", "out", "--seconds", "-1"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


# ----------------------------------------------------------------------------- rendering

@renders
def test_layout_and_data_json_follow_moisesdb(corpus):
    records = tracks(corpus)
    expected = {r["track_id"] for r in records} | {"manifest.jsonl", "corpus.json", ".lock"}
    assert {p.name for p in corpus.iterdir()} == expected
    for record in records:
        folder = corpus / record["track_id"]
        data = json.loads((folder / "data.json").read_text())
        assert set(data) == {"song", "artist", "genre", "stems"}
        assert data["genre"] == "classical" and data["artist"] == record["composer"]
        assert record["work_id"] in data["song"]
        names = [s["stemName"] for s in data["stems"]]
        assert len(names) == len(set(names))
        assert {p.name for p in folder.iterdir()} == set(names) | {"data.json"}
        for stem in data["stems"]:
            assert set(stem) == {"stemName", "id", "tracks"}
            assert stem["stemName"].replace("_", " ") in GM_FAMILIES + (DRUM_KIT_LABEL_PATH[0],)
            for track in stem["tracks"]:
                assert set(track) == {"trackType", "id", "extension", "has_bleed"}
                assert track["extension"] == "flac" and track["has_bleed"] is False
            files = {p.name for p in (folder / stem["stemName"]).iterdir()}
            assert files == {f"{t['id']}.flac" for t in stem["tracks"]}
        by_source = {t["id"]: (s["stemName"], t["trackType"]) for s in data["stems"] for t in s["tracks"]}
        assert by_source == {s["source_id"]: (s["stem_name"], s["label_path"][1]) for s in record["stems"]}


@renders
def test_every_stem_decodes_at_16k_mono_and_is_not_silent(corpus):
    for record in tracks(corpus):
        for stem in record["stems"]:
            path = flac_path(corpus, record, stem)
            info = soundfile.info(path)
            assert (info.format, info.subtype, info.channels, info.samplerate) == ("FLAC", "PCM_16", 1, 16_000)
            samples, original = load(path)
            assert original.sample_rate == 16_000 and original.duration_s == pytest.approx(SECONDS, abs=1e-3)
            assert np.abs(samples).max() > 0.01, (record["work_id"], stem)
            assert np.abs(samples).max() <= 0.5 + 1e-3


@renders
def test_labels_come_from_general_midi(corpus):
    for record in tracks(corpus):
        keys = [s["key"] for s in record["stems"]]
        assert keys[-2:] == ["bass", "drums"] and len(keys) >= 3  # a fugue may open with one voice
        for stem in record["stems"]:
            if stem["key"] == "drums":
                assert stem["program"] is None and stem["label_path"] == DRUM_KIT_LABEL_PATH
            else:
                assert stem["label_path"] == gm_label_path(stem["program"])
            assert stem["stem_name"] == stem["label_path"][0].replace(" ", "_")
            if stem["key"] == "bass":
                assert stem["program"] in BASS_PROGRAMS
            elif stem["key"] != "drums":
                low, high = PROGRAM_RANGES[stem["program"]]
                assert low <= stem["range"][0] and stem["range"][1] <= high


@renders
def test_manifest_records_how_each_variant_was_made(corpus):
    records = tracks(corpus)
    assert len({r["work_id"] for r in records}) == WORKS and len(records) == 2 * WORKS
    sha = file_sha256(DEFAULT_SOUNDFONT)
    for r in records:
        assert -5 <= r["transposition"] <= 6 and 0.85 <= r["tempo_factor"] <= 1.15
        assert r["duration"] == SECONDS and r["truncated"] is True and r["seed"] == 0
        assert r["soundfont"] == str(DEFAULT_SOUNDFONT.resolve()) and r["soundfont_sha256"] == sha
        assert r["stemserver_version"] == __version__ and r["composer"] and r["title"]
    for work in {r["work_id"] for r in records}:
        v0, v1 = sorted((r for r in records if r["work_id"] == work), key=lambda r: r["variant"])
        assert v0["track_id"] != v1["track_id"]
        assert (v0["tempo_factor"], [s["program"] for s in v0["stems"]]) != \
               (v1["tempo_factor"], [s["program"] for s in v1["stems"]])


@renders
def test_drum_stem_hits_at_the_recorded_tempo(corpus):
    for record in tracks(corpus):
        stem = next(s for s in record["stems"] if s["key"] == "drums")
        samples, _ = load(flac_path(corpus, record, stem))
        frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)  # 10 ms frames
        energy = np.log1p(100 * np.sqrt((frames ** 2).mean(axis=1)))
        onsets = np.maximum(np.diff(energy), 0)
        onsets -= onsets.mean()
        autocorrelation = np.correlate(onsets, onsets, "full")[len(onsets) - 1:]
        beat = record["beat_seconds"] * 100  # in frames
        low, high = int(beat * 0.7), int(beat * 1.3) + 1
        lag = low + int(np.argmax(autocorrelation[low:high]))
        assert abs(lag - beat) <= max(2, 0.03 * beat), (record["work_id"], record["drum_pattern"], lag, beat)


@renders
def test_same_seed_gives_the_same_corpus(corpus, tmp_path):
    again = tmp_path / "again"
    assert not build(again, limit=1, seconds=SECONDS, workers=1, seed=0, progress=False).failed
    first = {r["track_id"]: r for r in tracks(corpus)}
    for record in tracks(again):
        assert record["track_id"] in first
        assert record["stems"] == first[record["track_id"]]["stems"]
        for stem in record["stems"]:
            assert flac_path(again, record, stem).read_bytes() == flac_path(corpus, record, stem).read_bytes()
    other = tmp_path / "other"
    assert not build(other, limit=1, seconds=SECONDS, workers=1, seed=1, progress=False).failed
    assert not {r["track_id"] for r in tracks(other)} & set(first)


@renders
def test_resume_rebuilds_only_what_is_missing(corpus, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(corpus, out)
    records = tracks(out)
    removed, kept = records[0], records[1:]
    before = {r["track_id"]: (out / r["track_id"] / "data.json").stat().st_mtime_ns for r in kept}
    audio = {s["source_id"]: flac_path(out, removed, s).read_bytes() for s in removed["stems"]}
    shutil.rmtree(out / removed["track_id"])
    partial = out / ".partial" / kept[0]["track_id"] / "drums"
    partial.mkdir(parents=True)
    (partial / "half-written.flac").write_bytes(b"\0" * 100)

    summary = build(out, limit=WORKS, seconds=SECONDS, workers=2, seed=0, progress=False)
    assert (summary.built, summary.tracks, summary.skipped, summary.failed) == (1, 2 * WORKS, 0, [])
    assert not (out / ".partial").exists()
    assert {r["track_id"]: (out / r["track_id"] / "data.json").stat().st_mtime_ns for r in kept} == before
    assert {s["source_id"]: flac_path(out, removed, s).read_bytes() for s in removed["stems"]} == audio


@renders
def test_cli_summary_and_refusal_to_mix_settings(corpus, capsys):
    assert main(["build", str(corpus), "--limit", str(WORKS), "--seconds", str(SECONDS), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["tracks"], summary["built"], summary["works"]) == (2 * WORKS, 0, WORKS)
    assert summary["stems"] == sum(len(r["stems"]) for r in tracks(corpus))
    assert summary["track_hours"] == pytest.approx(2 * WORKS * SECONDS / 3600)
    assert summary["bytes"] > 0 and summary["eligible_works"] >= 900
    assert main(["build", str(corpus), "--limit", "1", "--seconds", "3"]) == 1
    assert "other settings" in capsys.readouterr().err


@renders
def test_a_track_with_fewer_than_two_audible_stems_is_skipped(tmp_path):
    from stemserver_training.corpus.build import Settings

    score = _score([[(40, 44, 72)], [(40, 44, 60)], [(40, 44, 48)]])  # nothing but rests in the window
    settings = Settings(out=tmp_path, soundfont=DEFAULT_SOUNDFONT, soundfont_sha256="", fluidsynth="fluidsynth",
                        seed=0, seconds=SECONDS, bass=False)
    record = build_track(score, 0, settings)
    assert record["type"] == "skip" and "audible" in record["reason"]
    assert [p.name for p in tmp_path.iterdir()] in ([], [".partial"])  # no track folder


@renders
def test_one_build_at_a_time_per_folder(tmp_path):
    from stemserver_training.corpus.layout import locked

    with locked(tmp_path), pytest.raises(CorpusError, match="another build is running"):
        build(tmp_path, limit=1, seconds=1.0, progress=False)


@renders
def test_the_moisesdb_reader_loads_the_corpus(corpus):
    from stemserver_training.datasets import read_moisesdb

    records = {r["track_id"]: r for r in tracks(corpus)}
    loaded = read_moisesdb(corpus)
    assert {t.name for t in loaded} == set(records)
    for track in loaded:
        record = records[track.name]
        assert sorted(s.label_path for s in track.stems) == sorted(tuple(s["label_path"]) for s in record["stems"])
    groups = {t.group for t in loaded}
    assert len(groups) == WORKS  # the variants of a work share a split group


def test_a_work_longer_than_the_audio_limit_is_cut_to_it():
    from stemserver.audio import MAX_DURATION_S

    score = _score([[(0, 4000, 72)], [(0, 4000, 60)], [(0, 4000, 48)]])  # 4000 quarters: over 30 min
    plan = plan_track(score, 0, seed=0, seconds=None, bass=False)
    assert plan.truncated and plan.duration <= MAX_DURATION_S


def test_the_bass_follows_the_lowest_sounding_voice():
    from stemserver_training.corpus.variants import _bass_line

    upper = Part("upper", (ScoreNote(0, 4, 67), ScoreNote(4, 8, 65)))
    lower = Part("lower", (ScoreNote(0, 2, 55), ScoreNote(6, 8, 50)))  # rests from 2 to 6
    line = [(n.start, n.end, n.pitch) for n in _bass_line((upper, lower), transposition=2)]
    assert line == [(0, 2, 45), (2, 4, 57), (4, 6, 55), (6, 8, 40)]  # the upper voice fills the rest


def test_tempo_changes_are_followed():
    import dataclasses

    score = dataclasses.replace(_score([[(0, 4, 72), (8, 12, 74)], [(0, 12, 60)], [(4, 8, 64)]]),
                                tempos=((0.0, 120.0), (4.0, 60.0)))
    plan = plan_track(score, 0, seed=0, seconds=None, bass=False)
    factor = plan.tempo_factor
    melody = next(s for s in plan.stems if s.key == "part0")
    # 4 quarters at 120 (2 s), then 4 at 60 (4 s): the third bar starts 6 s in, before the factor
    assert [round(n.start * factor, 6) for n in melody.notes] == [0.0, 6.0]
    assert plan.quarter_bpm == pytest.approx(120 * factor, abs=1e-3)
