"""The offset search on column sequences with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from stemserver.alignment import best_shift, best_shifts


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


def candidates() -> tuple[np.ndarray, list[np.ndarray], list[float | None]]:
    """A query and stems as the engine aligns them: float16 (columns, rows, d) library stems, long
    and short, loops of whole and fractional periods, a stem as long as the query, one column."""
    query = smooth_sequence(np.arange(50.0) + 30.4, dim=60).reshape(50, 5, 12)
    stems, periods = [], []
    for n, period in [(200, None), (187, None), (50, None), (49, None), (12, 12.5), (20, None), (13, 13.0),
                      (1, None), (60, 40.3)]:
        stems.append(smooth_sequence(np.arange(float(n)), dim=60, seed=n).reshape(n, 5, 12).astype(np.float16))
        periods.append(period)
    stems[1] = smooth_sequence(np.arange(187.0), dim=60).reshape(187, 5, 12).astype(np.float16)  # holds the query
    return query, stems, periods


def reference_curve(query: np.ndarray, stem: np.ndarray, period: float | None) -> np.ndarray:
    """The definition, one shift at a time in float64: the mean over query columns i of the cosine
    between centred query column i and centred stem column i + j (modulo the period for a loop)."""
    def centred(x):
        flat = x.reshape(len(x), -1).astype(np.float64)
        flat -= flat.mean(axis=0)
        return flat / np.linalg.norm(flat, axis=1, keepdims=True)

    q, s = centred(query), centred(stem)
    loop = period is not None or len(s) < len(q)
    shifts = range(len(s)) if loop else range(len(s) - len(q) + 1)
    period = period or len(s)
    return np.array([np.mean([q[i] @ s[min(int((i + j) % period), len(s) - 1) if loop else i + j]
                              for i in range(len(q))]) for j in shifts])


def test_the_batched_search_gives_the_per_candidate_results():
    query, stems, periods = candidates()
    batched = best_shifts(query, stems, periods)
    assert len(batched) == len(stems)
    for stem, period, alignment in zip(stems, periods, batched):
        # Equal to float32 rounding: the product's width differs (1e-8 on the curve; up to 1e-6
        # columns once a flat peak's parabola amplifies it).
        single = best_shift(query, stem, period)
        assert int(np.argmax(alignment.curve)) == int(np.argmax(single.curve))
        assert alignment.shift_columns == pytest.approx(single.shift_columns, abs=1e-5)
        assert alignment.score == pytest.approx(single.score, abs=1e-6)
        np.testing.assert_allclose(alignment.curve, single.curve, atol=1e-6, rtol=0)
        if len(stem) > 1:  # one column has no variation left once centred
            reference = reference_curve(query, stem, period)
            np.testing.assert_allclose(alignment.curve, reference, atol=1e-5)
            assert int(np.argmax(alignment.curve)) == int(np.argmax(reference))
    assert batched[1].shift_columns == pytest.approx(30.4, abs=0.15)


def test_the_batched_search_checks_its_input():
    query, stems, periods = candidates()
    assert best_shifts(query, [], []) == []
    with pytest.raises(ValueError, match="periods"):
        best_shifts(query, stems, periods[:-1])
    with pytest.raises(ValueError, match="empty"):
        best_shifts(query, [stems[0], np.zeros((0, 5, 12), np.float16)], [None, None])

