"""The retrieval evaluation of both papers: given a mix, does the model find its missing stem?

Protocol (Stem-JEPA section 4.1, zero-shot paper section III-A), on the evaluation view of a
prepared dataset (stemserver_training.sampler.EvaluationView: evenly spaced chunks per track; in each chunk,
every active stem is a target and the mix of the other active stems its context):

- pool: every target, embedded the way the product indexes a library stem: the EMA target
  encoder's patches, each standardised over its features (stemserver.inference.stem_representation),
  averaged over patches and L2-normalised (stemserver.inference.mean_vector). `pool_encoder=
  "context"` embeds the pool with the context encoder instead, same normalisation: the ablation
  the issue asks to report.
- query: the predictor's output for the mix, conditioned on the text embedding of the target's
  label (stemserver.inference.predict_columns, what the engine runs), averaged the same way: what
  the engine searches a library with. "fine" conditions on
  the last level of the label path, "coarse" on the first ("music" when the stem has none).
- contrastive baseline: no predictor; the mix itself, embedded exactly like a pool stem, is the
  query. It does not depend on the label, so its numbers are the same at every level (as in the
  zero-shot paper's table).
- chance: a query that ranks the pool at random.

Ranking. The pool is ranked by cosine to the query. A target's rank is 0-based (ranked first =
0) and normalised by the pool size, so it lies in [0, 1) as in the papers; figures are percent.
Cosines within TIE_TOLERANCE of the target's count as ties, broken at random in expectation: the
rank is (items above) + (ties) / 2, and R@k is the probability that a random order of the ties
leaves the target in the top k. A collapsed model (every cosine equal) therefore scores exactly
chance, neither 100 % (ties won) nor worse than chance (ties lost).

Nearest neighbour. The most similar pool item is put in one of five categories: the target
itself ("both right": its share is R@1 without ties), another pool item of the same track with
the same label (another chunk of the target stem, or a second stem with the same label, e.g.
two guitars; impossible in the papers' one-chunk-per-track MUSDB18 setting), right label from
another track, another label from the same track, or both wrong.

Temporal alignment (Stem-JEPA section 4.3). Both sides are kept as sequences of 160 ms columns
(frequency rows concatenated); for each shift j the curve is the mean over columns i of
cos(stem[i], prediction[i + j]), over the overlapping columns only (no wrap-around), then
averaged over targets. It is reported raw (the paper's figure 4) and centred (each sequence
minus its mean column, stemserver.alignment.centred_unit_columns: what best_shift maximises to
place a retrieved stem), with the share of targets whose centred curve peaks at j = 0 (the
offset the product would find).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from stemserver.arguments import non_negative_int, positive_float, positive_int
from stemserver.errors import StemserverError
from stemserver.exits import EXIT_OK, run_main
from stemserver.inference import encode, mean_vector, predict_columns, stem_representation
from stemserver.model import StemJEPA
from stemserver.text import LabelEmbedder
from stemserver.vocabulary import FALLBACK_LABEL
from stemserver_training.cache import PreparedDataset
from stemserver_training.sampler import EvaluationView, SamplerConfig, collate_examples

KS = (1, 5, 10)
LEVELS = ("fine", "coarse")
POOL_ENCODERS = ("target", "context")
TIE_TOLERANCE = 1e-6
"""Cosines closer than this count as equal: float32 rounding must not decide a collapsed model's rank."""
CATEGORIES = (
    "both_right",
    "right_track_and_instrument_not_target",
    "right_instrument_wrong_track",
    "right_track_wrong_instrument",
    "both_wrong",
)


# -- metrics on embeddings -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """Where each query's target lands when the pool is ranked by cosine."""

    above: np.ndarray  # (N,) pool items strictly more similar than the target
    tied: np.ndarray  # (N,) other pool items as similar as the target (within the tolerance)
    nearest: np.ndarray  # (N,) index of the most similar pool item (the lowest index among equals)
    pool_size: int

    @property
    def rank(self) -> np.ndarray:
        """The target's expected 0-based rank under a random order of its ties."""
        return self.above + self.tied / 2


