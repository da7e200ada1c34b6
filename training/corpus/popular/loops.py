"""Cut a popular corpus's stems into loops and one-shots named the way sample packs name them.

    stemserver corpus loops CORPUS OUT [--bars 1 2 4] [--per-stem N] [--one-shots N]

    OUT/Loops/Bass_124_Fmin_03.wav       a 1-, 2- or 4-bar loop cut on the song's bar grid
    OUT/One-Shots/Kick_07.wav            one hit of a separate drum piece or an impact
    OUT/loops.jsonl                      one record per file: tempo, key, bars, source song and stem

Loops of tonal stems carry the key in the name (Fmin, Cmaj: a minor-third mode reads "min"); drum
and effect loops carry only the tempo. Cuts are aligned to their own length (a 4-bar loop starts
on bar 0, 4, 8...), and a cut is kept only where its part plays in at least half its bars and its
audio is not silent; of those, `per_stem` are taken, spread over the song. One-shots come from
the stems whose onsets data.json lists (separate kick, snare, clap, hats, percussion; impacts):
the hits with the most room before the next one, cut there or at MAX_HIT_S.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.layout import DATA_JSON
from stemserver_training.corpus.popular.theory import MINOR_THIRD_MODES

MANIFEST = "loops.jsonl"
LOOP_BARS = (1, 2, 4)
PER_STEM = 2
ONE_SHOTS = 2
SILENT_DB = -50.0  # peak dBFS at or below which a cut is silent
MAX_HIT_S = {"impact": 3.0}
DEFAULT_HIT_S = 1.0
MIN_HIT_S = 0.04
FADE_S = 0.005
UNKEYED_ROLES = ("drums", "fx")
ONE_SHOT_PARTS = ("kick", "snare", "clap", "hats", "perc", "impact")  # a kit's stem mixes pieces: none from it
ONE_SHOT_NAMES = {"hats": "Hat", "perc": "Perc"}


@dataclass
class Summary:
    out: str
    songs: int = 0
    skipped_tracks: list[str] = field(default_factory=list)  # tracks without a bar grid (not popular)
    loops: int = 0
    one_shots: int = 0
    silent_cuts: int = 0


def key_tag(tonic_name: str, mode: str) -> str:
    """'Fmin', 'C#maj': the key as sample packs write it."""
    return f"{tonic_name}{'min' if mode in MINOR_THIRD_MODES else 'maj'}"


def _bpm_tag(bpm: float) -> str:
    return str(int(bpm)) if float(bpm).is_integer() else f"{bpm:g}"


def spread(candidates: Sequence, n: int) -> list:
    """Up to `n` of `candidates`, evenly spread from the first to the last."""
    if len(candidates) <= n:
        return list(candidates)
    if n == 1:
        return [candidates[0]]
    return [candidates[round(k * (len(candidates) - 1) / (n - 1))] for k in range(n)]


def _audible(x: np.ndarray) -> bool:
    return x.size > 0 and float(np.abs(x).max()) > 10 ** (SILENT_DB / 20)


class _Writer:
    def __init__(self, out: Path) -> None:
        self.out, self.counts, self.records = out, Counter(), []

    def write(self, folder: str, stem: str, audio: np.ndarray, rate: int, record: dict) -> None:
        self.counts[stem] += 1
        name = f"{stem}_{self.counts[stem]:02d}.wav"
        (self.out / folder).mkdir(parents=True, exist_ok=True)
        soundfile.write(self.out / folder / name, audio, rate, subtype="PCM_16")
        self.records.append({"file": f"{folder}/{name}", **record})


def export_loops(corpus: str | Path, out: str | Path, *, bars: Sequence[int] = LOOP_BARS, per_stem: int = PER_STEM,
                 one_shots: int = ONE_SHOTS) -> Summary:
    """Write the loops and one-shots of every popular track of `corpus` into `out` (new or empty)."""
    corpus, out = Path(corpus), Path(out)
    tracks = sorted(p.parent for p in corpus.glob(f"*/{DATA_JSON}"))
    if not tracks:
        raise CorpusError(f"{corpus} holds no track (<track>/data.json): build one with "
                          "`stemserver corpus build CORPUS --style popular`")
    if out.exists() and any(out.iterdir()):
        raise CorpusError(f"{out} is not empty: export into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    summary, writer = Summary(out=str(out)), _Writer(out)
    for track in tracks:
        data = json.loads((track / DATA_JSON).read_text())
        if "bpm" not in data or "meter" not in data:
            summary.skipped_tracks.append(track.name)
            continue
        summary.songs += 1
        for group in data["stems"]:
            for stem in group["tracks"]:
                audio, rate = soundfile.read(track / group["stemName"] / f"{stem['id']}.{stem['extension']}",
                                             dtype="float32")
                source = {"source_track": track.name, "stem": f"{group['stemName']}/{stem['id']}", "part": stem["part"],
                          "label_path": stem["label_path"], "role": stem["role"], "genre": data["genre"],
                          "bpm": data["bpm"], "meter": data["meter"], "key": data["key"], "mode": data["mode"]}
                summary.silent_cuts += _loops(writer, data, stem, audio, rate, bars, per_stem, source)
                if "onsets" in stem and stem["part"] in ONE_SHOT_PARTS:
                    summary.silent_cuts += _one_shots(writer, stem, audio, rate, one_shots, source)
    with (out / MANIFEST).open("w") as f:
        for record in writer.records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary.loops = sum(r["kind"] == "loop" for r in writer.records)
    summary.one_shots = sum(r["kind"] == "one-shot" for r in writer.records)
    return summary


def _loops(writer: _Writer, data: dict, stem: dict, audio: np.ndarray, rate: int, lengths: Sequence[int],
           per_stem: int, source: dict) -> int:
    """Write a stem's loops; returns how many playing cuts were silent."""
    bar_samples = data["meter"] * 60.0 / data["bpm"] * rate
    playing, silent = set(stem["bars_playing"]), 0
    name = stem["part"].title()
    tags = [_bpm_tag(data["bpm"])]
    if stem["role"] not in UNKEYED_ROLES:
        tags.append(key_tag(data["key"].split()[0], data["mode"]))
    for n in lengths:
        cuts = []
        for start in range(0, data["bars"] - n + 1, n):
            if 2 * len(playing & set(range(start, start + n))) < n:
                continue
            cut = audio[round(start * bar_samples): round((start + n) * bar_samples)]
            if _audible(cut):
                cuts.append((start, cut))
            else:
                silent += 1
        for start, cut in spread(cuts, per_stem):
            writer.write("Loops", "_".join([name, *tags]), cut, rate, {
                "kind": "loop", "bars": n, "start_bar": start, "start_s": round(start * bar_samples / rate, 4),
                "seconds": round(len(cut) / rate, 4), "chords": data["chords"][start: start + n], **source})
    return silent


