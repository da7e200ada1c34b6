"""Render cost of the popular corpus's sound: one 30 s stem (120 BPM, 16 kHz) per timbre, on one core.

    .venv/bin/python benchmarks/popular_render.py [--seconds 30] [--repeats 3] [--json]

Prints, per timbre (every synth recipe, a few Debian drum kits, every installed soundfont playing
chords, a bass line and its drum kit, alone and as the three parts of one song: one FluidSynth
run): median seconds to render the dry stem, the same with the
heaviest production chain (every effect at once), and stem-hours rendered per core-hour with that
chain. The issue's goal is 100 stem-hours an hour of build on 2 cores: 50 per core, so a 30 s
stem must take under 0.6 s on average.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from common import emit, timed

from stemserver.audio import SAMPLE_RATE
from stemserver_training.corpus.popular import production, sources
from stemserver_training.corpus.popular.render import dry
from stemserver_training.corpus.popular.score import Note, Part, Section, Song, Timbre
from stemserver_training.corpus.popular.synth import RECIPES

BPM = 120.0
HEAVIEST = [{"name": "highpass", "cutoff_hz": 80.0}, {"name": "low_shelf", "cutoff_hz": 150.0, "gain_db": 2.0},
            {"name": "peak", "cutoff_hz": 1200.0, "gain_db": -3.0, "q": 1.0},
            {"name": "compressor", "threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0},
            {"name": "distortion", "drive_db": 8.0}, {"name": "chorus", "rate_hz": 1.0, "depth": 0.3, "mix": 0.3},
            {"name": "delay", "beats": 0.75, "delay_s": 0.375, "feedback": 0.3, "mix": 0.2},
            {"name": "reverb", "room_size": 0.7, "damping": 0.5, "wet_level": 0.25, "dry_level": 0.9},
            {"name": "sidechain", "depth_db": 8.0, "attack_ms": 5.0, "release_ms": 150.0}]


def lines(beats: int) -> dict[str, list[Note]]:
    """Typical parts: a 16th-note drum groove, a bass on the eighths, 4-note chords a bar, a lead."""
    groove = (36, 42, 42, 42, 38, 42, 46, 42)
    return {
        "drums": [Note(k / 4, 0.2, groove[k % 8], 100)
                  for k in range(beats * 4)],
        "bass": [Note(k / 2, 0.45, 33 + (0, 0, 7, 5)[k % 4], 100) for k in range(beats * 2)],
        "chords": [Note(b, 3.9, p, 80) for b in range(0, beats, 4) for p in (57, 60, 64, 67)],
        "lead": [Note(k / 2, 0.45, 69 + (0, 3, 7, 10, 12, 10, 7, 3)[k % 8], 100) for k in range(beats * 2)],
        "fx": [Note(b, 8, 60, 110) for b in range(0, beats, 16)],
    }


def cases() -> list[tuple[str, str, Timbre]]:
    """(label, part kind, timbre)"""
    role_of = {"drum_machine": "drums", "kick808": "drums", "hats": "drums", "bass808": "bass", "acid": "bass",
               "pad": "chords", "supersaw": "chords", "fm": "chords", "riser": "fx", "sweep": "fx", "impact": "fx",
               "noise": "fx"}
    out = [(f"synth {name}", role_of.get(name, "lead"), Timbre("synth", name)) for name in sorted(RECIPES)]
    for kit in ("Millo_MultiLayered3", "ForzeeStereo", "The Black Pearl 1.0", "HardElectro1"):
        if kit in sources.installed_drumkits():
            out.append((f"drumkit {kit}", "drums", Timbre("drumkit", kit)))
    for sf in sources.installed_soundfonts():
        out += [(f"soundfont {sf.name} piano chords", "chords", Timbre("soundfont", sf.name, program=0)),
                (f"soundfont {sf.name} finger bass", "bass", Timbre("soundfont", sf.name, program=33)),
                (f"soundfont {sf.name} drum kit", "drums", Timbre("soundfont", sf.name, program=0, bank=128))]
    return out


def song_of(beats: int, parts: list[Part]) -> Song:
    return Song("bench", 0, "house", BPM, 4, 0.0, 9, "minor", ["Am"] * (beats // 4),
                [Section("verse", 0, beats // 4)], parts)


def rendered_together(song: Song) -> None:
    """All the song's parts, as a build renders them (its soundfont parts in one run a font)."""
    for part in song.parts:
        dry(part, song, SAMPLE_RATE, np.random.default_rng(0))


def run(seconds: float, repeats: int) -> dict:
    beats = round(seconds * BPM / 60)
    parts = lines(beats)
    cpu = torch.device("cpu")
    rows = []
    for label, kind, timbre in cases():
        part = Part("x", kind, (kind,), timbre, parts[kind])
        song = song_of(beats, [part])
        audio = dry(part, song, SAMPLE_RATE, np.random.default_rng(0))
        dry_s = timed(lambda p=part, s=song: dry(p, s, SAMPLE_RATE, np.random.default_rng(0)), cpu, repeats)
        fx_s = timed(lambda a=audio, s=song: production.apply_chain(a, HEAVIEST, SAMPLE_RATE,
                                                                    production.kick_times(s)), cpu, repeats)
        rows.append({"timbre": label, "dry_s": dry_s, "with_effects_s": dry_s + fx_s,
                     "stem_hours_per_core_hour": seconds / (dry_s + fx_s)})
        if timbre.kind == "soundfont" and timbre.bank == 128:  # the font's three parts, as one song renders them
            three = song_of(beats, [Part(f"x{k}", kind, (kind,), t, parts[kind])
                                    for k, (label_, kind, t) in enumerate(cases()) if t.name == timbre.name])
            per_stem = timed(lambda s=three: rendered_together(s), cpu, repeats) / len(three.parts)
            rows.append({"timbre": f"soundfont {timbre.name}: 3 parts of a song, per stem", "dry_s": per_stem,
                         "with_effects_s": per_stem + fx_s, "stem_hours_per_core_hour": seconds / (per_stem + fx_s)})
    return {"seconds": seconds, "sample_rate": SAMPLE_RATE, "bpm": BPM, "cpus": os.cpu_count(), "rows": rows}


def print_table(result: dict) -> None:
    print(f"one {result['seconds']:.0f} s stem at {result['sample_rate']} Hz, {result['bpm']:.0f} BPM, one core")
    print(f"{'timbre':62s} {'dry s':>7s} {'+fx s':>7s} {'stem-h/core-h':>14s}")
    for row in result["rows"]:
        print(f"{row['timbre']:62s} {row['dry_s']:7.3f} {row['with_effects_s']:7.3f} "
              f"{row['stem_hours_per_core_hour']:14.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    emit(run(args.seconds, args.repeats), args.json, print_table)


if __name__ == "__main__":
    main()
