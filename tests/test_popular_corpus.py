"""The popular corpus built for real: songs arranged, rendered with the Debian soundfonts, drum
kits and the project's synths, produced and mixed, then measured as audio.

One small build (8 songs of 12 s, genres with drums and bass) is shared by most tests; they skip,
with the reason, where FluidSynth or the soundfonts and kits are not installed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from popular_measure import (
    bar_levels,
    bass_pitches,
    beat_contrast,
    db,
    drum_tempo,
    estimate_key,
    load_stems,
    manifest_key,
    onset_autocorrelation,
    part_notes,
    songs,
    stem_path,
)

from stemserver.audio import SAMPLE_RATE
from stemserver_training.corpus.__main__ import main
from stemserver_training.corpus.popular import sources
from stemserver_training.corpus.popular.build import build
from stemserver_training.datasets import read_moisesdb

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not sources.installed_soundfonts() or not sources.installed_drumkits(),
    reason="needs fluidsynth, the GM soundfonts and the Hydrogen kits (scripts/test.sh installs them: apt-get install "
    "fluidsynth fluid-soundfont-gm musescore-general-soundfont timgm6mb-soundfont hydrogen-drumkits)")]

SONGS = 8
SECONDS = 12.0
GENRES = ["house", "hip-hop", "rock", "funk", "pop", "techno", "trap", "reggae"]
PEAK = 10 ** (-1 / 20)  # the mixer's ceiling, -1 dBFS
LSB = 1 / 32768


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("popular") / "out"
    summary = build(out, limit=SONGS, seconds=SECONDS, genres=GENRES, workers=2, seed=0, progress=False)
    assert not summary.failed, summary.failed
    return out


def data_json(corpus: Path, record: dict) -> dict:
    return json.loads((corpus / record["track_id"] / "data.json").read_text())


def test_layout_ground_truth_and_the_moisesdb_reader(corpus):
    records = {r["track_id"]: r for r in songs(corpus)}
    assert len(records) == SONGS
    loaded = read_moisesdb(corpus)
    assert {t.name for t in loaded} == set(records)
    assert len({t.group for t in loaded}) == SONGS  # every song its own split group
    for track in loaded:
        record = records[track.name]
        assert sorted(s.label_path for s in track.stems) == sorted(tuple(s["label_path"]) for s in record["stems"])
        data = data_json(corpus, record)
        assert data["genre"] in GENRES and 60 <= data["bpm"] <= 200 and data["meter"] in (3, 4)
        assert data["key"].split()[1] == data["mode"] and 0 <= data["tonic"] < 12
        assert len(data["chords"]) == data["bars"] and all(data["chords"])
        assert sum(s["bars"] for s in data["sections"]) == data["bars"]
        assert data["seconds"] == pytest.approx(data["bars"] * data["meter"] * 60 / data["bpm"], abs=1e-3)
        for group in data["stems"]:
            for stem in group["tracks"]:
                assert group["stemName"] == stem["label_path"][0].replace(" ", "_")  # as the classical corpus
                assert stem["trackType"] == stem["label_path"][-1]
                assert stem["role"] in ("drums", "bass", "chords", "arp", "lead", "fx", "vocal")
                assert stem["timbre"]["kind"] in ("soundfont", "drumkit", "synth") and stem["timbre"]["name"]
                if stem["timbre"]["kind"] == "soundfont":
                    assert stem["timbre"]["name"] in {sf.name for sf in sources.installed_soundfonts()}
                assert all("name" in effect for effect in stem["effects"])
                info = soundfile.info(corpus / track.name / group["stemName"] / f"{stem['id']}.flac")
                assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1)
                assert info.frames == round(data["bars"] * data["meter"] * 60 / data["bpm"] * SAMPLE_RATE)


def test_each_stem_sounds_where_its_part_plays_and_is_silent_where_it_rests(corpus):
    rests = 0
    for record in songs(corpus):
        stems = load_stems(corpus, record)
        for stem in record["stems"]:
            playing, resting = bar_levels(record, stem, stems[stem["part"]], SAMPLE_RATE)
            assert playing and min(playing) > -50, (record["track_id"], stem["part"], playing)
            if resting:
                rests += len(resting)
                assert max(resting) < min(-45, min(playing) - 10), (record["track_id"], stem["part"], resting)
    assert rests >= 5  # the check checked something: parts do rest in these songs


def test_the_bass_sounds_the_written_notes_in_the_bass_register(corpus):
    measured = 0
    for record in songs(corpus):
        if not any(s["part"] == "bass" for s in record["stems"]):
            continue
        notes, spb = part_notes(record, "bass")
        pairs = bass_pitches(record, notes, spb, load_stems(corpus, record)["bass"], SAMPLE_RATE)
        assert pairs, record["track_id"]
        semitones = np.array([12 * np.log2(m / w) for w, m in pairs])
        # a pitch class within a third of a semitone; FM ratios of 1/2 sound an octave down, so octaves are allowed
        in_tune = np.abs(semitones - 12 * np.round(semitones / 12)) < 0.33
        assert in_tune.mean() >= 0.8, (record["track_id"], np.round(semitones, 1))
        assert np.mean([m < 330 for _, m in pairs]) >= 0.9, record["track_id"]  # E4: the bass register
        measured += len(pairs)
    assert measured >= 50


def test_the_drums_measured_tempo_is_the_manifests(corpus):
    checked = exact = 0
    for record in songs(corpus):
        if not any(s["role"] == "drums" for s in record["stems"]):
            continue
        acf = onset_autocorrelation(record, load_stems(corpus, record), SAMPLE_RATE)
        tempo, bpm = drum_tempo(acf, SAMPLE_RATE), record["bpm"]
        # the strongest periodicity is the beat or a metrical level of it (half-time, double-time, triplets)
        ratios = [tempo / (bpm * f) for f in (1, 2, 0.5, 2 / 3, 1.5)]
        assert min(abs(r - 1) for r in ratios) < 0.02, (record["track_id"], bpm, tempo)
        exact += abs(ratios[0] - 1) < 0.02
        # and the onsets repeat at the manifest's beat more than at a tempo 6 % off it
        assert beat_contrast(acf, bpm, SAMPLE_RATE) > 1.2, (record["track_id"], bpm)
        checked += 1
    assert checked >= SONGS - 1 and exact >= checked // 2


def test_a_key_profile_of_the_harmonic_stems_finds_the_manifests_key(corpus):
    results = []
    for record in songs(corpus):
        results.append((estimate_key(record, load_stems(corpus, record), SAMPLE_RATE), manifest_key(record)))
    agree = sum(estimated == written for estimated, written in results)
    assert agree > len(results) / 2, results


def test_no_stem_or_mix_clips_and_the_stems_sum_to_the_mix(corpus):
    for record in songs(corpus):
        stems = load_stems(corpus, record)
        peaks = {name: float(np.abs(x).max()) for name, x in stems.items()}
        assert max(peaks.values()) <= PEAK + LSB, peaks
        mix = sum(stems.values())
        assert 20 * np.log10(np.abs(mix).max()) == pytest.approx(record["peak_dbfs"], abs=0.05)
        assert record["peak_dbfs"] <= -1.0 + 1e-6
        assert all(db(x) > -70 for x in stems.values())


def test_same_seed_same_songs_and_a_small_build_is_the_start_of_a_big_one(corpus, tmp_path):
    small = tmp_path / "small"
    assert not build(small, limit=2, seconds=SECONDS, genres=GENRES, workers=1, seed=0, progress=False).failed
    first = {r["track_id"]: r for r in songs(corpus)}
    again = songs(small)
    assert [r["index"] for r in again] == [0, 1]
    for record in again:
        assert record["stems"] == first[record["track_id"]]["stems"]
        for stem in record["stems"]:
            assert stem_path(small, record, stem).read_bytes() == stem_path(corpus, record, stem).read_bytes()
    other = tmp_path / "other"
    assert not build(other, limit=2, seconds=SECONDS, genres=GENRES, workers=1, seed=1, progress=False).failed
    assert not {r["track_id"] for r in songs(other)} & set(first)


def test_resume_rebuilds_only_what_is_missing(corpus, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(corpus, out)
    records = songs(out)
    removed, kept = records[0], records[1:]
    before = {r["track_id"]: (out / r["track_id"] / "data.json").stat().st_mtime_ns for r in kept}
    audio = {s["id"]: stem_path(out, removed, s).read_bytes() for s in removed["stems"]}
    shutil.rmtree(out / removed["track_id"])
    (out / ".partial" / "half").mkdir(parents=True)
    summary = build(out, limit=SONGS, seconds=SECONDS, genres=GENRES, workers=1, seed=0, progress=False)
    assert (summary.built, summary.failed) == (1, [])
    assert not (out / ".partial").exists()
    assert {r["track_id"]: (out / r["track_id"] / "data.json").stat().st_mtime_ns for r in kept} == before
    assert {s["id"]: stem_path(out, removed, s).read_bytes() for s in removed["stems"]} == audio


def test_cli_builds_and_refuses_other_settings_and_classical_options(corpus, capsys):
    argv = ["build", str(corpus), "--style", "popular", "--limit", str(SONGS), "--seconds", str(SECONDS),
            "--genres", *GENRES, "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["built"], summary["songs"], sum(summary["genres"].values())) == (0, SONGS, SONGS)
    assert summary["stem_hours"] == pytest.approx(sum(len(r["stems"]) for r in songs(corpus)) * SECONDS / 3600,
                                                  rel=0.15)
    assert main(["build", str(corpus), "--style", "popular", "--limit", "2", "--seconds", "5"]) == 1
    assert "other settings" in capsys.readouterr().err
    assert main(["build", str(corpus), "--style", "popular", "--variants", "3"]) == 1
    assert "--variants only apply to --style classical" in capsys.readouterr().err
    assert main(["build", str(corpus), "--style", "popular", "--genres", "polka"]) == 1
    assert "unknown genre(s) polka" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(corpus), "--style", "jazz"])
    assert exit_info.value.code == 2


LOOP_NAME = re.compile(r"^(?P<name>[A-Z][a-z]+)_(?P<bpm>\d+)(_(?P<key>[A-G][#b]?(maj|min)))?_(?P<n>\d{2,})\.wav$")
ONE_SHOT_NAME = re.compile(r"^(Kick|Snare|Clap|Hat|Perc|Impact)_\d{2,}\.wav$")


def test_loops_and_one_shots_are_cut_on_the_grid_and_named_like_a_sample_pack(corpus, tmp_path):
    out = tmp_path / "loops"
    assert main(["loops", str(corpus), str(out)]) == 0
    records = [json.loads(line) for line in (out / "loops.jsonl").read_text().splitlines()]
    by_track = {r["track_id"]: r for r in songs(corpus)}
    loops = [r for r in records if r["kind"] == "loop"]
    shots = [r for r in records if r["kind"] == "one-shot"]
    assert loops and shots and {r["bars"] for r in loops} == {1, 2, 4}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == sorted(r["file"] for r in records)
    for record in loops:
        song = by_track[record["source_track"]]
        match = LOOP_NAME.match(Path(record["file"]).name)
        assert match and int(match["bpm"]) == round(song["bpm"]), record["file"]
        assert (match["key"] is None) == (record["role"] in ("drums", "fx")), record["file"]
        if match["key"]:
            assert match["key"].startswith(song["key"].split()[0])
        audio, rate = soundfile.read(out / record["file"])
        bar = song["meter"] * 60 / song["bpm"]
        assert len(audio) == pytest.approx(record["bars"] * bar * rate, abs=1)
        assert record["start_s"] == pytest.approx(record["start_bar"] * bar, abs=1e-3)
        assert np.abs(audio).max() > 10 ** (-50 / 20)  # silent cuts are left out
        assert record["chords"] == song["chords"][record["start_bar"]: record["start_bar"] + record["bars"]]
    for record in shots:
        assert ONE_SHOT_NAME.match(Path(record["file"]).name), record["file"]
        audio, _ = soundfile.read(out / record["file"])
        assert 0.04 * SAMPLE_RATE <= len(audio) <= 3 * SAMPLE_RATE and abs(audio[-1]) < 1e-3
    assert main(["loops", str(corpus), str(out)]) == 1  # not into a folder already holding an export


def test_a_mixed_corpus_prepares_into_one_cache_split_by_song_and_trains(corpus, tmp_path, capsys):
    """Popular and classical side by side under one root (MoisesDB's provider level): one
    `stemserver prepare`, splits by song (a classical work's variants together), a tiny train run."""
    from stemserver_training.cache import open_cache
    from stemserver_training.cli import main as training_main
    from stemserver_training.corpus.build import build as build_classical
    from stemserver_training.corpus.render import DEFAULT_SOUNDFONT

    if not DEFAULT_SOUNDFONT.is_file():
        pytest.skip(f"needs {DEFAULT_SOUNDFONT} for the classical half")
    root = tmp_path / "mixed"
    shutil.copytree(corpus, root / "popular")
    assert not build_classical(root / "classical", limit=2, seconds=6.0, workers=1, progress=False).failed
    classical = {r["track_id"]: r["work_id"] for r in songs(root / "classical")}
    assert len(classical) == 4

    cache = tmp_path / "cache"
    assert training_main(["prepare", "moisesdb", str(root), str(cache), "--valid-fraction", "0.2",
                          "--test-fraction", "0.2"]) == 0
    prepared = open_cache(cache)
    split_of = {t.name: t.split for t in prepared.tracks}
    assert set(split_of) == set(classical) | {r["track_id"] for r in songs(corpus)}
    for work in set(classical.values()):
        assert len({split_of[t] for t, w in classical.items() if w == work}) == 1  # variants share a split
    assert len(set(split_of.values())) == 3

    out = tmp_path / "run"
    assert training_main(["train", "tiny", f"data.cache={cache}", "data.layout=null", "data.root=null", f"out={out}",
                          "data.chunk_seconds=1.0", "data.norm_chunks=8", "data.valid_fraction=0.2",
                          "data.test_fraction=0.2", "optim.batch_size=4", "contrastive.steps=2",
                          "contrastive.warmup_steps=1", "jepa.steps=2", "jepa.warmup_steps=1",
                          "runtime.checkpoint_every=2", "runtime.progress=false", "runtime.tensorboard=false"]) == 0
    assert any(out.rglob("*.safetensors"))
