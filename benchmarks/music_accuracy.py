"""Tempo and key estimation measured against ground truth: the product's estimators beside librosa's.

    .venv/bin/python benchmarks/music_accuracy.py [--popular CORPUS --splits CACHE/splits.json [--split test]
        [--songs N] [--loop-songs N] [--loops-per-stem N]] [--classical CORPUS [--classical-tracks N]]
        [--seed S] [--seconds 8] [--workdir DIR] [--no-progress] [--json]

Estimators, side by side on the same audio in one run:
- tempo: `stemserver.estimate.TEMPO_METHODS` ("autocorrelation", the product's; "librosa-tempo",
  librosa.feature.tempo on the same onset envelope) and "librosa-beat-track" (librosa.beat.beat_track,
  the tempo of its median beat interval; measured here only, not in the product);
- key: `stemserver.estimate.KEY_PROFILES` (the product's default first, "popular-trained"; the published
  "temperley" and "krumhansl");
- the product's whole path for a library file, `estimate.file_facts` ("file_facts": tags and name
  first, then the audio, with the loop grid), on the loop exports.
A mix is estimated as the server estimates a query (no loop grid); a file as the library estimates it
(a file of at most estimate.MAX_LOOP_SECONDS whose length is whole bars near the estimate is a loop, for
every tempo method alike).

Data sets (nothing is downloaded):
- `--popular CORPUS`: the songs of `--split` (a prepared cache's splits.json; --split all takes every
  song), optionally `--songs N` of them spread over the sorted names. Each song's mix (the sum of its
  stems), whole and as an `--seconds` query cut at a random moment (seed `--seed` and the song's
  place); each stem file: tonal stems (key truth: the song's key), drum stems (must get no key), effect
  stems (no key truth); tempo truth for all: the song's bpm.
- loops of `--loop-songs N` of those songs, exported by the project's exporter
  (stemserver_training.corpus.popular.loops.export_loops, `--loops-per-stem` of each length) into a
  temporary folder, and measured twice: under their sample-pack names (Bass_124_Fmin_03.wav, which
  state tempo and key) and renamed 0001.wav... (audio only). Their one-shots must get no tempo.
- `--classical CORPUS`: `--classical-tracks N` tracks spread over the manifest, of those with
  tempo_changes == 0 (one tempo throughout); the mix, whole and as a query. Tempo truth: quarter_bpm.
  Key truth, derived: music21 parses the score (work_id), analyses the key (its default, Aarden-Essen
  profiles) of the notes inside the rendered seconds (duration * quarter_bpm / 60 quarters), keeps it
  only where it has the score's first key signature (otherwise the track has no key truth), and
  transposes it by `transposition` semitones.

Metrics: tempo Accuracy1 (within 4 %) and Accuracy2 (within 4 % of the truth or of its double, half,
triple or third), an estimate of no tempo counting as wrong in both; the MIREX weighted key score
(stemserver.music.mirex_key_score: modes reduced to major or minor by their third) with no key scoring
0, the exact key (score 1), the same scale (stemserver.music.keys_agree: what transpose and
key_compatible rely on); how often there is no tempo or no key; the bar count of loops. Seconds per
file are each estimator's own time on decoded audio (after a warm-up), and their ratio to the
product's estimator of the same kind in the same run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
from common import emit
from tqdm import tqdm

from stemserver import arguments, audio, estimate
from stemserver.errors import StemserverError
from stemserver.exits import run_main
from stemserver.music import TEMPO_TOLERANCE, Key, keys_agree, mirex_key_score, parse_key
from stemserver.window import QUERY_SECONDS
from stemserver_training.corpus.popular.loops import MANIFEST, UNKEYED_ROLES, export_loops, spread

RATE = audio.SAMPLE_RATE
BEAT_TRACK = "librosa-beat-track"
_DEFAULTS = inspect.signature(estimate.estimate_facts).parameters  # what the product estimates with
TEMPO_DEFAULT, KEY_DEFAULT = _DEFAULTS["tempo_method"].default, _DEFAULTS["key_profile"].default
PRODUCT = "file_facts"
ACCURACY1, ACCURACY2 = (1.0,), (1.0, 2.0, 0.5, 3.0, 1 / 3)
GOALS = {"tempo_accuracy2": 95.0, "key_mirex": 0.80}
GOAL_GROUPS = ("popular mixes, whole song", "popular mixes, query")


class BenchmarkError(StemserverError):
    """The data sets cannot be measured as given; the message says what to pass."""


@dataclass(frozen=True)
class Truth:
    """What is known of a piece of audio. None: not known, so not scored."""

    bpm: float | None = None
    key: Key | None = None
    keyed: bool | None = None  # False: must get no key (drums)
    timed: bool | None = None  # False: must get no tempo (one-shots)
    bars: int | None = None


@dataclass(frozen=True)
class Case:
    group: str
    truth: Truth
    samples: np.ndarray
    path: Path | None = None  # the file, for the estimators that read its tags and name


@dataclass(frozen=True)
class Estimate:
    bpm: float | None = None
    key: Key | None = None
    bars: int | None = None
    seconds: float = 0.0
    sources: tuple[str | None, str | None] = (None, None)  # of the tempo and the key, where said


@dataclass(frozen=True)
class Estimator:
    name: str
    kind: str  # "tempo", "key" or "both"
    run: Callable[[Case], Estimate]


# -- the estimators ------------------------------------------------------------------------------------


def beat_track_tempo(samples: np.ndarray, hop: int) -> float | None:
    """librosa.beat.beat_track's beats on the product's onset envelope: 60 / their median interval."""
    import librosa

    if len(samples) < estimate.MIN_TEMPO_SECONDS * RATE or not np.any(samples):
        return None
    envelope = estimate.onset_envelope(samples, RATE, hop)
    _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=RATE, hop_length=hop, units="time")
    return 60.0 / float(np.median(np.diff(beats))) if len(beats) >= 2 else None


def tempo_estimator(method: str, loop_grid: bool) -> Estimator:
    hop = estimate.FILE_HOP if loop_grid else estimate.MIX_HOP  # the onset frames the product uses for each

    def run(case: Case) -> Estimate:
        if method == BEAT_TRACK:
            bpm = beat_track_tempo(case.samples, hop)
        else:
            bpm, _ = estimate.estimate_tempo(case.samples, RATE, method, hop)
        duration_s, bars = len(case.samples) / RATE, None
        if loop_grid and bpm is not None and duration_s <= estimate.MAX_LOOP_SECONDS:
            bpm, bars = estimate.snap_to_loop(duration_s, bpm)  # as estimate_facts does for a file
        return Estimate(bpm=bpm, bars=bars)

    return Estimator(method, "tempo", run)


def key_estimator(profile: str) -> Estimator:
    return Estimator(profile, "key", lambda case: Estimate(key=estimate.estimate_key(case.samples, RATE, profile)[0]))


def file_facts_estimator() -> Estimator:
    def run(case: Case) -> Estimate:
        facts = estimate.file_facts(case.path, lambda: case.samples, RATE, len(case.samples) / RATE)
        return Estimate(bpm=facts.tempo_bpm, key=parse_key(facts.key), bars=facts.bars,
                        sources=(facts.tempo_source, facts.key_source))

    return Estimator(PRODUCT, "both", run)


def _default_first(default: str, names: Iterable[str]) -> list[str]:
    return [default, *(n for n in names if n != default)]


def estimators_for(group: str) -> list[Estimator]:
    """A mix as a query is estimated, a file as the library estimates one; named loops only by the
    product's path (their names are what is tested)."""
    if group == "loops, named":
        return [file_facts_estimator()]
    loop_grid = "mixes" not in group
    tempo_methods = _default_first(TEMPO_DEFAULT, (*estimate.TEMPO_METHODS, BEAT_TRACK))
    chosen = [tempo_estimator(method, loop_grid) for method in tempo_methods]
    chosen += [key_estimator(p) for p in _default_first(KEY_DEFAULT, estimate.KEY_PROFILES)]
    return chosen + ([file_facts_estimator()] if group.startswith(("loops", "one-shots")) else [])