def _one_shots(writer: _Writer, stem: dict, audio: np.ndarray, rate: int, count: int, source: dict) -> int:
    """Write a stem's best-isolated hits; returns how many chosen hits were silent."""
    onsets = stem["onsets"]
    longest = MAX_HIT_S.get(stem["part"], DEFAULT_HIT_S)
    room = [(min(b - a, longest), a) for a, b in zip(onsets, [*onsets[1:], len(audio) / rate])]
    hits = sorted((r for r in room if r[0] >= MIN_HIT_S), key=lambda r: (-r[0], r[1]))[:count]
    silent = 0
    for seconds, at in sorted(hits, key=lambda r: r[1]):
        cut = audio[round(at * rate): round((at + seconds) * rate)].copy()
        fade = min(len(cut), round(FADE_S * rate))
        cut[len(cut) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        if not _audible(cut):
            silent += 1
            continue
        name = ONE_SHOT_NAMES.get(stem["part"], stem["part"].title())
        writer.write("One-Shots", name, cut, rate, {"kind": "one-shot", "start_s": at,
                                                    "seconds": round(len(cut) / rate, 4), **source})
    return silent


def describe(s: Summary) -> str:
    lines = [f"loops: {s.out}", f"  songs:     {s.songs}", f"  loops:     {s.loops}", f"  one-shots: {s.one_shots}",
             f"  silent cuts left out: {s.silent_cuts}"]
    if s.skipped_tracks:
        lines.append(f"  skipped {len(s.skipped_tracks)} track(s) without a bar grid (not popular), "
                     f"e.g. {s.skipped_tracks[0]}")
    return "\n".join(lines)
