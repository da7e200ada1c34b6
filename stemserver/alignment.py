"""Where a retrieved stem lines up with the mix: the shift that maximises the mean column cosine.

Both sides are sequences of 160 ms columns (each column the concatenation of its frequency rows).
For a shift j, the score is the mean over query columns i of cos(query[i], stem[i + j]). Stem-JEPA
(section 4.3) shows this curve peaks at the true alignment, on top of a high constant level: the
embeddings carry much global information. Each sequence's mean column is therefore subtracted
first, leaving the local, time-varying part. Measured on a random tiny model with an identity
predictor (12 random shifts into a 30 s stem): without centring 2 of 12 offsets were seconds off
(the encoder's positional embeddings, which differ between the query's window and the stem's
windows, outweighed the content); with it all 12 were within one column, median error 22 ms.

A stem at least as long as the query is searched over every shift with full overlap; a loop
(shorter than the query, or marked as a loop) is searched modulo its length, since it repeats.
The peak is refined below one column by a parabola through it and its two neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

MIN_NORM = 1e-12  # below it a centred column is taken as zero


@dataclass(frozen=True)
class Alignment:
    shift_columns: float  # stem column that lines up with query column 0 (fractional)
    score: float  # mean cosine of the centred columns at the best whole-column shift
    curve: np.ndarray  # score for every whole-column shift searched


class Centring(NamedTuple):
    mean: torch.Tensor  # (D,) float32: the stem's mean column
    norms: torch.Tensor  # (columns,) float32: the norm of each column minus that mean; inf where it is 0


class NotFinite(ValueError):
    """Some stems' stored values are NaN or infinite (an embedding damaged on disk)."""

    def __init__(self, stems: list[int]):
        super().__init__(f"stems {stems} hold NaN or infinite values")
        self.stems = stems


def centred_unit_columns(columns: np.ndarray) -> np.ndarray:
    """(columns, rows, d) or (columns, D) -> (columns, D) float32: minus the mean column, unit rows."""
    return _centre(_rows([columns])).numpy()


def best_shift(query: np.ndarray, stem: np.ndarray, period: float | None = None) -> Alignment:
    """Align `query` (Q columns) against `stem` (S columns); both (columns, ...) arrays.

    `period` marks the stem as a loop of that many columns (fractional: a 2 s loop is 12.5
    columns, and rounding it would drift by a column every other repeat); a stem shorter than
    the query is always a loop."""
    return best_shifts(query, [stem], [period])[0]


def best_shifts(query: np.ndarray, stems: Sequence[np.ndarray], periods: Sequence[float | None]) -> list[Alignment]:
    """`best_shift(query, stem, period)` for each of a query's candidate stems (see `align_stems`)."""
    if any(len(stem) == 0 for stem in stems):
        raise ValueError("cannot align an empty sequence")
    rows = [_rows([stem]) for stem in stems]
    return align_stems(query, rows, periods, [stem_centring(r) for r in rows])


def stem_centring(rows: torch.Tensor) -> Centring:
    """A stem's float32 (columns, D) rows -> its mean column and the norm of each centred column:
    all that centring it takes, and none of it depends on the query (the index stores it).

    A column equal to the mean (a one-column stem) has no direction: its norm is given as infinite,
    so that its cosine is 0, as centring it gives, and not the rounding difference of q.s and q.m
    divided by a clamped norm."""
    mean = rows.mean(dim=0)
    norms = torch.linalg.vector_norm(rows - mean, dim=1)
    return Centring(mean, norms.masked_fill_(norms <= MIN_NORM, torch.inf))


