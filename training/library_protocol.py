"""The library protocol: the retrieval evaluation as a user meets the product.

The papers' protocol (stemserver_training.evaluate) pairs a mix with the same moment of its stem,
which a library search never gets: a producer's library stem is a whole file, indexed in its own
windows, and the mix is whatever was playing when they asked. This protocol measures that:

- pool: every stem of every track of the split, written as an audio file under an opaque name
  (0001.wav ...: neither a file nor a folder name can help) and indexed into a fresh library by
  the product's own indexer (stemserver.indexing.index_folders), so each stem is represented
  exactly as a library stores and searches it: its windows, its encoding;
- query: for each pool stem, the mix of the other stems of its track that are active over a window
  of QUERY_SECONDS ending at a random moment of the track (seeded; any sample, so it is aligned
  neither with the library's windows nor with the 160 ms column grid), asked for with the stem's
  label at the fine and the coarse level, through stemserver.engine.Engine.query, which ranks the
  whole pool and places each stem;
- metrics (percent): R@k and the mean and median normalised rank of the true stem (0 = first);
  instrument precision@10, the share of the top 10 whose label at that level is the one asked (of
  the top n when the pool holds only n < 10 stems with that label); key and tempo agreement@10,
  the share of the top 10 (of those whose track states a key / tempo) that agree with the mix's
  track (stemserver.music: same scale, i.e. its key or relative; within 4 % or at double/half
  time); offset accuracy, for the queries whose true stem is in the top 10, the share whose
  offset is within one column (160 ms) of the truth, the query window's start in the track.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from stemserver.config import Settings
from stemserver.engine import Engine, Query, StemMatch
from stemserver.indexing import IndexOptions, index_folders
from stemserver.music import keys_agree, parse_key, tempi_agree
from stemserver.window import QUERY_SECONDS
from stemserver_training.cache import PreparedDataset
from stemserver_training.evaluate import KS, LEVELS, chance_metrics, held_out, level_label
from stemserver_training.sampler import SamplerConfig, active_stems, read_chunk

PRECISION_AT = 10
QUERY_TRIES = 10  # random moments tried for a window in which the stem and another one play


@dataclass(frozen=True)
class PoolStem:
    """One library file: a whole stem of one track."""

    track: int  # index into the dataset's tracks
    stem: int  # index into that track's stems
    path: Path  # the audio file the library indexed

    def label_path(self, dataset: PreparedDataset) -> tuple[str, ...]:
        return dataset.tracks[self.track].stems[self.stem].label_path


@dataclass(frozen=True)
class LibraryQuery:
    target: int  # index into the pool
    start: int  # first sample of the query window in the track
    others: tuple[int, ...]  # the track's stems in the mix: those active in the window


def write_pool(dataset: PreparedDataset, folder: Path) -> list[PoolStem]:
    """Every stem of every track as `folder/NNNN.wav` (float WAV at the dataset's rate), in order."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = []
    for t, track in enumerate(dataset.tracks):
        for s, stem in enumerate(track.stems):
            path = folder / f"{len(pool) + 1:04d}.wav"
            soundfile.write(path, stem.read(0, stem.num_samples), dataset.sample_rate, subtype="FLOAT")
            pool.append(PoolStem(t, s, path))
    return pool


def draw_queries(dataset: PreparedDataset, pool: Sequence[PoolStem], seed: int = 0, seconds: float = QUERY_SECONDS,
                 sampler: SamplerConfig = SamplerConfig()) -> list[LibraryQuery]:
    """One query per pool stem that plays with another stem of its track somewhere: a window of
    `seconds` ending at a random sample, redrawn (up to QUERY_TRIES times) until the stem and at
    least one other are active in it (`sampler`'s thresholds). Stems silent in every draw get none."""
    rng = np.random.default_rng(seed)
    window = round(seconds * dataset.sample_rate)
    queries = []
    for i, member in enumerate(pool):
        track = dataset.tracks[member.track]
        for _ in range(QUERY_TRIES):
            start = int(rng.integers(0, max(1, track.num_samples - window + 1)))
            active = set(active_stems(read_chunk(track, start, window), sampler).tolist())
            if member.stem in active and len(active) >= 2:
                queries.append(LibraryQuery(i, start, tuple(sorted(active - {member.stem}))))
                break
    return queries


def query_mix(dataset: PreparedDataset, pool: Sequence[PoolStem], query: LibraryQuery,
              seconds: float = QUERY_SECONDS) -> np.ndarray:
    """The query's mix: the sum of its other stems over its window, float32."""
    track = dataset.tracks[pool[query.target].track]
    window = round(seconds * dataset.sample_rate)
    return np.sum([track.stems[s].read(query.start, query.start + window) for s in query.others], axis=0)


def ask(engine: Engine, dataset: PreparedDataset, pool: Sequence[PoolStem], queries: Sequence[LibraryQuery],
        levels: Sequence[str], seconds: float = QUERY_SECONDS, progress: bool = True
        ) -> dict[str, list[list[StemMatch]]]:
    """Every query at every label level through the engine, ranking the whole pool: level -> the
    matches of each query, best first."""
    answers: dict[str, list[list[StemMatch]]] = {level: [] for level in levels}
    for query in tqdm(queries, desc="library queries", unit="query", disable=not progress):
        samples = engine.prepare_query(query_mix(dataset, pool, query, seconds), dataset.sample_rate, seconds)
        for level in levels:
            instrument = level_label(pool[query.target].label_path(dataset), level)
            answers[level].append(engine.query(Query(samples, instrument, k=len(pool))).matches)
    return answers


def score_library(dataset: PreparedDataset, pool: Sequence[PoolStem], queries: Sequence[LibraryQuery],
                  matches: Sequence[Sequence[StemMatch]], level: str, seconds_per_column: float,
                  ks: Sequence[int] = KS, select: np.ndarray | None = None) -> dict:
    """The protocol's figures at one label level, over all queries or the `select`ed ones."""
    by_path = {str(member.path.absolute()): i for i, member in enumerate(pool)}
    labels = [level_label(member.label_path(dataset), level) for member in pool]
    family_size = {label: labels.count(label) for label in set(labels)}
    keys = [parse_key(dataset.tracks[m.track].key) if dataset.tracks[m.track].key else None for m in pool]
    tempi = [dataset.tracks[m.track].tempo_bpm for m in pool]
    ranks, precision, key_agreement, tempo_agreement, offset_errors = [], [], [], [], []
    chosen = range(len(queries)) if select is None else np.flatnonzero(select)
    for q in chosen:
        query, ranked = queries[q], [by_path[m.path] for m in matches[q]]
        if len(ranked) != len(pool):
            raise ValueError(f"query {q} ranked {len(ranked)} of the pool's {len(pool)} stems")
        rank = ranked.index(query.target)
        ranks.append(rank)
        asked = labels[query.target]
        top = ranked[: min(PRECISION_AT, family_size[asked])]
        precision.append(np.mean([labels[i] == asked for i in top]))
        top = ranked[:PRECISION_AT]
        if keys[query.target] is not None and any(keys[i] is not None for i in top):
            key_agreement.append(np.mean([keys_agree(keys[i], keys[query.target]) for i in top if keys[i]]))
        if tempi[query.target] is not None and any(tempi[i] is not None for i in top):
            tempo_agreement.append(np.mean([tempi_agree(tempi[i], tempi[query.target]) for i in top if tempi[i]]))
        if rank < PRECISION_AT:
            truth = query.start / dataset.sample_rate
            offset_errors.append(abs(matches[q][rank].offset_s - truth))
    if not ranks:
        raise ValueError("no queries to score")
    ranks_ = np.asarray(ranks, dtype=np.float64)
    summary: dict[str, float | int | None] = {"queries": len(ranks), "pool_size": len(pool)}
    for k in ks:
        summary[f"R@{k}"] = 100 * float(np.mean(ranks_ < k))
    summary["mean_normalised_rank"] = 100 * float(ranks_.mean()) / len(pool)
    summary["median_normalised_rank"] = 100 * float(np.median(ranks_)) / len(pool)
    summary[f"instrument_precision@{PRECISION_AT}"] = 100 * float(np.mean(precision))
    summary[f"key_agreement@{PRECISION_AT}"] = _percent(key_agreement)
    summary[f"tempo_agreement@{PRECISION_AT}"] = _percent(tempo_agreement)
    summary["offset_within_one_column"] = _percent([e <= seconds_per_column for e in offset_errors])
    summary["offset_median_error_s"] = float(np.median(offset_errors)) if offset_errors else None
    return summary


def chance_library(dataset: PreparedDataset, pool: Sequence[PoolStem], queries: Sequence[LibraryQuery],
                   level: str) -> dict[str, float]:
    """What a random ranking scores on average: R@k = k / P, normalised rank (P - 1) / 2P, and an
    instrument precision equal to the asked label's share of the rest of the pool."""
    labels = [level_label(member.label_path(dataset), level) for member in pool]
    summary = chance_metrics(len(pool))
    summary[f"instrument_precision@{PRECISION_AT}"] = 100 * float(np.mean(
        [labels.count(labels[q.target]) / len(pool) for q in queries]))
    return summary


def evaluate_library(checkpoint: Path, dataset: PreparedDataset, settings: Settings = Settings(),
                     levels: Sequence[str] = LEVELS, seed: int = 0, seconds: float = QUERY_SECONDS,
                     sampler: SamplerConfig = SamplerConfig(), holdout_labels: Sequence[str] = (),
                     workdir: Path | None = None, progress: bool = True) -> dict:
    """The whole protocol: write and index the pool, ask every query, score each level (and the
    queries for held-out labels apart, when `holdout_labels` are given). The pool and its library
    live in `workdir` (a temporary folder, removed afterwards, when None)."""
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="stemserver-library-eval-")) if own else workdir
    try:
        pool = write_pool(dataset, work / "pool")
        indexed = index_folders([work / "pool"], work / "library", checkpoint, settings, IndexOptions(),
                                progress=progress)
        if indexed["failed"]:
            raise ValueError(f"the indexer refused {len(indexed['failed'])} pool stems: {indexed['failed'][:3]}")
        queries = draw_queries(dataset, pool, seed, seconds, sampler)
        if not queries:
            raise ValueError("no stem plays together with another in any window drawn: nothing to query")
        engine = Engine(checkpoint, work / "library", settings)
        answers = ask(engine, dataset, pool, queries, levels, seconds, progress)
        zero_shot = np.asarray([held_out(pool[q.target].label_path(dataset), holdout_labels) for q in queries])
        results = {}
        for level in levels:
            results[level] = {
                "model": score_library(dataset, pool, queries, answers[level], level, engine.seconds_per_column),
                "chance": chance_library(dataset, pool, queries, level),
            }
            if zero_shot.any() and not zero_shot.all():
                results[level]["zero_shot"] = {
                    "holdout_labels": list(holdout_labels),
                    "held_out": score_library(dataset, pool, queries, answers[level], level,
                                              engine.seconds_per_column, select=zero_shot),
                    "seen": score_library(dataset, pool, queries, answers[level], level,
                                          engine.seconds_per_column, select=~zero_shot),
                }
        return {
            "protocol": {
                "pool": "every stem of the split, under an opaque file name, indexed by `stemserver index` "
                        "(the library's windows and encoding)",
                "query": f"the mix of the track's other active stems over {seconds:g} s ending at a random "
                         f"sample (seed {seed}), through Engine.query, asked for the stem's label",
                "precision_at": PRECISION_AT,
                "key_agreement": "share of the top 10 (with a known key) in the mix's key or its relative",
                "tempo_agreement": "share of the top 10 (with a known tempo) within 4 % of the mix's, or at "
                                   "double or half time",
                "offset": "queries whose stem is in the top 10: error of offset_s against the window's start",
                "units": "percent, except offset_median_error_s",
            },
            "data": {"tracks": len(dataset.tracks), "pool": len(pool), "queries": len(queries),
                     "index_s": indexed["elapsed_s"], "audio_seconds": indexed["audio_seconds"]},
            "levels": results,
        }
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _percent(values: Sequence[float]) -> float | None:
    return 100 * float(np.mean(values)) if len(values) else None