def rank_targets(queries: np.ndarray, pool: np.ndarray, target_index: np.ndarray,
                 tolerance: float = TIE_TOLERANCE, block: int = 1024) -> Ranks:
    """Rank `pool` (P, d) by cosine to each of `queries` (N, d); query i's answer is
    pool[target_index[i]]. Works through the queries in blocks so N x P never sits in memory."""
    queries, pool = _unit_rows(queries), _unit_rows(pool)
    target_index = np.asarray(target_index, dtype=np.int64)
    if len(queries) != len(target_index):
        raise ValueError(f"{len(queries)} queries but {len(target_index)} target indices")
    if len(pool) == 0 or target_index.min(initial=0) < 0 or target_index.max(initial=0) >= len(pool):
        raise ValueError(f"target indices must point into the pool of {len(pool)} items")
    above, tied, nearest = (np.empty(len(queries), np.int64) for _ in range(3))
    for start in range(0, len(queries), block):
        rows = slice(start, start + block)
        cosines = queries[rows] @ pool.T  # (block, P)
        target = cosines[np.arange(len(cosines)), target_index[rows]][:, None]
        above[rows] = (cosines > target + tolerance).sum(axis=1)
        tied[rows] = (np.abs(cosines - target) <= tolerance).sum(axis=1) - 1  # minus the target itself
        nearest[rows] = cosines.argmax(axis=1)
    return Ranks(above, tied, nearest, len(pool))


def summarise(ranks: Ranks, select: np.ndarray | None = None, ks: Sequence[int] = KS) -> dict[str, float]:
    """R@k and the mean and median normalised rank, in percent, of all queries or the selected ones."""
    above, tied = (ranks.above, ranks.tied) if select is None else (ranks.above[select], ranks.tied[select])
    if len(above) == 0:
        raise ValueError("no queries to summarise")
    rank = above + tied / 2
    summary: dict[str, float] = {"queries": len(above), "pool_size": ranks.pool_size}
    for k in ks:
        summary[f"R@{k}"] = 100 * float(np.mean(np.clip(k - above, 0, tied + 1) / (tied + 1)))
    summary["mean_normalised_rank"] = 100 * float(rank.mean()) / ranks.pool_size
    summary["median_normalised_rank"] = 100 * float(np.median(rank)) / ranks.pool_size
    return summary


def retrieval_metrics(queries: np.ndarray, pool: np.ndarray, target_index: np.ndarray,
                      ks: Sequence[int] = KS) -> dict[str, float]:
    """R@k, mean and median normalised rank (percent) of retrieving pool[target_index[i]] with queries[i]."""
    return summarise(rank_targets(queries, pool, target_index), ks=ks)


def chance_metrics(pool_size: int, ks: Sequence[int] = KS) -> dict[str, float]:
    """What a query that orders the pool at random scores on average: R@k = k / P, and the
    0-based rank is uniform on 0..P-1, so its mean and median are (P - 1) / 2."""
    summary: dict[str, float] = {"queries": 0, "pool_size": pool_size}
    for k in ks:
        summary[f"R@{k}"] = 100 * min(k, pool_size) / pool_size
    summary["mean_normalised_rank"] = summary["median_normalised_rank"] = 100 * (pool_size - 1) / 2 / pool_size
    return summary


def nearest_neighbour_categories(nearest: np.ndarray, target_index: np.ndarray, tracks: Sequence[str],
                                 labels: Sequence[str]) -> np.ndarray:
    """The category (see CATEGORIES) of each query's nearest neighbour; `tracks` and `labels` are
    per pool item, and query i's own are those of pool[target_index[i]]."""
    tracks, labels = np.asarray(tracks, dtype=object), np.asarray(labels, dtype=object)
    same_track = tracks[nearest] == tracks[target_index]
    same_label = labels[nearest] == labels[target_index]
    return np.select(
        [nearest == target_index, same_track & same_label, same_label, same_track],
        list(CATEGORIES[:4]),
        default=CATEGORIES[4],
    ).astype(object)