def timed(estimator: Estimator, case: Case) -> Estimate:
    start = time.perf_counter()
    found = estimator.run(case)
    return Estimate(found.bpm, found.key, found.bars, time.perf_counter() - start, found.sources)


def warm_up() -> None:
    """Every estimator once (librosa compiles and loads code on first use: not what a file costs)."""
    noise = np.random.default_rng(0).standard_normal(RATE * 4).astype(np.float32) * 0.1
    for estimator in estimators_for("loops, renamed")[:-1]:
        estimator.run(Case("warm-up", Truth(), noise))


# -- the scores ----------------------------------------------------------------------------------------


def tempo_correct(bpm: float | None, truth: float, factors: Iterable[float]) -> bool:
    return bpm is not None and any(abs(bpm / (truth * factor) - 1) <= TEMPO_TOLERANCE for factor in factors)


def _percent(hits: Iterable[bool]) -> float | None:
    hits = list(hits)
    return round(100.0 * sum(hits) / len(hits), 1) if hits else None


def score(kind: str, pairs: list[tuple[Truth, Estimate]]) -> dict:
    """One estimator's figures on one group: tempo, key, bars and time, as far as it estimates them."""
    result: dict = {"files": len(pairs), "seconds_per_file": round(statistics.fmean(e.seconds for _, e in pairs), 4)}
    if kind in ("tempo", "both"):
        timed_pairs = [(t, e) for t, e in pairs if t.bpm is not None]
        result.update(tempo_files=len(timed_pairs),
                      tempo_accuracy1=_percent(tempo_correct(e.bpm, t.bpm, ACCURACY1) for t, e in timed_pairs),
                      tempo_accuracy2=_percent(tempo_correct(e.bpm, t.bpm, ACCURACY2) for t, e in timed_pairs),
                      no_tempo=_percent(e.bpm is None for _, e in timed_pairs))
        untimed = [e for t, e in pairs if t.timed is False]
        if untimed:
            result.update(untimed_files=len(untimed), untimed_no_tempo=_percent(e.bpm is None for e in untimed))
        with_bars = [(t, e) for t, e in pairs if t.bars is not None]
        if with_bars:
            result.update(bars_files=len(with_bars), bars_accuracy=_percent(e.bars == t.bars for t, e in with_bars))
    if kind in ("key", "both"):
        keyed = [(t, e) for t, e in pairs if t.key is not None]
        if keyed:
            mirex = [0.0 if e.key is None else mirex_key_score(e.key, t.key) for t, e in keyed]
            result.update(key_files=len(keyed), key_mirex=round(statistics.fmean(mirex), 3),
                          key_exact=_percent(s == 1.0 for s in mirex),
                          key_same_scale=_percent(e.key is not None and keys_agree(e.key, t.key) for t, e in keyed),
                          no_key=_percent(e.key is None for _, e in keyed))
        unkeyed = [e for t, e in pairs if t.keyed is False]
        if unkeyed:
            result.update(unkeyed_files=len(unkeyed), unkeyed_no_key=_percent(e.key is None for e in unkeyed))
    sources = Counter(f"tempo {e.sources[0]}" for _, e in pairs if e.sources[0]) + Counter(
        f"key {e.sources[1]}" for _, e in pairs if e.sources[1])
    if sources:
        result["sources"] = dict(sorted(sources.items()))
    return result


