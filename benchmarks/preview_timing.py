"""Why previews stretch with Rubber Band's R2 engine and mixed transients: timing, pitch and speed of
pedalboard.time_stretch's settings, side by side, and what a preview costs.

    .venv/bin/python benchmarks/preview_timing.py [--rate 44100] [--seconds 40] [--json]

- timing: a click every 0.7 s for `--seconds`, stretched at each ratio (0.71 to 1.41 is the range a
  query result's stretch takes, double or half time being chosen when closer; 0.5 and 2 beyond it),
  transpose 0 and 5. Each click's peak is found within 100 ms of where it belongs; `drift` is the
  slope of the error over the output (ms per second: how far apart the stem and the mix grow over a
  long mix), `worst` the largest error anywhere, both at the worst ratio.
- pitch: a 220 Hz and a 440 Hz tone, 8 s, stretched (0.7, 1.2, 1.4) and transposed (0, +3, -5); the
  frequency from the zero crossings of the middle 2 s, against the asked one, in cents (worst).
- speed: seconds of CPU for a preview of a 60 s stereo mix at `--rate` with a 60 s stem at stretch 1.2,
  transpose -2 (stemserver.preview.render_preview, the product's path).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pedalboard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit  # noqa: E402

from stemserver.preview import render_preview  # noqa: E402

SETTINGS = {
    "R3 (pedalboard's default)": {},
    "R2, crisp transients": {"high_quality": False},
    "R2, mixed transients (previews)": {"high_quality": False, "transient_mode": "mixed"},
}
RATIOS = (0.5, 0.71, 0.8, 0.9, 0.95, 1.05, 1.1, 1.2, 1.3, 1.41, 2.0)
PERIOD_S = 0.7


def click_track(seconds: float, rate: int) -> np.ndarray:
    out = np.zeros(int(seconds * rate), np.float32)
    t = np.arange(int(0.02 * rate)) / rate
    click = (0.5 * np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.004)).astype(np.float32)
    for start in np.arange(0.3, seconds - 0.1, PERIOD_S):
        i = int(start * rate)
        out[i : i + len(click)] = click
    return out


def click_errors_ms(stretched: np.ndarray, rate: int, stretch: float) -> tuple[np.ndarray, np.ndarray]:
    """Each click's output time (s) and its error (ms): the envelope's peak near where it belongs."""
    envelope = np.abs(stretched)
    times, errors = [], []
    for start in np.arange(0.3, len(stretched) * stretch / rate - 0.2, PERIOD_S):
        expected = int(start / stretch * rate)
        lo, hi = max(0, expected - int(0.1 * rate)), min(len(envelope), expected + int(0.1 * rate))
        if hi - lo < int(0.15 * rate):
            break
        peak = lo + int(np.argmax(envelope[lo:hi]))
        times.append(expected / rate)
        errors.append((peak - expected) / rate * 1e3)
    return np.asarray(times), np.asarray(errors)


def zero_crossing_hz(samples: np.ndarray, rate: int) -> float:
    """Upward zero crossings, each placed between its two samples: the mean period's inverse."""
    rising = np.flatnonzero((samples[:-1] < 0) & (samples[1:] >= 0))
    exact = rising + samples[rising] / (samples[rising] - samples[rising + 1])
    return (len(exact) - 1) / ((exact[-1] - exact[0]) / rate)


def timing(options: dict, rate: int, seconds: float) -> dict:
    track = click_track(seconds, rate)[None]
    worst_drift, worst_error = 0.0, 0.0
    for stretch in RATIOS:
        for transpose in (0, 5):
            out = pedalboard.time_stretch(track, float(rate), stretch_factor=stretch,
                                          pitch_shift_in_semitones=transpose, **options)[0]
            times, errors = click_errors_ms(out, rate, stretch)
            drift = float(np.polyfit(times, errors, 1)[0])
            worst_drift = max(worst_drift, abs(drift))
            if 0.7 <= stretch <= 1.42:
                worst_error = max(worst_error, float(np.abs(errors).max()))
    return {"drift_ms_per_s": round(worst_drift, 2), "worst_ms_in_result_range": round(worst_error, 1)}


def pitch(options: dict, rate: int) -> float:
    worst = 0.0
    for hz in (220.0, 440.0):
        tone = (0.5 * np.sin(2 * np.pi * hz * np.arange(8 * rate) / rate)).astype(np.float32)[None]
        for stretch in (0.7, 1.2, 1.4):
            for transpose in (0, 3, -5):
                out = pedalboard.time_stretch(tone, float(rate), stretch_factor=stretch,
                                              pitch_shift_in_semitones=transpose, **options)[0]
                middle = out[len(out) // 2 - rate : len(out) // 2 + rate]
                cents = 1200 * np.log2(zero_crossing_hz(middle, rate) / (hz * 2 ** (transpose / 12)))
                worst = max(worst, abs(float(cents)))
    return round(worst, 1)


def preview_speed(rate: int) -> float:
    rng = np.random.default_rng(0)
    mix = (0.1 * rng.standard_normal((60 * rate, 2))).astype(np.float32)
    stem = (0.1 * rng.standard_normal((60 * rate, 2))).astype(np.float32)
    start = time.process_time()
    render_preview(mix, stem, rate, offset_s=10.0, stretch=1.2, transpose=-2)
    return round(time.process_time() - start, 2)


def run(args: argparse.Namespace) -> dict:
    rows = {name: {**timing(options, args.rate, args.seconds), "pitch_cents": pitch(options, args.rate)}
            for name, options in SETTINGS.items()}
    return {"rate": args.rate, "seconds": args.seconds, "settings": rows,
            "preview_60s_stereo_cpu_s": preview_speed(args.rate)}


def print_table(result: dict) -> None:
    print(f"pedalboard {pedalboard.__version__}, {result['rate']} Hz, clicks over {result['seconds']:g} s")
    print(f"{'setting':34} {'drift ms/s':>10} {'worst ms':>9} {'pitch cents':>11}")
    for name, row in result["settings"].items():
        print(f"{name:34} {row['drift_ms_per_s']:10.2f} {row['worst_ms_in_result_range']:9.1f} "
              f"{row['pitch_cents']:11.1f}")
    print(f"a 60 s stereo preview (stretch 1.2, transpose -2): {result['preview_60s_stereo_cpu_s']} s of CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=44_100)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(run(args), args.json, print_table)


if __name__ == "__main__":
    main()