def category_shares(categories: np.ndarray) -> dict[str, float]:
    """Percent of queries in each category, every category present (0 when empty)."""
    return {name: 100 * float(np.mean(categories == name)) for name in CATEGORIES}


def confusion_matrix(target_labels: Sequence[str], nearest_labels: Sequence[str],
                     order: Sequence[str]) -> np.ndarray:
    """Counts: row = the target's label, column = the label of the query's nearest neighbour."""
    position = {label: i for i, label in enumerate(order)}
    counts = np.zeros((len(order), len(order)), dtype=np.int64)
    for target, found in zip(target_labels, nearest_labels):
        counts[position[target], position[found]] += 1
    return counts


def alignment_curves(stem_columns: torch.Tensor, predicted_columns: torch.Tensor,
                     max_shift: int) -> dict[str, torch.Tensor]:
    """Per target, the mean cosine between stem column i and prediction column i + j, for j in
    -max_shift..max_shift, over the overlapping columns: {"raw", "centred"} -> (B, 2 max_shift + 1).

    Inputs are (B, columns, D), one row per 160 ms column (frequency rows concatenated). Centred
    subtracts each sequence's mean column first, exactly as centred_unit_columns (best_shift) does.
    """
    columns = stem_columns.shape[1]
    if predicted_columns.shape != stem_columns.shape:
        raise ValueError(f"stem columns {tuple(stem_columns.shape)} and predicted columns "
                         f"{tuple(predicted_columns.shape)} differ in shape")
    if not 0 <= max_shift < columns:
        raise ValueError(f"max_shift must be in 0..{columns - 1} for {columns} columns, got {max_shift}")
    curves = {}
    for name, centre in (("raw", False), ("centred", True)):
        s, p = stem_columns.float(), predicted_columns.float()
        if centre:
            s, p = s - s.mean(dim=1, keepdim=True), p - p.mean(dim=1, keepdim=True)
        cosines = F.normalize(s, dim=-1, eps=1e-12) @ F.normalize(p, dim=-1, eps=1e-12).transpose(1, 2)
        curves[name] = torch.stack([torch.diagonal(cosines, offset=j, dim1=1, dim2=2).mean(dim=-1)
                                    for j in range(-max_shift, max_shift + 1)], dim=1)
    return curves


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# -- the protocol: embed every target, its query and the baseline ----------------------------------


@dataclass(frozen=True)
class Target:
    """One pool item: a stem in one evaluation chunk."""

    track: str
    stem: str
    start_s: float
    label_path: tuple[str, ...]

    def label(self, level: str) -> str:
        return level_label(self.label_path, level)


def held_out(label_path: Sequence[str], holdout_labels: Sequence[str]) -> bool:
    """Whether a label path has a label kept out of training at any level."""
    return bool(set(holdout_labels).intersection(label_path))


def level_label(label_path: Sequence[str], level: str) -> str:
    """The conditioning label at `level`: the last ("fine") or the first ("coarse") of the path,
    "music" for a stem without labels (as in training)."""
    if not label_path:
        return FALLBACK_LABEL
    return label_path[-1] if level == "fine" else label_path[0]


@dataclass
class Embedded:
    """Everything the metrics are computed from, one row per target (= pool item)."""

    targets: list[Target]
    pool: np.ndarray  # (N, d) unit vectors
    baseline: np.ndarray  # (N, d) the mixes, embedded like the pool
    queries: dict[str, np.ndarray]  # level -> (N, d) averaged predictions
    alignment: dict[str, dict[str, np.ndarray]]  # level -> {"raw", "centred"} -> (N, shifts)
    max_shift: int
    seconds_per_column: float