@dataclass
class Tally:
    """Every estimate of a run, by group and estimator, in the order the groups were first met."""

    kinds: dict[str, str] = field(default_factory=dict)
    pairs: dict[str, dict[str, list[tuple[Truth, Estimate]]]] = field(default_factory=dict)

    def measure(self, case: Case) -> None:
        group = self.pairs.setdefault(case.group, {})
        for estimator in estimators_for(case.group):
            self.kinds[estimator.name] = estimator.kind
            group.setdefault(estimator.name, []).append((case.truth, timed(estimator, case)))

    def scores(self, combined: dict[str, tuple[str, ...]]) -> dict:
        """Each group's figures, and each of `combined`'s (name: the groups it pools)."""
        pools = {name: {e: [p for g in groups for p in self.pairs.get(g, {}).get(e, [])]
                        for e in dict.fromkeys(e for g in groups for e in self.pairs.get(g, {}))}
                 for name, groups in combined.items() if any(g in self.pairs for g in groups)}
        result = {}
        for name, by_estimator in {**self.pairs, **pools}.items():
            rows = {e: score(self.kinds[e], pairs) for e, pairs in by_estimator.items()}
            for e, row in rows.items():
                default = TEMPO_DEFAULT if self.kinds[e] == "tempo" else KEY_DEFAULT if self.kinds[e] == "key" else None
                if default in rows and rows[default]["seconds_per_file"] > 0:
                    row["time_ratio"] = round(row["seconds_per_file"] / rows[default]["seconds_per_file"], 2)
            result[name] = rows
        return result


