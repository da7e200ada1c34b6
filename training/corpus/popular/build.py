"""Build the popular-music corpus: arrange, render, produce and mix songs in parallel, resume.

    stemserver corpus build OUT --style popular [--limit N] [--seconds S] [--genres G ...] [--workers W] [--seed S]

Song i of a corpus is arranged by arrange_song(seed, genre, seconds=S, index=i): the same
command builds the same songs, and --limit N builds the first N of them, so a small build is the
start of a bigger one. Each song is written in the MoisesDB layout (layout.py): one FLAC per part,
grouped in data.json by coarse label (stemName) with the fine label as trackType, and the song's
ground truth in data.json and the manifest. Resuming, locking and parallel workers are the
classical builder's (layout.py, parallel.py).
"""

from __future__ import annotations

import math
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stemserver import __version__
from stemserver.audio import SAMPLE_RATE
from stemserver_training.corpus import layout
from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.parallel import Totals, run_jobs
from stemserver_training.corpus.popular.arrange import arrange_song, song_record
from stemserver_training.corpus.popular.genres import GENRES
from stemserver_training.corpus.popular.render import mix_song, render_part
from stemserver_training.corpus.popular.resolve import resolve_timbres
from stemserver_training.corpus.popular.score import Note, Part, Song
from stemserver_training.corpus.popular.sources import describe as provenance
from stemserver_training.corpus.popular.sources import installed_drumkits, installed_soundfonts
from stemserver_training.corpus.variants import NAMESPACE

DEFAULT_LIMIT = 100
SILENT_DB = -60.0  # a stem whose peak is this far below the loudest is left out as silent
MIN_STEMS = 2
GRID_SLACK = 0.125  # beats
ONSET_ROLES = ("drums", "fx")  # stems whose note onsets data.json lists (the one-shots of the loop export)


@dataclass(frozen=True)
class Settings:
    out: Path
    seed: int
    seconds: float | None
    genres: tuple[str, ...] | None

    def config(self) -> dict:
        """What a folder's songs depend on: resuming with other settings would mix two corpora."""
        return {"style": "popular", "seed": self.seed, "seconds": self.seconds,
                "genres": list(self.genres) if self.genres else None, "sample_rate": SAMPLE_RATE,
                "soundfonts": [sf.name for sf in installed_soundfonts()], "drumkits": installed_drumkits()}


@dataclass(kw_only=True)
class Summary(Totals):
    songs: int
    genres: dict[str, int] = field(default_factory=dict)


def genre_of(index: int, seed: int, genres: Sequence[str] | None) -> str | None:
    """Song `index`'s genre when --genres restricts them (None: arrange_song draws one)."""
    return random.Random(f"popular-genre:{seed}:{index}").choice(sorted(genres)) if genres else None


def build(out: str | Path, *, limit: int = DEFAULT_LIMIT, seconds: float | None = None,
          genres: Sequence[str] | None = None, workers: int = 1, seed: int = 0, progress: bool = True) -> Summary:
    """Build (or resume) the first `limit` songs of the popular corpus in `out`."""
    started = time.monotonic()
    unknown = sorted(set(genres or ()) - set(GENRES))
    if unknown:
        raise CorpusError(f"unknown genre(s) {', '.join(unknown)}: choose from {', '.join(sorted(GENRES))}")
    if not installed_soundfonts():
        raise CorpusError("no General MIDI soundfont is installed: `sudo apt-get install fluid-soundfont-gm` "
                          "(and musescore-general-soundfont, timgm6mb-soundfont for more timbres)")
    out = Path(out)
    settings = Settings(out, seed, seconds, tuple(sorted(set(genres))) if genres else None)
    summary = Summary(out=str(out), songs=limit)
    with layout.locked(out):
        layout.check_config(out, settings.config())
        layout.clean_interrupted(out)
        records = {r["index"]: r for r in layout.read_manifest(out).values() if "index" in r}
        todo = [i for i in range(limit) if not _done(out, records.get(i))]
        if progress:
            print(f"building {len(todo)} of {limit} popular songs into {out}", file=sys.stderr)
        with tqdm(total=len(todo), unit="song", desc="rendering", disable=not progress, file=sys.stderr) as bar:
            tasks = [(f"song {i}", (i, settings)) for i in todo]
            for result in run_jobs(build_song, tasks, workers):
                if isinstance(result, str):
                    summary.failed.append(result)
                    tqdm.write(f"failed: {result}", file=sys.stderr)
                    continue
                layout.append_manifest(out, result)
                records[result["index"]] = result
                summary.built += result["type"] == "track"
                bar.update(1)
        layout.clean_interrupted(out)
    for record in filter(None, (records.get(i) for i in range(limit))):
        if record["type"] == "skip":
            summary.skipped += 1
            continue
        summary.stems += len(record["stems"])
        summary.track_hours += record["duration"] / 3600
        summary.stem_hours += record["duration"] * len(record["stems"]) / 3600
        summary.genres[record["genre"]] = summary.genres.get(record["genre"], 0) + 1
    summary.bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    summary.seconds = time.monotonic() - started
    return summary


def _done(out: Path, record: dict | None) -> bool:
    return record is not None and (record["type"] == "skip" or layout.is_complete(out / record["track_id"]))