def embed_targets(model: StemJEPA, labels: LabelEmbedder, view: EvaluationView, levels: Sequence[str],
                  pool_encoder: str = "target", device: torch.device = torch.device("cpu"),
                  batch_size: int = 32, max_shift: int | None = None, progress: bool = True) -> Embedded:
    """Run the model over every target of `view`, in order, in batches.

    Per target: the pool encoder on the stem and on the mix (the baseline; shared with the
    context encoder when that embeds the pool), the context encoder on the mix, and the predictor
    once per label level. `max_shift` (columns) defaults to half the chunk and is at most the
    chunk's columns - 1."""
    if pool_encoder not in POOL_ENCODERS:
        raise ValueError(f"pool_encoder must be one of {POOL_ENCODERS}, not {pool_encoder!r}")
    unknown = set(levels) - set(LEVELS)
    if unknown or not levels:
        raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {tuple(levels)}")
    paths = [view.tracks[t].stems[s].label_path for t, _, s, _ in view.items]
    texts = {level: _label_embeddings(labels, paths, level) for level in levels}
    targets: list[Target] = []
    sample_rate = model.config.front_end.sample_rate
    pool, baseline = [], []
    queries: dict[str, list[np.ndarray]] = {level: [] for level in levels}
    curves: dict[str, dict[str, list[np.ndarray]]] = {level: {"raw": [], "centred": []} for level in levels}
    loader = DataLoader(view, batch_size=batch_size, shuffle=False, collate_fn=collate_examples)
    bar = tqdm(total=len(view), desc="evaluating", unit="target", disable=not progress)
    with torch.inference_mode():
        for batch in loader:
            mix, stem = batch.context.to(device), batch.target.to(device)
            mix_grid = encode(model, mix)
            stem_cols = stem_representation(encode(model, stem, target=pool_encoder == "target")).cpu()
            mix_pool_grid = encode(model, mix, target=True) if pool_encoder == "target" else mix_grid
            pool += [mean_vector(c) for c in stem_cols.numpy()]
            baseline += [mean_vector(c) for c in stem_representation(mix_pool_grid).cpu().numpy()]
            if max_shift is None or max_shift >= stem_cols.shape[1]:
                max_shift = stem_cols.shape[1] // 2 if max_shift is None else stem_cols.shape[1] - 1
            for level in levels:
                text = torch.stack([texts[level][level_label(p, level)] for p in batch.label_paths])
                predicted_cols = predict_columns(model, mix_grid, text)  # (B, cols, rows, d): what the engine searches
                queries[level] += list(map(mean_vector, predicted_cols))
                for name, curve in alignment_curves(stem_cols.flatten(2), torch.from_numpy(predicted_cols).flatten(2),
                                                    max_shift).items():
                    curves[level][name].append(curve.numpy())
            targets += [Target(track, stem_name, start / sample_rate, tuple(path)) for track, stem_name, start, path
                        in zip(batch.tracks, batch.stems, batch.starts.tolist(), batch.label_paths)]
            bar.update(len(mix))
    bar.close()
    return Embedded(
        targets=targets, pool=np.stack(pool), baseline=np.stack(baseline),
        queries={level: np.stack(q) for level, q in queries.items()},
        alignment={level: {name: np.concatenate(parts) for name, parts in by_name.items()}
                   for level, by_name in curves.items()},
        max_shift=int(max_shift), seconds_per_column=model.config.seconds_per_column,
    )


def _label_embeddings(labels: LabelEmbedder, paths: Sequence[Sequence[str]], level: str) -> dict[str, torch.Tensor]:
    """Each distinct label of `level` embedded once, before any audio is encoded: a label the
    checkpoint cannot embed fails here, not after an hour of encoding."""
    names = sorted({level_label(path, level) for path in paths})
    return dict(zip(names, labels.embed(names))) if names else {}


# -- scoring -----------------------------------------------------------------------------------------


def label_order(targets: Sequence[Target], level: str) -> list[str]:
    """The labels of `level`, grouped by their coarse label, then alphabetical: related fine labels
    ("acoustic guitar", "electric guitar") sit side by side in the tables and the confusion matrix."""
    group: dict[str, str] = {}
    for target in targets:
        group.setdefault(target.label(level), target.label("coarse"))
    return sorted(group, key=lambda label: (group[label], label))