COMBINED = {"popular stems, all": ("popular stems, tonal", "popular stems, drums", "popular stems, effects")}


def goals(groups: dict) -> list[dict]:
    """The issue's goals, on the popular mixes, for the product's default estimators."""
    checked = []
    for group in GOAL_GROUPS:
        if group not in groups:
            continue
        for metric, estimator in (("tempo_accuracy2", TEMPO_DEFAULT), ("key_mirex", KEY_DEFAULT)):
            value = groups[group][estimator].get(metric)
            checked.append({"group": group, "estimator": estimator, "metric": metric, "value": value,
                            "goal": GOALS[metric], "met": value is not None and value >= GOALS[metric]})
    return checked


# -- the data sets -------------------------------------------------------------------------------------


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"{path}: unreadable ({e})") from e


def song_stems(song: Path) -> Iterator[tuple[dict, dict, Path]]:
    """(stem group, track, file) of a MoisesDB-layout song folder."""
    for group in read_json(song / "data.json")["stems"]:
        for track in group["tracks"]:
            yield group, track, song / group["stemName"] / f"{track['id']}.{track['extension']}"


def load(path: Path) -> np.ndarray:
    return audio.load(path, RATE)[0]


def mix_of(files: list[Path]) -> np.ndarray:
    decoded = [load(f) for f in files]
    mix = np.zeros(max(len(x) for x in decoded), np.float32)
    for x in decoded:
        mix[: len(x)] += x
    return mix / max(1e-9, float(np.abs(mix).max())) * 0.9


def query_window(mix: np.ndarray, seconds: float, seed: int, place: int) -> np.ndarray:
    """`seconds` of the mix from a random moment (the same for a given seed and place, whatever else is measured)."""
    window = int(seconds * RATE)
    if len(mix) <= window:
        return mix
    start = int(np.random.default_rng([seed, place]).integers(0, len(mix) - window + 1))
    return mix[start: start + window]


def popular_songs(corpus: Path, splits: Path | None, split: str, songs: int | None) -> list[Path]:
    found = sorted(p.parent for p in corpus.glob("*/data.json"))
    if split != "all":
        assigned = read_json(splits)["splits"]
        found = [p for p in found if assigned.get(p.name) == split]
    if not found:
        raise BenchmarkError(f"{corpus} holds no {split} song (<song>/data.json); check --popular and --splits")
    return spread(found, songs) if songs else found


def stem_role(role: str) -> str:
    return {"drums": "drums", "fx": "effects"}.get(role, "tonal")


def popular_cases(songs: list[Path], seconds: float, seed: int) -> Iterator[Case]:
    for place, song in enumerate(songs):
        data = read_json(song / "data.json")
        key = parse_key(data["key"])
        stems = list(song_stems(song))
        mix = mix_of([path for _, _, path in stems])
        yield Case("popular mixes, whole song", Truth(bpm=data["bpm"], key=key), mix)
        yield Case("popular mixes, query", Truth(bpm=data["bpm"], key=key), query_window(mix, seconds, seed, place))
        for _, track, path in stems:
            role = stem_role(track.get("role", ""))
            truth = Truth(bpm=data["bpm"], key=key if role == "tonal" else None,
                          keyed=False if role == "drums" else None)
            yield Case(f"popular stems, {role}", truth, load(path), path)


def export_test_loops(songs: list[Path], per_stem: int, work: Path) -> Path:
    """The project's loop export of `songs` (a folder of links to them is its corpus): the export folder."""
    corpus = work / "songs"
    corpus.mkdir(parents=True)
    for song in songs:
        (corpus / song.name).symlink_to(song.absolute(), target_is_directory=True)
    export_loops(corpus, work / "loops", per_stem=per_stem, one_shots=1)
    return work / "loops"


