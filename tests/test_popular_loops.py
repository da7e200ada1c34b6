"""The loop export on a hand-written track: cuts on the bar grid, silent cuts left out, pack names,
one-shots at the listed onsets (no rendering: the fast tier covers it where FluidSynth is missing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.popular.loops import export_loops, key_tag, spread

RATE = 16_000
BPM, METER, BARS = 120.0, 4, 4  # 2 s bars
BAR = round(METER * 60 / BPM * RATE)


def write_track(root: Path) -> None:
    t = np.arange(BARS * BAR) / RATE
    bass = (0.3 * np.sin(2 * np.pi * 55 * t)).astype(np.float32)
    bass[2 * BAR:] = 0.0  # plays bars 0 and 1 only
    kick = np.zeros(BARS * BAR, dtype=np.float32)
    onsets = [0.0, 0.5, 1.0, 3.0]
    for at in onsets:
        start = round(at * RATE)
        kick[start: start + 1600] = 0.8 * np.exp(-np.arange(1600) / 400)
    stems = []
    for part, role, label, audio, extra in (("bass", "bass", ["bass", "synth bass"], bass, {}),
                                            ("kick", "drums", ["drums", "kick drum"], kick, {"onsets": onsets})):
        folder = root / "song" / label[0]
        folder.mkdir(parents=True)
        soundfile.write(folder / f"{part}.flac", audio, RATE, subtype="PCM_16")
        stems.append({"stemName": label[0], "id": label[0], "tracks": [
            {"trackType": label[1], "id": part, "extension": "flac", "part": part, "role": role, "label_path": label,
             "bars_playing": [0, 1], **extra}]})  # the kick's hits at 0-3 s: bars 0 and 1 too
    data = {"song": "song", "genre": "house", "bpm": BPM, "meter": METER, "bars": BARS, "key": "F minor",
            "mode": "minor", "chords": ["Fm", "Db", "Ab", "Eb"], "stems": stems}
    (root / "song" / "data.json").write_text(json.dumps(data))


def test_loops_and_one_shots_of_a_known_track(tmp_path):
    write_track(tmp_path / "corpus")
    summary = export_loops(tmp_path / "corpus", tmp_path / "out", bars=(1, 2, 4), per_stem=4, one_shots=2)
    records = [json.loads(line) for line in (tmp_path / "out" / "loops.jsonl").read_text().splitlines()]
    files = {r["file"]: r for r in records}
    # the bass plays bars 0-1: two 1-bar loops, one 2-bar loop, and a 4-bar loop (half its bars play)
    assert sorted(f for f in files if "Bass" in f) == [f"Loops/Bass_120_Fmin_{n:02d}.wav" for n in range(1, 5)]
    assert sorted((r["bars"], r["start_bar"]) for r in records if r["part"] == "bass") == [(1, 0), (1, 1), (2, 0),
                                                                                           (4, 0)]
    assert files["Loops/Bass_120_Fmin_01.wav"]["chords"] == ["Fm"]
    assert all("Fmin" not in f for f in files if "Kick" in f)  # drum loops carry no key
    audio, rate = soundfile.read(tmp_path / "out" / "Loops" / "Bass_120_Fmin_01.wav")
    assert (rate, len(audio)) == (RATE, BAR)
    # the kick's hits with most room: 3.0 (1 s, the longest allowed) and 1.0 (2 s before the next, cut to 1 s)
    shots = sorted((r["start_s"], r["seconds"]) for r in records if r["kind"] == "one-shot")
    assert shots == [(1.0, 1.0), (3.0, 1.0)] and {"One-Shots/Kick_01.wav", "One-Shots/Kick_02.wav"} <= set(files)
    assert (summary.loops, summary.one_shots, summary.songs) == (len(records) - 2, 2, 1)
    with pytest.raises(CorpusError, match="not empty"):
        export_loops(tmp_path / "corpus", tmp_path / "out")


def test_a_silent_cut_where_the_part_should_play_is_left_out(tmp_path):
    write_track(tmp_path / "corpus")
    data_file = tmp_path / "corpus" / "song" / "data.json"
    data = json.loads(data_file.read_text())
    data["stems"][0]["tracks"][0]["bars_playing"] = [0, 1, 2, 3]  # claims bars 2-3, which are silent
    data_file.write_text(json.dumps(data))
    summary = export_loops(tmp_path / "corpus", tmp_path / "out", bars=(1,), per_stem=4, one_shots=1)
    assert summary.silent_cuts == 2
    assert summary.loops == 2 + 2  # the bass's bars 0-1 and the kick's


def test_names_and_spreading():
    assert (key_tag("F", "minor"), key_tag("C#", "dorian"), key_tag("Bb", "mixolydian")) == ("Fmin", "C#min", "Bbmaj")
    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], 5) == [1, 2] and spread([7, 8], 1) == [7]
