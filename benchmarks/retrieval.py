"""The library protocol through the product itself: retrieval measured as a user meets it.

    .venv/bin/python benchmarks/retrieval.py --cache DIR [--split test] [--tracks N] [options]
    .venv/bin/python benchmarks/retrieval.py --demo [DIR] [options]
        options: [--checkpoint CK] [--seed S] [--seconds 8] [--threads N] [--device D] [--workdir DIR]
                 [--no-progress] [--json]

The same measurement as `stemserver_training.library_protocol.evaluate_library` (queries, labels
and scoring are its own functions), but every step is the real command line in a subprocess, so that
nothing the evaluation does can differ from what a user gets:

1. pool: every stem of the source under an opaque name in one folder (0001.wav ...; the demo's files
   copied as 0001.opus ...), so neither a file nor a folder name can help;
2. `stemserver index POOL --library LIB` into a fresh library;
3. `stemserver serve --library LIB` on free loopback ports (ready when it prints its ready line);
4. for each query, its mix written as a float WAV and `stemserver query MIX --server ws://... -i LABEL
   -k POOL --json`, once per label level, the whole pool ranked;
5. the answers scored by `score_library` and `chance_library`.

Sources:
- `--cache DIR`: a prepared cache's `--split` (optionally its first `--tracks` tracks). Queries are
  `draw_queries` with `--seed` (default 0, evaluate_library's): for each stem, the mix of the track's
  other stems active over `--seconds` ending at a random sample; asked at the fine and the coarse
  label. Key and tempo agreement where the cache knows them.
- `--demo [DIR]` (default: the bundled demo library): the stems demo.json lists, tracks from its
  `track` field, label = family folder (stems/<family>/) with '-' read as ' '. Queries as the outside
  check of the demo draws them: for each stem, the other stems of its track summed over their common
  length, peak-normalised to 0.9, cut at a random end moment between `--seconds` + 1 s and the end
  (`--seed`, default 7, that check's), the query being its last `--seconds`. One label level; no key
  or tempo.

A server query returns at most MAX_K (100) stems and the protocol ranks the whole pool, so a larger
pool is refused (pass `--tracks`); no rank is ever censored.

Timings: the indexer's own seconds and the wall time of the `stemserver index` process; per query,
the wall time of the `stemserver query --server` process (spawn to exit, what a script pays) and the
server's own time for it (`timings_ms.total`), medians.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import soundfile
from common import emit
from tqdm import tqdm

from stemserver import arguments, audio
from stemserver.checkpoint import load_checkpoint
from stemserver.defaults import demo_assets_dir, model_path
from stemserver.demo import MANIFEST
from stemserver.engine import StemMatch
from stemserver.errors import StemserverError
from stemserver.exits import run_main
from stemserver.server.protocol import MAX_K
from stemserver.window import QUERY_SECONDS
from stemserver_training.cache import open_cache
from stemserver_training.evaluate import LEVELS, level_label
from stemserver_training.library_protocol import (
    LibraryQuery,
    PoolStem,
    chance_library,
    draw_queries,
    query_mix,
    score_library,
    write_pool,
)

READY = re.compile(r"stemserver: ready osc://\S+ (?P<ws>ws://\S+)")
READY_TIMEOUT_S = 300.0  # loading the model (and a text model) on a busy 2-core machine
QUERY_TIMEOUT_S = 300.0
CACHE_SEED, DEMO_SEED = 0, 7  # evaluate_library's default; the outside demo check's
DEMO_MAX_SECONDS = 60.0  # as the outside demo check decodes its stems


class BenchmarkError(StemserverError):
    """A step of the benchmark failed; the message says which and what it printed."""


# -- the demo as a dataset: what score_library and chance_library read of one ------------------------


@dataclass(frozen=True)
class LabelledStem:
    label_path: tuple[str, ...]


@dataclass(frozen=True)
class LabelledTrack:
    stems: tuple[LabelledStem, ...]
    key: str | None = None
    tempo_bpm: float | None = None


@dataclass(frozen=True)
class LabelledSet:
    """The part of a PreparedDataset the scoring reads: labels, keys, tempi and the sample rate."""

    sample_rate: int
    tracks: tuple[LabelledTrack, ...]


@dataclass
class Source:
    """What to measure: the pool (written), its queries, their mixes (written) and the label levels."""

    description: str
    dataset: object  # a PreparedDataset, or a LabelledSet
    pool: list[PoolStem]
    queries: list[LibraryQuery]
    mixes: list[Path]
    levels: tuple[str, ...]


def cache_source(cache: Path, split: str, tracks: int | None, seed: int, seconds: float, work: Path) -> Source:
    dataset = open_cache(cache)
    if split != "all":
        dataset = dataset.split(split)
    dataset = replace(dataset, tracks=dataset.tracks[:tracks])
    if not dataset.tracks:
        raise BenchmarkError(f"{cache} has no {split} tracks; choose another --split")
    check_pool_size([len(track.stems) for track in dataset.tracks], "--tracks")
    pool = write_pool(dataset, work / "pool")
    queries = draw_queries(dataset, pool, seed, seconds)
    if not queries:
        raise BenchmarkError("no stem plays together with another in any window drawn: nothing to query")
    mixes = [write_mix(work / "mixes" / f"{i:04d}.wav", query_mix(dataset, pool, q, seconds), dataset.sample_rate)
             for i, q in enumerate(queries)]
    shown = f"first {tracks} " if tracks else ""
    return Source(f"cache {cache}, {shown}{split} tracks", dataset, pool, queries, mixes, LEVELS)


def demo_source(demo: Path, sample_rate: int, seed: int, seconds: float, work: Path) -> Source:
    try:
        files = json.loads((demo / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError) as e:
        raise BenchmarkError(f"{demo}: not a demo library ({MANIFEST} unreadable: {e})") from e
    stems = [f for f in files if f["kind"] == "stem"]
    by_track: dict[str, list[int]] = {}
    for i, f in enumerate(stems):
        by_track.setdefault(f["track"], []).append(i)
    check_pool_size([len(members) for members in by_track.values()], None)
    (work / "pool").mkdir(parents=True)
    where: dict[int, tuple[int, int]] = {}  # demo stem -> (track, stem of the track)
    tracks = []
    for t, members in enumerate(by_track.values()):
        where.update({i: (t, s) for s, i in enumerate(members)})
        tracks.append(LabelledTrack(tuple(LabelledStem((stems[i]["path"].split("/")[1].replace("-", " "),))
                                          for i in members)))
    pool = []
    for i, f in enumerate(stems):
        path = work / "pool" / f"{i + 1:04d}{Path(f['path']).suffix}"
        shutil.copyfile(demo / f["path"], path)
        pool.append(PoolStem(*where[i], path))
    rng = np.random.default_rng(seed)
    window = int(seconds * sample_rate)
    queries, mixes = [], []
    for members in by_track.values():
        if len(members) < 2:
            continue
        decoded = {i: audio.load(demo / stems[i]["path"], sample_rate, DEMO_MAX_SECONDS)[0] for i in members}
        for i in members:
            others = [j for j in members if j != i]
            n = min(len(decoded[j]) for j in others)
            mix = np.sum([decoded[j][:n] for j in others], axis=0).astype(np.float32)
            mix /= max(1e-9, float(np.abs(mix).max())) / 0.9
            if n / sample_rate > seconds + 1.0:
                mix = mix[: int(rng.uniform(seconds + 1.0, n / sample_rate) * sample_rate)]
            queries.append(LibraryQuery(i, max(0, len(mix) - window), tuple(where[j][1] for j in others)))
            mixes.append(write_mix(work / "mixes" / f"{len(mixes):04d}.wav", mix, sample_rate))
    return Source(f"demo {demo}", LabelledSet(sample_rate, tuple(tracks)), pool, queries, mixes, ("fine",))


def check_pool_size(stems_per_track: Sequence[int], option: str | None) -> None:
    """Refuse a pool the server cannot rank whole (k <= MAX_K), naming the --tracks that fits."""
    if sum(stems_per_track) <= MAX_K:
        return
    fits = int(np.searchsorted(np.cumsum(stems_per_track), MAX_K, side="right"))
    remedy = f"pass {option} {fits} (the first {fits} tracks hold {sum(stems_per_track[:fits])} stems)" if option \
        else "measure a smaller library"
    raise BenchmarkError(f"the pool would hold {sum(stems_per_track)} stems, but a server query returns at most "
                         f"{MAX_K} and the protocol ranks the whole pool: {remedy}")


def write_mix(path: Path, mix: np.ndarray, sample_rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, mix, sample_rate, subtype="FLOAT")  # float: the samples the in-process protocol asks with
    return path


# -- the product's command line ------------------------------------------------------------------------


def stemserver(*arguments: str, timeout: float | None = None) -> tuple[str, float]:
    """Run `stemserver ARGUMENTS...`; its stdout and wall seconds. A failure raises with its last words."""
    command = [sys.executable, "-m", "stemserver", *arguments]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    if done.returncode:
        said = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise BenchmarkError(f"`stemserver {' '.join(arguments[:2])} ...` exited {done.returncode}: {said}")
    return done.stdout, elapsed


@contextmanager
def serving(arguments: Sequence[str], log: Path, ready_timeout_s: float = READY_TIMEOUT_S) -> Iterator[str]:
    """A `stemserver serve` on free loopback ports, while the block runs: its WebSocket URL. Stopped on
    the way out, whatever happens (an error, Ctrl-C)."""
    command = [sys.executable, "-m", "stemserver", "serve", *arguments, "--host", "127.0.0.1", "--osc-port", "0",
               "--ws-port", "0", "--no-demo"]
    with log.open("w") as errors:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # drains stdout to its end, so the server never blocks on a full pipe
        for line in server.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchmarkError(f"the server printed no ready line within {ready_timeout_s:.0f} s; its last "
                                     f"words: {last_line(log)}") from None
            if line is None:
                raise BenchmarkError(f"the server exited {server.wait()} before it was ready: {last_line(log)}")
            if ready := READY.match(line):
                break
        yield ready.group("ws")
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def last_line(log: Path) -> str:
    return (log.read_text().strip().splitlines() or ["(nothing)"])[-1]


def as_match(answer: dict) -> StemMatch:
    """A match of the server's JSON as the engine's own type (what score_library reads)."""
    return StemMatch(**{f.name: answer[f.name] for f in fields(StemMatch)})


# -- the measurement -----------------------------------------------------------------------------------


def measure(args: argparse.Namespace, work: Path) -> dict:
    checkpoint = (args.checkpoint or model_path(None)).absolute()
    config = load_checkpoint(checkpoint).config
    seconds = args.seconds
    seed = args.seed if args.seed is not None else CACHE_SEED if args.cache else DEMO_SEED
    if args.cache:
        source = cache_source(args.cache, args.split, args.tracks, seed, seconds, work)
    else:
        source = demo_source(args.demo, config.front_end.sample_rate, seed, seconds, work)
    shared = ["--checkpoint", str(checkpoint), "--library", str(work / "library"), *runtime_options(args)]
    printed, index_wall_s = stemserver("index", str(work / "pool"), *shared, "--json")
    indexed = json.loads(printed)
    if indexed["failed"]:
        raise BenchmarkError(f"the indexer refused {len(indexed['failed'])} pool stems: {indexed['failed'][:3]}")
    answers: dict[str, list[list[StemMatch]]] = {level: [] for level in source.levels}
    round_trips, server_ms = [], []
    k = str(len(source.pool))
    with serving(shared, work / "serve.log") as url:
        for query, mix in zip(tqdm(source.queries, desc="queries", unit="query", disable=args.no_progress),
                              source.mixes):
            label_path = source.pool[query.target].label_path(source.dataset)
            for level in source.levels:
                printed, wall_s = stemserver("query", str(mix), "--server", url, "-i", level_label(label_path, level),
                                             "-k", k, "--seconds", f"{seconds!r}", "--timeout", f"{QUERY_TIMEOUT_S}",
                                             "--json")
                result = json.loads(printed)
                answers[level].append([as_match(m) for m in result["matches"]])
                round_trips.append(wall_s)
                server_ms.append(result["timings_ms"]["total"])
    levels = {level: {
        "model": score_library(source.dataset, source.pool, source.queries, answers[level], level,
                               config.seconds_per_column),
        "chance": chance_library(source.dataset, source.pool, source.queries, level),
    } for level in source.levels}
    return {
        "source": source.description,
        "checkpoint": str(checkpoint),
        "protocol": {"seed": seed, "query_seconds": seconds, "k": len(source.pool),
                     "steps": "stemserver index, stemserver serve, stemserver query --server ws:// per query and "
                              "label level, whole pool ranked (no censored ranks)",
                     "units": "percent, except offset_median_error_s"},
        "data": {"tracks": len(source.dataset.tracks), "pool": len(source.pool), "queries": len(source.queries),
                 "index_s": indexed["elapsed_s"], "audio_seconds": indexed["audio_seconds"]},
        "timings": {"index_s": indexed["elapsed_s"], "index_process_s": index_wall_s,
                    "query_round_trip_median_s": statistics.median(round_trips),
                    "query_server_median_ms": statistics.median(server_ms), "query_processes": len(round_trips)},
        "levels": levels,
    }


def runtime_options(args: argparse.Namespace) -> list[str]:
    return [*(["--threads", str(args.threads)] if args.threads else []),
            *(["--device", args.device] if args.device else [])]


COLUMNS = [("R@1", "R@1"), ("R@5", "R@5"), ("R@10", "R@10"), ("mean NR", "mean_normalised_rank"),
           ("median NR", "median_normalised_rank"), ("instr P@10", "instrument_precision@10"),
           ("key@10", "key_agreement@10"), ("tempo@10", "tempo_agreement@10"),
           ("offset 1 col", "offset_within_one_column"), ("offset err s", "offset_median_error_s")]


def print_table(result: dict) -> None:
    data, timings = result["data"], result["timings"]
    print(f"library protocol through the product: {result['source']}; checkpoint {result['checkpoint']}")
    print(f"pool {data['pool']} stems of {data['tracks']} tracks, {data['queries']} queries "
          f"({result['protocol']['query_seconds']:g} s unaligned, seed {result['protocol']['seed']}, k = pool)")
    round_trip_ms = 1e3 * timings["query_round_trip_median_s"]
    print(f"index {timings['index_s']:.1f} s ({data['audio_seconds']:.0f} s of audio; the process "
          f"{timings['index_process_s']:.1f} s); query round trip median {round_trip_ms:.0f} ms per "
          f"`stemserver query --server` process, of which the server {timings['query_server_median_ms']:.0f} ms")
    print(f"{'percent':16}" + "".join(f"{name:>13}" for name, _ in COLUMNS))
    for level, rows in result["levels"].items():
        for name, row in ((f"{level} labels", rows["model"]), (f"chance ({level})", rows["chance"])):
            print(f"{name:16}" + "".join(f"{_shown(row.get(key)):>13}" for _, key in COLUMNS))


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="stemserver-retrieval-", dir=args.workdir)).absolute()
    try:
        emit(measure(args, work), args.json, print_table)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/retrieval.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cache", type=Path, metavar="DIR", help="a prepared cache (stemserver prepare)")
    source.add_argument("--demo", type=Path, nargs="?", const=demo_assets_dir(), metavar="DIR",
                        help="a demo library (default: the bundled one)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test", "all"],
                        help="with --cache: the tracks to measure (default test)")
    parser.add_argument("--tracks", type=arguments.positive_int, metavar="N",
                        help="with --cache: only the split's first N tracks")
    parser.add_argument("--checkpoint", type=Path, help="model bundle (default: the bundled default model)")
    parser.add_argument("--seed", type=int, help=f"query moments (default {CACHE_SEED} with --cache, as "
                        f"evaluate_library; {DEMO_SEED} with --demo, as the outside demo check)")
    parser.add_argument("--seconds", type=arguments.positive_float, default=QUERY_SECONDS, metavar="S",
                        help="query length (default %(default)g)")
    parser.add_argument("--threads", type=arguments.positive_int, metavar="N",
                        help="torch CPU threads of the indexer and the server")
    parser.add_argument("--device", help="device of the indexer and the server (default: theirs, auto)")
    parser.add_argument("--workdir", type=Path, help="where the temporary pool, mixes and library go")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.demo and (args.tracks or args.split != "test"):
        parser.error("--split and --tracks go with --cache")
    return run_main(run, args, "retrieval.py", errors=(StemserverError, OSError))


if __name__ == "__main__":
    sys.exit(main())
