"""Build the open multitrack corpus: choose works, render their variants in parallel, resume.

    python -m stemserver_training.corpus build OUT [--limit N] [--seconds S] [--variants V] [--soundfont SF2]
                                                   [--workers W] [--seed S] [--no-bass] [--works GLOB] [--json]

One job is one work: a worker parses the score once and renders every variant of it that is not
built yet. The main process alone appends to the manifest, so records never interleave. A track
is done when its folder is complete and the manifest has its record; anything else is (re)built,
so an interrupted build resumes by running the same command again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stemserver import __version__
from stemserver.arguments import positive_float, positive_int
from stemserver.audio import SAMPLE_RATE
from stemserver.exits import EXIT_ERROR, EXIT_OK
from stemserver_training.corpus import layout
from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.parallel import Totals, run_jobs
from stemserver_training.corpus.popular.genres import GENRES
from stemserver_training.corpus.render import DEFAULT_SOUNDFONT, check_soundfont, file_sha256, find_fluidsynth, render
from stemserver_training.corpus.scores import IneligibleWork, Score, Work, eligible_works, load_score, select_works
from stemserver_training.corpus.variants import TrackPlan, plan_track, track_id

DEFAULT_VARIANTS = 2
PEAK = 0.5  # the loudest stem of a track is scaled to peak here (-6 dBFS): the mix keeps headroom
SILENT_DB = -50.0  # a stem whose peak is this far below the loudest stem's is left out as silent
MIN_STEMS = 2


@dataclass(frozen=True)
class Settings:
    """What determines the audio of a track (besides its work and variant)."""

    out: Path
    soundfont: Path
    soundfont_sha256: str
    fluidsynth: str
    seed: int
    seconds: float | None
    bass: bool

    def config(self) -> dict:
        """The settings a folder is tied to: resuming with other ones would mix two corpora."""
        return {"seed": self.seed, "seconds": self.seconds, "bass": self.bass,
                "soundfont_sha256": self.soundfont_sha256}


@dataclass(kw_only=True)
class Summary(Totals):
    """What a build did, and what the folder holds for the selected works."""

    eligible_works: int
    works: int
    variants: int
    tracks: int = 0


def build(
    out: str | Path,
    *,
    limit: int | None = None,
    seconds: float | None = None,
    variants: int = DEFAULT_VARIANTS,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
    workers: int | None = None,
    seed: int = 0,
    bass: bool = True,
    works: str | None = None,
    progress: bool = True,
) -> Summary:
    """Build (or resume) the corpus in `out`; see the module docstring and docs/corpus.md."""
    started = time.monotonic()
    out = Path(out)
    fluidsynth = find_fluidsynth()
    soundfont = check_soundfont(soundfont)
    settings = Settings(out=out, soundfont=soundfont, soundfont_sha256=file_sha256(soundfont),
                        fluidsynth=fluidsynth, seed=seed, seconds=seconds, bass=bass)
    with layout.locked(out):
        layout.check_config(out, settings.config())
        layout.clean_interrupted(out)
        eligible = eligible_works()
        selected = select_works(eligible, works, limit, seed)
        if not selected:
            raise CorpusError(f"no eligible work matches --works {works!r} (ids look like 'bach/bwv66.6.mxl')")
        summary = Summary(out=str(out), eligible_works=len(eligible), works=len(selected), variants=variants)
        records = _render_missing(selected, variants, settings, workers or os.cpu_count() or 1, summary, progress)
        layout.clean_interrupted(out)

    for work in selected:
        for record in filter(None, (records.get(track_id(work.work_id, v, seed)) for v in range(variants))):
            if record["type"] == "skip":
                summary.skipped += 1
            else:
                summary.tracks += 1
                summary.stems += len(record["stems"])
                summary.track_hours += record["duration"] / 3600
                summary.stem_hours += record["duration"] * len(record["stems"]) / 3600
    summary.bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    summary.seconds = time.monotonic() - started
    return summary


def _render_missing(selected: list[Work], variants: int, settings: Settings, workers: int, summary: Summary,
                    progress: bool) -> dict[str, dict]:
    """Build every selected track the folder lacks; returns the manifest records by track id."""
    out = settings.out
    records = layout.read_manifest(out)
    jobs = []
    for work in selected:
        todo = tuple(v for v in range(variants)
                     if not _done(out, records.get(track_id(work.work_id, v, settings.seed))))
        if todo:
            jobs.append((work, todo))
    jobs.sort(key=lambda job: -job[0].notes * len(job[1]))  # longest first: no long work left for last
    pending = sum(len(todo) for _, todo in jobs)
    _log(f"{summary.eligible_works} eligible works; building {pending} of {len(selected) * variants} tracks "
         f"({len(selected)} works x {variants} variants) into {out}", progress)

    with tqdm(total=pending, unit="track", desc="rendering", disable=not progress, file=sys.stderr) as bar:
        tasks = [(work.work_id, (work, todo, settings)) for work, todo in jobs]
        for result in run_jobs(build_work, tasks, workers):
            if isinstance(result, str):
                summary.failed.append(result)
                tqdm.write(f"failed: {result}", file=sys.stderr)
                continue
            for record in result:
                layout.append_manifest(out, record)
                records[record["track_id"]] = record
                summary.built += record["type"] == "track"
                bar.update(1)
    return records


def build_work(work: Work, variants: tuple[int, ...], settings: Settings) -> list[dict]:
    """Parse `work` once and build the given variants of it; returns their manifest records."""
    try:
        score = load_score(work)
    except IneligibleWork as e:
        return [_skip(work, v, settings, str(e)) for v in variants]
    return [build_track(score, v, settings) for v in variants]


def build_track(score: Score, variant: int, settings: Settings) -> dict:
    """Render one variant, leave out silent stems, write the track; returns its manifest record."""
    plan = plan_track(score, variant, settings.seed, settings.seconds, settings.bass)
    n_samples = math.ceil(plan.duration * SAMPLE_RATE)
    scratch = layout.scratch_folder(settings.out, plan.track_id)
    audio = {stem.key: render(stem.notes, stem.program, stem.channel, settings.soundfont, n_samples, scratch,
                              settings.fluidsynth)
             for stem in plan.stems}
    shutil.rmtree(scratch)
    peaks = {key: float(np.abs(x).max()) for key, x in audio.items()}
    loudest = max(peaks.values(), default=0.0)
    floor = loudest * 10 ** (SILENT_DB / 20)
    silent = [s for s in plan.stems if peaks[s.key] <= floor]
    plan = dataclasses.replace(
        plan,
        stems=tuple(s for s in plan.stems if peaks[s.key] > floor),
        skipped=plan.skipped + tuple((s.key, s.part, "silent once rendered") for s in silent),
    )
    if len(plan.stems) < MIN_STEMS:
        return _skip(score.work, variant, settings, f"only {len(plan.stems)} audible stem(s)")
    gain = PEAK / loudest
    layout.write_track(settings.out, plan, score.work, {key: x * gain for key, x in audio.items()})
    return _track_record(plan, score, settings, gain)


def _track_record(plan: TrackPlan, score: Score, settings: Settings, gain: float) -> dict:
    return {
        "type": "track",
        "track_id": plan.track_id,
        "work_id": plan.work_id,
        "composer": score.work.composer,
        "title": score.work.title,
        "variant": plan.variant,
        "seed": plan.seed,
        "meter": score.meter,
        "tempo_marked": score.tempo_marked,
        "tempo_factor": plan.tempo_factor,
        "quarter_bpm": plan.quarter_bpm,
        "tempo_changes": len(score.tempos) - 1,
        "beat_seconds": plan.beat_seconds,
        "transposition": plan.transposition,
        "duration": plan.duration,
        "truncated": plan.truncated,
        "gain_db": round(20 * math.log10(gain), 2),
        "drum_pattern": plan.drum_pattern,
        "stems": [
            {"key": s.key, "part": s.part, "program": s.program, "label_path": list(s.label_path),
             "stem_name": s.stem_name, "source_id": s.source_id,
             "range": [s.lowest, s.highest] if s.lowest is not None else None}
            for s in plan.stems
        ],
        "skipped_stems": [{"key": key, "part": part, "reason": reason} for key, part, reason in plan.skipped],
        "soundfont": str(settings.soundfont),
        "soundfont_sha256": settings.soundfont_sha256,
        "stemserver_version": __version__,
    }


def _skip(work: Work, variant: int, settings: Settings, reason: str) -> dict:
    return {"type": "skip", "track_id": track_id(work.work_id, variant, settings.seed), "work_id": work.work_id,
            "variant": variant, "seed": settings.seed, "reason": reason}


def _done(out: Path, record: dict | None) -> bool:
    if record is None:
        return False
    return record["type"] == "skip" or layout.is_complete(out / record["track_id"])


def _log(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr)


# ----------------------------------------------------------------------------- command line


STYLES = ("classical", "popular")
CLASSICAL_ONLY = ("variants", "soundfont", "works")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `build`, for `python -m stemserver_training.corpus build` and `stemserver corpus build`."""
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder (MoisesDB layout); "
                        "run the same command again to resume an interrupted build")
    parser.add_argument("--style", choices=STYLES, default="classical",
                        help="classical: music21 scores through FluidSynth (the default); popular: generated "
                        "songs of a dozen genres with synths, soundfonts, drum kits and production")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="build only N works (a seeded sample); popular: N songs (default 100)")
    parser.add_argument("--seconds", type=positive_float, metavar="S",
                        help="keep only the first S seconds of each work (default: whole works); popular: songs "
                        "of about S seconds, whole bars (default: 16, 24 or 32 bars)")
    parser.add_argument("--variants", type=positive_int, metavar="V",
                        help=f"classical: instrumentations of each work, each with its own tempo and transposition "
                        f"(default: {DEFAULT_VARIANTS})")
    parser.add_argument("--soundfont", type=Path, metavar="SF2",
                        help=f"classical: General MIDI soundfont (default: {DEFAULT_SOUNDFONT})")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, metavar="W",
                        help="parallel worker processes (default: one per core)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of every random choice (default: 0)")
    parser.add_argument("--no-bass", dest="bass", action="store_false",
                        help="classical: do not add a bass stem doubling the lowest voice an octave down")
    parser.add_argument("--works", metavar="GLOB", help="classical: only works whose id matches, e.g. 'bach/*'")
    parser.add_argument("--genres", nargs="+", metavar="GENRE",
                        help=f"popular: only these genres ({', '.join(sorted(GENRES))}; default: all)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Run `build` from parsed arguments; prints a summary. Exit codes: 0 ok, 1 some works failed
    (errors raise: the command line turns them into exit 1)."""
    progress = not args.json or sys.stderr.isatty()
    if args.style == "popular":
        from stemserver_training.corpus.popular import build as popular  # pedalboard and the synths: only here

        wrong = [f"--{name}" for name in CLASSICAL_ONLY if getattr(args, name) is not None]
        if not args.bass:
            wrong.append("--no-bass")
        if wrong:
            raise CorpusError(f"{', '.join(wrong)} only apply to --style classical: leave them out")
        summary = popular.build(args.out, limit=args.limit or popular.DEFAULT_LIMIT, seconds=args.seconds,
                                genres=args.genres, workers=args.workers, seed=args.seed, progress=progress)
        text = popular.describe(summary)
    else:
        if args.genres:
            raise CorpusError("--genres only applies to --style popular")
        summary = build(args.out, limit=args.limit, seconds=args.seconds,
                        variants=args.variants or DEFAULT_VARIANTS, soundfont=args.soundfont or DEFAULT_SOUNDFONT,
                        workers=args.workers, seed=args.seed, bass=args.bass, works=args.works, progress=progress)
        text = _describe(summary)
    print(json.dumps(dataclasses.asdict(summary), indent=2) if args.json else text)
    if summary.failed:
        print(f"corpus: error: {len(summary.failed)} track(s) failed and will be retried by the next run; "
              f"first: {summary.failed[0]}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _describe(s: Summary) -> str:
    minutes, secs = divmod(round(s.seconds), 60)
    return "\n".join([
        f"corpus: {s.out}",
        f"  works:  {s.works} of {s.eligible_works} eligible, {s.variants} variant(s) each",
        f"  tracks: {s.tracks} ({s.built} built now, {s.tracks - s.built} already there), "
        f"{s.skipped} skipped, {len(s.failed)} failed",
        f"  stems:  {s.stems}",
        f"  audio:  {s.track_hours:.2f} h of tracks, {s.stem_hours:.2f} h of stems",
        f"  disk:   {s.bytes / 1e9:.2f} GB",
        f"  time:   {minutes} min {secs} s",
    ])