def score(embedded: Embedded, ks: Sequence[int] = KS, holdout_labels: Sequence[str] = ()) -> dict:
    """Every figure of the report, computed from the embeddings: per label level, the retrieval
    table (predictor, contrastive baseline, chance), the nearest-neighbour categories, the
    per-label breakdown, the confusion counts and the alignment curves; and per target, its rank
    and nearest neighbour (an index into `targets`, which is also the pool). With
    `holdout_labels` (labels kept out of training), the retrieval table again for the targets
    with a held-out label in their path (zero-shot) and for the others."""
    targets = embedded.targets
    zero_shot = np.asarray([held_out(t.label_path, holdout_labels) for t in targets], dtype=bool)
    target_index = np.arange(len(targets))
    tracks = [target.track for target in targets]
    baseline = rank_targets(embedded.baseline, embedded.pool, target_index)
    per_target = [{"track": t.track, "stem": t.stem, "start_s": t.start_s, "label_path": list(t.label_path),
                   "rank": {"contrastive_baseline": float(baseline.rank[i])},
                   "nearest": {"contrastive_baseline": int(baseline.nearest[i])}} for i, t in enumerate(targets)]
    levels = {}
    for level, queries in embedded.queries.items():
        labels = np.asarray([target.label(level) for target in targets], dtype=object)
        order = label_order(targets, level)
        jepa = rank_targets(queries, embedded.pool, target_index)
        categories = nearest_neighbour_categories(jepa.nearest, target_index, tracks, labels)
        baseline_categories = nearest_neighbour_categories(baseline.nearest, target_index, tracks, labels)
        for i, entry in enumerate(per_target):
            entry["rank"][level], entry["nearest"][level] = float(jepa.rank[i]), int(jepa.nearest[i])
        levels[level] = {
            "retrieval": {"jepa": summarise(jepa, ks=ks), "contrastive_baseline": summarise(baseline, ks=ks),
                          "chance": chance_metrics(len(targets), ks)},
            "categories": {"jepa": category_shares(categories),
                           "contrastive_baseline": category_shares(baseline_categories)},
            "per_label": {label: {**summarise(jepa, labels == label, ks),
                                  "categories": category_shares(categories[labels == label])}
                          for label in order},
            "confusion": {"labels": order,
                          "counts": confusion_matrix(labels, labels[jepa.nearest], order).tolist()},
            "alignment": _alignment_summary(embedded, level),
        }
        if zero_shot.any():
            levels[level]["zero_shot"] = {
                "holdout_labels": list(holdout_labels),
                "held_out": {"jepa": summarise(jepa, zero_shot, ks),
                             "contrastive_baseline": summarise(baseline, zero_shot, ks)},
                "seen": {"jepa": summarise(jepa, ~zero_shot, ks),
                         "contrastive_baseline": summarise(baseline, ~zero_shot, ks)},
            }
    return {"levels": levels, "targets": per_target}


def _alignment_summary(embedded: Embedded, level: str) -> dict:
    shifts = np.arange(-embedded.max_shift, embedded.max_shift + 1)
    raw, centred = embedded.alignment[level]["raw"], embedded.alignment[level]["centred"]
    peaks = shifts[centred.argmax(axis=1)]  # the whole-column offset best_shift would pick per target
    return {
        "shifts": shifts.tolist(),
        "seconds_per_column": embedded.seconds_per_column,
        "raw": raw.mean(axis=0).tolist(),
        "centred": centred.mean(axis=0).tolist(),
        "peak_shift_raw": int(shifts[raw.mean(axis=0).argmax()]),
        "peak_shift_centred": int(shifts[centred.mean(axis=0).argmax()]),
        "offset_found": 100 * float(np.mean(peaks == 0)),
        "offset_within_one_column": 100 * float(np.mean(np.abs(peaks) <= 1)),
    }