def align_stems(query: np.ndarray, stems: Sequence[torch.Tensor], periods: Sequence[float | None],
                centrings: Sequence[Centring]) -> list[Alignment]:
    """Align `query` against k stems, each float32 (columns, D) rows as stored (not centred), with
    its `stem_centring`.

    The cosine of a centred unit query column q with a stem column s is q.(s - m) / |s - m| =
    (q.s - q.m) / |s - m|: a product of the query with the stored columns, then a subtraction and
    a division per cosine, instead of a centring pass over all the stems' values. One product per
    stem, not one over all of them concatenated: each stem's columns stay in the CPU's cache (1.7
    against 2.1 ms for ten 30 s stems, and no concatenation). Raises `NotFinite` naming the stems
    whose values (or centring) are NaN or infinite."""
    if not len(stems) == len(periods) == len(centrings):
        raise ValueError(f"{len(stems)} stems but {len(periods)} periods and {len(centrings)} centrings")
    if len(query) == 0 or any(len(rows) == 0 for rows in stems):
        raise ValueError("cannot align an empty sequence")
    q = _centre(_rows([query]))
    alignments, damaged = [], []
    for i, (rows, period, centring) in enumerate(zip(stems, periods, centrings)):
        cosines = q @ rows.T
        cosines -= (q @ centring.mean)[:, None]
        cosines /= centring.norms
        # A NaN or an infinity in a stem column makes that column's every cosine NaN or infinite
        # (0 * inf is NaN too), so it reaches the curve wherever the column is used.
        with np.errstate(invalid="ignore", over="ignore"):
            alignment = _align(cosines.numpy(), period)
        if not np.isfinite(alignment.curve).all():
            damaged.append(i)
        alignments.append(alignment)
    if damaged:
        raise NotFinite(damaged)
    return alignments


def _rows(sequences: Sequence[np.ndarray]) -> torch.Tensor:
    """The sequences' columns as one new float32 (columns, D) tensor (a copy: centred in place)."""
    return torch.from_numpy(np.concatenate([s.reshape(len(s), -1) for s in sequences])).float()


def _centre(rows: torch.Tensor) -> torch.Tensor:
    """Minus the mean row, then unit rows, in place. torch, not numpy: it runs on the threads the
    engine was given (--threads), where numpy's OpenBLAS starts a pool of its own that spins
    against torch's on a busy machine (measured with the matmul in numpy: 359 ms of offsets per
    query with OpenBLAS's default two threads, 18 ms with one, at a load of 4 on 2 cores)."""
    rows.sub_(rows.mean(dim=0))
    return rows.div_(torch.linalg.vector_norm(rows, dim=1, keepdim=True).clamp_min_(MIN_NORM))


def _align(cosines: np.ndarray, period: float | None) -> Alignment:
    """The search itself, on the (Q, S) cosines between centred query and stem columns."""
    n_query, n_stem = cosines.shape
    loop = period is not None or n_stem < n_query
    period = float(period if period is not None else n_stem)
    if loop:
        positions = np.arange(n_query)[:, None] + np.arange(n_stem)[None, :]
        columns = np.minimum(np.floor(positions % period).astype(np.int64), n_stem - 1)
        curve = cosines[np.arange(n_query)[:, None], columns].mean(axis=0)
    else:  # cosines[i, i + j] for every shift j: a strided view of the diagonals, no gather
        step = cosines.strides
        curve = as_strided(cosines, (n_query, n_stem - n_query + 1), (step[0] + step[1], step[1])).mean(axis=0)
    peak = int(np.argmax(curve))
    return Alignment(peak + _parabolic_offset(curve, peak, circular=loop), float(curve[peak]), curve)


def _parabolic_offset(curve: np.ndarray, peak: int, circular: bool) -> float:
    """Sub-sample position of a peak from the parabola through it and its neighbours, in [-0.5, 0.5]."""
    n = len(curve)
    if n < 3 or (not circular and peak in (0, n - 1)):
        return 0.0
    left, centre, right = curve[(peak - 1) % n], curve[peak], curve[(peak + 1) % n]
    curvature = left - 2 * centre + right
    if curvature >= 0:  # flat or not a maximum: no refinement is meaningful
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