def loop_cases(exported: Path, work: Path) -> Iterator[Case]:
    renamed = work / "renamed"
    renamed.mkdir()
    for number, line in enumerate((exported / MANIFEST).read_text().splitlines(), 1):
        record = json.loads(line)
        path = exported / record["file"]
        samples = load(path)
        hidden = renamed / f"{number:04d}{path.suffix}"
        hidden.symlink_to(path.absolute())
        role = stem_role(record["role"])
        key = parse_key(record["key"]) if record["role"] not in UNKEYED_ROLES else None
        keyed = False if role == "drums" else None
        if record["kind"] == "one-shot":
            yield Case("one-shots", Truth(timed=False, keyed=keyed), samples, hidden)
            continue
        truth = Truth(bpm=record["bpm"], key=key, keyed=keyed, bars=record["bars"])
        yield Case("loops, named", truth, samples, path)
        yield Case("loops, renamed", truth, samples, hidden)


def classical_tracks(corpus: Path, tracks: int) -> list[dict]:
    manifest = corpus / "manifest.jsonl"
    try:
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"{manifest}: unreadable ({e}); --classical takes a classical corpus folder") from e
    steady = [r for r in rows if r.get("type") == "track" and r["tempo_changes"] == 0]
    return spread(steady, tracks)


@lru_cache(maxsize=4)
def _flat_score(work_id: str):
    from music21 import corpus

    return corpus.parse(work_id).flatten()


def score_key(work_id: str, quarters: float, transposition: int) -> Key | None:
    """The key of a music21 corpus score's first `quarters`, transposed: music21's key analysis of those
    notes where it has the score's first key signature, None otherwise (or for a score without one)."""
    try:
        flat = _flat_score(work_id)
    except Exception:  # music21 raises many types for a score it cannot read: then there is no key truth
        return None
    signature = flat.getElementsByClass("KeySignature").first()
    notes = flat.notes.getElementsByOffset(0, quarters, includeEndBoundary=False).stream()
    if signature is None or not len(notes):
        return None
    analysed = notes.analyze("key")
    if analysed.sharps != signature.sharps or analysed.mode not in ("major", "minor"):
        return None
    return Key((analysed.tonic.pitchClass + transposition) % 12, analysed.mode)


def classical_cases(corpus: Path, tracks: list[dict], seconds: float, seed: int) -> Iterator[Case]:
    for place, track in enumerate(tracks):
        files = sorted((corpus / track["track_id"]).glob("*/*.flac"))
        if not files:
            raise BenchmarkError(f"{corpus / track['track_id']}: no stem files; is {corpus} complete?")
        mix = mix_of(files)
        key = score_key(track["work_id"], track["duration"] * track["quarter_bpm"] / 60.0, track["transposition"])
        truth = Truth(bpm=track["quarter_bpm"], key=key)
        yield Case("classical mixes, whole", truth, mix)
        yield Case("classical mixes, query", truth, query_window(mix, seconds, seed, place))