def resolve_levels(label_level: str, label_paths: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], list[str]]:
    """The label levels to evaluate, and a note when "both" falls back to one: coarse labels are
    only a separate task where some label path has two levels."""
    if label_level not in (*LEVELS, "both"):
        raise ValueError(f"label_level must be fine, coarse or both, not {label_level!r}")
    if label_level != "both":
        return (label_level,), []
    if any(len(path) >= 2 for path in label_paths):
        return LEVELS, []
    return ("fine",), ["coarse labels not evaluated separately: every label path has one level, so they "
                       "equal the fine ones"]


def evaluate(model: StemJEPA, labels: LabelEmbedder, dataset: PreparedDataset, *, label_level: str = "both",
             pool_encoder: str = "target", chunks_per_track: int = 4, sampler: SamplerConfig = SamplerConfig(),
             batch_size: int = 32, device: torch.device = torch.device("cpu"), max_shift: int | None = None,
             progress: bool = True, holdout_labels: Sequence[str] = (), target_shift_s: float = 0.0) -> dict:
    """The whole protocol on `dataset` (already restricted to the split to evaluate): the metrics
    dictionary that metrics.json holds, less the facts only the caller knows (checkpoint, device).
    `holdout_labels`: the labels training never saw (its data.holdout_labels), reported apart.
    `target_shift_s`: embed every pool stem from that much later than its mix (0: the papers')."""
    if dataset.sample_rate != model.config.front_end.sample_rate:
        raise StemserverError(f"{dataset.cache_dir} holds audio at {dataset.sample_rate} Hz but the model reads "
                              f"{model.config.front_end.sample_rate} Hz; build a cache at the model's rate")
    view = EvaluationView(dataset, sampler, chunks_per_track, round(target_shift_s * dataset.sample_rate))
    if len(view) == 0:
        raise StemserverError(
            f"{dataset.cache_dir}: no evaluation chunk of its {len(dataset.tracks)} track(s) has two active stems "
            f"(peak above {sampler.min_peak}); nothing to evaluate")
    levels, notes = resolve_levels(label_level, [view.tracks[t].stems[s].label_path for t, _, s, _ in view.items])
    embedded = embed_targets(model, labels, view, levels, pool_encoder, device, batch_size, max_shift, progress)
    scored = score(embedded, holdout_labels=holdout_labels)
    return {
        "format": "stemserver-evaluation",
        "format_version": 1,
        "protocol": {
            "pool_encoder": pool_encoder,
            "pool": f"{pool_encoder} encoder patches, each layer-normalised over its features, averaged over "
                    "patches and L2-normalised (as the product indexes a library stem)",
            "query": "predictor(context encoder(mix of the other active stems), text(label)), averaged over "
                     "patches and L2-normalised (as the engine searches)",
            "contrastive_baseline": "the mix embedded like a pool stem; no predictor, no label",
            "labels": "fine = last level of the label path, coarse = first; 'music' when a stem has none",
            "rank": "0-based (first = 0), divided by the pool size; ties broken at random in expectation",
            "tie_tolerance": TIE_TOLERANCE,
            "units": "percent: recalls, normalised ranks, category shares, offset accuracy",
            "ks": list(KS),
            "targets": "one entry per target (= pool item, in this order): its rank (0-based, not normalised) "
                       "and nearest neighbour (an index into targets) per label level and for the baseline",
            "alignment": "mean over overlapping columns i of cos(stem column i, prediction column i + j), frequency "
                         "rows concatenated, stem columns from the pool encoder; raw, and centred (each sequence "
                         "minus its mean column, as stemserver.alignment.best_shift); offset_found = share of "
                         "targets whose centred curve peaks at j = 0",
        },
        "data": {
            "tracks": len({target.track for target in embedded.targets}),
            "targets": len(embedded.targets),
            "chunks_per_track": chunks_per_track,
            "target_shift_s": target_shift_s,
            "chunk_seconds": sampler.chunk_seconds,
            "min_peak": sampler.min_peak,
            "min_rms": sampler.min_rms,
            "labels": {level: len(scored["levels"][level]["per_label"]) for level in levels},
        },
        "notes": notes,
        **scored,
    }