def arrange(index: int, settings: Settings) -> tuple[Song, dict]:
    """Song `index` as the corpus arranges it, and the arguments that reproduce it."""
    args = {"seed": settings.seed, "genre": genre_of(index, settings.seed, settings.genres),
            "seconds": settings.seconds, "index": index}
    return arrange_song(**args), args


def build_song(index: int, settings: Settings) -> dict:
    """Arrange, render, produce, mix and write song `index`; returns its manifest record."""
    song, args = arrange(index, settings)
    drawn = resolve_timbres(song, random.Random(f"popular-sources:{settings.seed}:{index}"))
    rng = np.random.default_rng([settings.seed, index, 13])
    audio = {part.name: render_part(part, song, SAMPLE_RATE, rng)[0] for part in song.parts}
    _, stems, levels = mix_song(song, audio, rng)
    peaks = {name: float(np.abs(x).max(initial=0.0)) for name, x in stems.items()}
    floor = max(peaks.values(), default=0.0) * 10 ** (SILENT_DB / 20)
    silent = [p.name for p in song.parts if peaks[p.name] <= floor]
    kept = [p for p in song.parts if peaks[p.name] > floor]
    if len(kept) < MIN_STEMS:
        return {"type": "skip", "track_id": song.id, "index": index, "seed": settings.seed,
                "reason": f"only {len(kept)} audible stem(s)"}
    truth = song_record(song)
    parts = {p["name"]: p for p in truth.pop("parts")}
    stem_entries = [_stem_entry(song, part, parts[part.name], drawn[part.name], levels["stems"][part.name])
                    for part in kept]
    data = _data_json(song, truth, stem_entries, args, levels)
    layout.write_folder(settings.out, song.id, data, {s["id"]: stems[s["part"]] for s in stem_entries})
    return {"type": "track", "track_id": song.id, "index": index, "style": "popular", **truth,
            "duration": truth["seconds"], "arrange": args, "sample_rate": SAMPLE_RATE,
            "master_gain_db": levels["master_gain_db"], "peak_dbfs": levels["peak_dbfs"],
            "stems": stem_entries, "silent_stems": silent, "stemserver_version": __version__}


def _stem_entry(song: Song, part: Part, truth: dict, drawn, level: dict) -> dict:
    """A stem's ground truth: what it is, what played it, its production, and when it plays."""
    spb = 60.0 / song.bpm
    playing = sorted({b for n in part.notes for b in bars_of(n, song.meter) if b < song.bars})
    entry = {
        "stem_name": part.label_path[0].replace(" ", "_"), "label_path": list(part.label_path), "part": part.name,
        "id": str(uuid.uuid5(NAMESPACE, f"{song.id}/{part.name}")), "role": part.role, "style": part.style,
        "timbre": provenance(part.timbre), "voice": {"kind": drawn.kind, "name": drawn.name, "program": drawn.program,
                                             "bank": drawn.bank, "params": dict(drawn.params)},
        "effects": truth["effects"], "notes": truth["notes"], "bars_playing": playing,
        "lowest": min((n.pitch for n in part.notes), default=None),
        "highest": max((n.pitch for n in part.notes), default=None), **level,
    }
    if part.role in ONSET_ROLES:
        entry["onsets"] = sorted({round(n.start * spb, 4) for n in part.notes})
    return entry


def bars_of(note: Note, meter: int) -> range:
    """The bars a note sounds in. Humanisation moves notes a few ms around the grid: a note played
    just before a bar line (or ending just after one) belongs to the bar it was written in."""
    first = math.floor((note.start + GRID_SLACK) / meter)
    return range(first, max(first + 1, math.ceil((note.start + note.length - GRID_SLACK) / meter)))


def _data_json(song: Song, truth: dict, stems: list[dict], args: dict, levels: dict) -> dict:
    """MoisesDB's data.json (song, artist, genre, stems by stemName) with the ground truth added."""
    groups: dict[str, dict] = {}
    for s in stems:
        group = groups.setdefault(s["stem_name"], {
            "stemName": s["stem_name"], "id": str(uuid.uuid5(NAMESPACE, f"{song.id}/stem/{s['stem_name']}")),
            "tracks": []})
        group["tracks"].append({"trackType": s["label_path"][-1], "id": s["id"], "extension": "flac",
                                "has_bleed": False, **{k: v for k, v in s.items() if k not in ("id", "stem_name")}})
    return {"song": song.id, "artist": "stemserver popular generator", **truth, "arrange": args,
            "sample_rate": SAMPLE_RATE, "master_gain_db": levels["master_gain_db"], "peak_dbfs": levels["peak_dbfs"],
            "stems": list(groups.values())}


def describe(s: Summary) -> str:
    minutes, secs = divmod(round(s.seconds), 60)
    genres = ", ".join(f"{g} {n}" for g, n in sorted(s.genres.items()))
    return "\n".join([
        f"corpus: {s.out} (popular)",
        f"  songs:  {s.songs - s.skipped - len(s.failed)} ({s.built} built now), {s.skipped} skipped, "
        f"{len(s.failed)} failed",
        f"  genres: {genres}",
        f"  stems:  {s.stems}",
        f"  audio:  {s.track_hours:.2f} h of songs, {s.stem_hours:.2f} h of stems",
        f"  disk:   {s.bytes / 1e9:.2f} GB",
        f"  time:   {minutes} min {secs} s",
    ])