# -- the run -------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, work: Path) -> dict:
    sources: list[tuple[str, int, Iterator[Case]]] = []
    protocol: dict = {"seed": args.seed, "query_seconds": args.seconds, "tempo_tolerance": TEMPO_TOLERANCE}
    if args.popular:
        songs = popular_songs(args.popular, args.splits, args.split, args.songs)
        protocol["popular"] = {"corpus": str(args.popular), "split": args.split, "songs": len(songs)}
        sources.append(("popular songs", len(songs), popular_cases(songs, args.seconds, args.seed)))
        if args.loop_songs:
            chosen = spread(songs, args.loop_songs)
            exported = export_test_loops(chosen, args.loops_per_stem, work)
            files = len((exported / MANIFEST).read_text().splitlines())
            protocol["loops"] = {"songs": len(chosen), "per_stem": args.loops_per_stem, "files": files}
            sources.append(("loop files", files, loop_cases(exported, work)))
    if args.classical:
        tracks = classical_tracks(args.classical, args.classical_tracks)
        protocol["classical"] = {"corpus": str(args.classical), "tracks": len(tracks),
                                 "rule": "tracks with tempo_changes == 0; tempo truth quarter_bpm; key truth "
                                         "music21's analysis of the rendered notes where it has the first key "
                                         "signature, transposed"}
        sources.append(("classical tracks", len(tracks), classical_cases(args.classical, tracks, args.seconds,
                                                                           args.seed)))
    warm_up()
    tally = Tally()
    started = time.perf_counter()
    for description, total, cases in sources:
        seen = None
        for case in tqdm(cases, desc=f"{total} {description}", unit="case", disable=args.no_progress):
            tally.measure(case)
            seen = case
        if seen is None:
            raise BenchmarkError(f"no {description} to measure")
    groups = tally.scores(COMBINED)
    if "classical mixes, whole" in groups:
        protocol["classical"]["with_key_truth"] = groups["classical mixes, whole"][KEY_DEFAULT].get("key_files", 0)
    return {
        "date": date.today().isoformat(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "librosa": _version("librosa")},
        "protocol": protocol,
        "estimate_seconds": round(time.perf_counter() - started, 1),
        "groups": groups,
        "goals": goals(groups),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


COLUMNS = [("files", "files"), ("Acc1 %", "tempo_accuracy1"), ("Acc2 %", "tempo_accuracy2"),
           ("no tempo %", "no_tempo"), ("MIREX", "key_mirex"), ("exact %", "key_exact"),
           ("scale %", "key_same_scale"), ("no key %", "no_key"), ("drums no key %", "unkeyed_no_key"),
           ("1-shot no tempo %", "untimed_no_tempo"), ("bars %", "bars_accuracy"), ("s/file", "seconds_per_file"),
           ("x default", "time_ratio")]


def print_table(result: dict) -> None:
    print(f"tempo and key estimation, {result['date']}, {result['machine']['processor']} "
          f"({result['machine']['cpus']} CPUs), librosa {result['machine']['librosa']}; "
          f"estimating took {result['estimate_seconds']:.0f} s")
    print("protocol: " + json.dumps(result["protocol"]))
    for group, rows in result["groups"].items():
        shown = [(name, key) for name, key in COLUMNS if any(row.get(key) is not None for row in rows.values())]
        print(f"\n{group}")
        widths = [max(9, len(name) + 2) for name, _ in shown]
        print(f"{'':20}" + "".join(f"{name:>{w}}" for (name, _), w in zip(shown, widths)))
        for estimator, row in rows.items():
            print(f"{estimator:20}" + "".join(f"{_shown(row.get(key)):>{w}}" for (_, key), w in zip(shown, widths)))
    print()
    for goal in result["goals"]:
        print(f"goal {goal['metric']} >= {goal['goal']:g} on {goal['group']} ({goal['estimator']}): "
              f"{_shown(goal['value'])}, {'met' if goal['met'] else 'NOT met'}")


def _shown(value) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, int | float) else str(value)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="stemserver-music-accuracy-", dir=args.workdir) as work:
        emit(measure(args, Path(work).absolute()), args.json, print_table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/music_accuracy.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--popular", type=Path, metavar="CORPUS", help="a popular corpus (stemserver corpus build "
                        "--style popular)")
    parser.add_argument("--splits", type=Path, metavar="FILE", help="with --popular: a prepared cache's splits.json")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test", "all"],
                        help="with --popular: the songs measured (default test)")
    parser.add_argument("--songs", type=arguments.positive_int, metavar="N",
                        help="with --popular: only N of the split's songs, spread over their names (default all)")
    parser.add_argument("--loop-songs", type=int, default=10, metavar="N",
                        help="with --popular: export loops of N of the measured songs (default %(default)s; 0: none)")
    parser.add_argument("--loops-per-stem", type=arguments.positive_int, default=1, metavar="N",
                        help="loops of each length (1, 2, 4 bars) per stem (default %(default)s)")
    parser.add_argument("--classical", type=Path, metavar="CORPUS", help="a classical corpus (stemserver corpus build)")
    parser.add_argument("--classical-tracks", type=arguments.positive_int, default=60, metavar="N",
                        help="with --classical: tracks measured, spread over the manifest (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="query moments (default %(default)s)")
    parser.add_argument("--seconds", type=arguments.positive_float, default=QUERY_SECONDS, metavar="S",
                        help="query length (default %(default)g, the server's)")
    parser.add_argument("--workdir", type=Path, help="where the temporary loop export goes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (args.popular or args.classical):
        parser.error("nothing to measure: pass --popular CORPUS and/or --classical CORPUS")
    if args.popular and args.split != "all" and not args.splits:
        parser.error(f"--split {args.split} needs --splits (a prepared cache's splits.json), or pass --split all")
    if args.loop_songs < 0:
        parser.error("--loop-songs: at least 0")
    return run_main(run, args, "music_accuracy.py", errors=(StemserverError, OSError))


if __name__ == "__main__":
    sys.exit(main())