# -- command line ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, common: bool = True) -> None:
    """The evaluation's options. `common=False` leaves out --config, --device, --threads and --json,
    for a parser that already has them (the stemserver CLI's shared options)."""
    parser.add_argument("checkpoint", type=Path, help="model bundle (.safetensors)")
    parser.add_argument("cache_dir", type=Path, help="prepared dataset (stemserver_training.cache.build_cache)")
    parser.add_argument("--protocol", default="both", choices=["both", "library", "papers"],
                        help="library: each stem a whole file indexed by the product, queried with unaligned "
                             "leave-one-out mixes through the engine (how a user meets it); papers: the papers' "
                             "aligned chunks; both (default)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the library protocol's random query moments (default 0)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test", "all"],
                        help="tracks to evaluate (default test; all: the whole dataset, e.g. MUSDB18 for a model "
                             "trained on other data)")
    parser.add_argument("--label-level", default="both", choices=["fine", "coarse", "both"],
                        help="condition on the finest or the coarsest label, or report both (default; where the "
                             "dataset has two levels)")
    parser.add_argument("--pool-encoder", default="target", choices=list(POOL_ENCODERS),
                        help="encoder that embeds the pool: target (default; the EMA encoder the product indexes "
                             "stems with) or context")
    parser.add_argument("--chunks-per-track", type=positive_int, default=4, metavar="N",
                        help="evenly spaced evaluation chunks per track (default 4)")
    parser.add_argument("--chunk-seconds", type=positive_float, default=8.0, metavar="S",
                        help="chunk length (default 8, the training length)")
    parser.add_argument("--target-shift", type=float, default=0.0, metavar="S",
                        help="embed each pool stem S seconds later than its mix (default 0, the papers' aligned "
                             "protocol; a library search is never aligned to the 160 ms column)")
    parser.add_argument("--batch-size", type=positive_int, default=32, metavar="B", help="targets per forward pass")
    parser.add_argument("--max-shift", type=non_negative_int, metavar="COLUMNS",
                        help="alignment curve over shifts -COLUMNS..COLUMNS (default half the chunk)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="report folder (default eval-<checkpoint name>-<split> in the current folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if common:
        parser.add_argument("--config", metavar="PATH", help="stemserver settings file (text model settings)")
        parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
        parser.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for torch")
        parser.add_argument("--json", action="store_true",
                            help="print the metrics (less the per-target list) and the files as JSON")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report, print a summary; exit 0 (errors raise: main turns them into exit 1)."""
    from stemserver.checkpoint import load_checkpoint
    from stemserver.config import load_settings
    from stemserver.device import select_device, set_threads
    from stemserver.files import sha256_file
    from stemserver_training.cache import open_cache
    from stemserver_training.report import check_plotting, write_report

    settings = load_settings(args.config).override(device=args.device, threads=args.threads)
    set_threads(settings.threads)
    device = select_device(settings.device)
    check_plotting()
    checkpoint = load_checkpoint(args.checkpoint)
    dataset = open_cache(args.cache_dir)
    if args.split != "all":
        dataset = dataset.split(args.split)
    if not dataset.tracks:
        raise StemserverError(f"{args.cache_dir} has no {args.split} tracks; choose another --split")
    out = args.out or Path(f"eval-{args.checkpoint.stem}-{args.split}")
    started = time.perf_counter()
    holdout_labels = checkpoint.info.get("config", {}).get("data", {}).get("holdout_labels", [])
    metrics: dict = {"format": "stemserver-evaluation", "format_version": 1}
    if args.protocol in ("both", "papers"):
        metrics = evaluate(
            checkpoint.build_model(device), checkpoint.label_embedder(settings.text, device=str(device)), dataset,
            label_level=args.label_level, pool_encoder=args.pool_encoder, chunks_per_track=args.chunks_per_track,
            sampler=SamplerConfig(chunk_seconds=args.chunk_seconds), batch_size=args.batch_size, device=device,
            max_shift=args.max_shift, progress=not args.no_progress, holdout_labels=holdout_labels,
            target_shift_s=args.target_shift,
        ) | metrics
    if args.protocol in ("both", "library"):
        from stemserver_training.library_protocol import evaluate_library

        levels, _ = resolve_levels(args.label_level, [stem.label_path for t in dataset.tracks for stem in t.stems])
        metrics["library"] = evaluate_library(args.checkpoint, dataset, settings, levels, args.seed,
                                              holdout_labels=holdout_labels, progress=not args.no_progress)
    metrics = {
        "checkpoint": {"path": str(args.checkpoint), "sha256": sha256_file(args.checkpoint),
                       "info": checkpoint.info, "model": checkpoint.config.to_dict(),
                       "text_backend": checkpoint.text_backend},
        "dataset": {"cache_dir": str(dataset.cache_dir), "split": args.split},
        "device": str(device),
        "elapsed_s": round(time.perf_counter() - started, 3),
        **metrics,
    }
    files = write_report(metrics, out)
    if args.json:
        summary = {key: value for key, value in metrics.items() if key != "targets"}
        print(json.dumps({"files": {name: str(path) for name, path in files.items()}, **summary}, indent=1))
    else:
        print(_summary_text(metrics, files))
    return EXIT_OK


def _summary_text(metrics: dict, files: dict[str, Path]) -> str:
    lines = _library_summary(metrics["library"]) if "library" in metrics else []
    if "levels" in metrics:
        lines += _papers_summary(metrics)
    lines += [f"{name}: {path}" for name, path in files.items()]
    return "\n".join(lines)


def _library_summary(library: dict) -> list[str]:
    data = library["data"]
    lines = [f"library protocol: {data['queries']} unaligned leave-one-out queries, pool {data['pool']} stems "
             f"(percent; P@10 instrument precision, key/tempo agreement@10, offset within one column)",
             f"{'':34} {'R@1':>6} {'R@10':>6} {'median':>6} {'P@10':>6} {'key':>6} {'tempo':>6} {'offset':>6}"]
    for level, results in library["levels"].items():
        for name, r in ((f"library, {level} labels", results["model"]), (f"chance, {level} labels", results["chance"])):
            cells = [r.get(key) for key in ("R@1", "R@10", "median_normalised_rank", "instrument_precision@10",
                                            "key_agreement@10", "tempo_agreement@10", "offset_within_one_column")]
            lines.append(f"{name:34} " + " ".join("     -" if v is None else f"{v:6.1f}" for v in cells))
    return lines


def _papers_summary(metrics: dict) -> list[str]:
    lines = [f"papers' protocol: {metrics['data']['targets']} aligned targets from {metrics['data']['tracks']} tracks, "
             f"pool embedded by the {metrics['protocol']['pool_encoder']} encoder (percent; ranks normalised by the "
             "pool size)",
             f"{'':34} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'mean':>6} {'median':>6}"]
    levels = metrics["levels"]
    first = next(iter(levels.values()))["retrieval"]
    rows = [(f"JEPA, {level} labels", results["retrieval"]["jepa"]) for level, results in levels.items()]
    rows += [("contrastive baseline", first["contrastive_baseline"]), ("chance", first["chance"])]
    for name, r in rows:
        lines.append(f"{name:34} {r['R@1']:6.1f} {r['R@5']:6.1f} {r['R@10']:6.1f} "
                     f"{r['mean_normalised_rank']:6.2f} {r['median_normalised_rank']:6.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stemserver_training.evaluate",
        description="The papers' stem retrieval evaluation on a prepared dataset: R@1/5/10 and normalised ranks "
                    "(fine and coarse labels), the contrastive baseline and chance, per-label nearest-neighbour "
                    "analysis, confusion matrix and temporal alignment curve. Writes metrics.json, report.md and "
                    "PNG plots.")
    add_arguments(parser)
    return run_main(run, parser.parse_args(argv), "eval", errors=(StemserverError, OSError))


if __name__ == "__main__":
    sys.exit(main())
