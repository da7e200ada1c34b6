"""The offset search on column sequences with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from stemserver.alignment import best_shift


def smooth_sequence(positions: np.ndarray, dim: int = 48, seed: int = 0) -> np.ndarray:
    """Columns that vary smoothly and never repeat: random sinusoids sampled at `positions`."""
    rng = np.random.default_rng(seed)
    freqs, phases = rng.uniform(0.05, 0.6, dim), rng.uniform(0, 2 * np.pi, dim)
    return np.sin(positions[:, None] * freqs[None, :] + phases[None, :]).astype(np.float32)


@pytest.mark.parametrize("true_shift", [0, 1, 37, 150])
def test_whole_column_shifts_are_found_exactly(true_shift):
    stem = smooth_sequence(np.arange(200.0))
    query = stem[true_shift : true_shift + 50] + np.random.default_rng(1).normal(0, 0.1, (50, 48)).astype(np.float32)
    alignment = best_shift(query, stem)
    assert alignment.shift_columns == pytest.approx(true_shift, abs=0.25)
    assert len(alignment.curve) == 151 and alignment.score == alignment.curve.max()


@pytest.mark.parametrize("true_shift", [12.3, 40.5, 99.8])
def test_fractional_shifts_are_refined_below_one_column(true_shift):
    stem = smooth_sequence(np.arange(160.0))
    query = smooth_sequence(np.arange(50.0) + true_shift)
    assert best_shift(query, stem).shift_columns == pytest.approx(true_shift, abs=0.15)


def periodic_sequence(positions: np.ndarray, period: float = 20, dim: int = 48, seed: int = 3) -> np.ndarray:
    """Columns of a loop `period` columns long, defined at any (fractional) position."""
    rng = np.random.default_rng(seed)
    harmonics, phases = rng.integers(1, 4, dim), rng.uniform(0, 2 * np.pi, dim)
    return np.sin(2 * np.pi * positions[:, None] * harmonics[None, :] / period + phases[None, :]).astype(np.float32)


def test_loops_are_searched_modulo_their_length():
    loop = periodic_sequence(np.arange(20.0))
    query = periodic_sequence(np.arange(50.0) + 47)  # starts 7 columns into the loop's third repeat
    alignment = best_shift(query, loop)
    assert len(alignment.curve) == 20
    assert alignment.shift_columns == pytest.approx(7, abs=0.15)


def test_a_peak_at_the_loop_seam_interpolates_across_it():
    loop = periodic_sequence(np.arange(20.0))
    query = periodic_sequence(np.arange(50.0) + 19.8)  # between column 19 and column 0 of the next repeat
    shift = best_shift(query, loop).shift_columns
    assert min(abs(shift - 19.8), abs(shift + 0.2)) < 0.15


def test_a_fractional_loop_period_does_not_drift():
    period = 12.5  # a 2 s loop in 160 ms columns
    loop = periodic_sequence(np.arange(12.0), period=12.5)
    query = periodic_sequence(np.arange(50.0) + 5.0, period=12.5)
    assert best_shift(query, loop, period=period).shift_columns == pytest.approx(5.0, abs=0.3)


def test_empty_sequences_are_refused():
    with pytest.raises(ValueError):
        best_shift(np.zeros((0, 4)), np.ones((5, 4)))
