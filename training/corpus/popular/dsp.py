"""The building blocks of the synthesised voices: band-limited oscillators, envelopes, filters.

Everything works on whole arrays: a note is rendered at once, and a filter whose cutoff moves is
run block by block (a fixed biquad per block, the state carried across), so no Python loop runs
per sample.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

FILTER_BLOCK = 128  # samples per block of a moving filter: 8 ms at 16 kHz, finer than an envelope's corner
T60 = 6.907755  # ln(1000): an exponential decay with time constant T / T60 falls 60 dB in T


def midi_hz(pitch: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def glide_hz(pitch: int, glide_to: int | None, n: int, sample_rate: int, glide_s: float) -> np.ndarray:
    """The frequency per sample of a note that slides (exponentially in Hz, linearly in pitch) to
    `glide_to` over `glide_s` seconds from its start, or holds `pitch`."""
    if glide_to is None or glide_to == pitch:
        return np.full(n, midi_hz(pitch))
    ramp = np.clip(np.arange(n) / max(1.0, glide_s * sample_rate), 0.0, 1.0)
    return midi_hz(pitch + (glide_to - pitch) * ramp)


def phase(freq: np.ndarray | float, n: int, sample_rate: int, start: float = 0.0) -> np.ndarray:
    """Cycles elapsed at each sample (not wrapped) of an oscillator at `freq` Hz."""
    step = np.broadcast_to(np.asarray(freq, dtype=np.float64) / sample_rate, (n,))
    return start + np.concatenate(([0.0], np.cumsum(step[:-1])))


def _step(freq: np.ndarray | float, n: int, sample_rate: int) -> np.ndarray:
    """Cycles per sample, per sample (at most half: Nyquist)."""
    return np.broadcast_to(np.minimum(np.asarray(freq, dtype=np.float64) / sample_rate, 0.5), (n,))


def _blep(t: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """PolyBLEP: the correction that removes most of the aliasing of a jump at t = 0 (mod 1).
    Only the samples next to a jump get one, so it is computed there alone."""
    out = np.zeros_like(t)
    rise = np.flatnonzero(t < dt)
    x = t[rise] / dt[rise]
    out[rise] = x + x - x * x - 1.0
    fall = np.flatnonzero(t > 1.0 - dt)
    x = (t[fall] - 1.0) / dt[fall]
    out[fall] = x * x + x + x + 1.0
    return out


def saw(cycles: np.ndarray, freq: np.ndarray | float, sample_rate: int) -> np.ndarray:
    t = cycles - np.floor(cycles)
    out = _blep(t, _step(freq, len(t), sample_rate))
    np.subtract(2.0 * t - 1.0, out, out=out)
    return out


def pulse(cycles: np.ndarray, freq: np.ndarray | float, sample_rate: int, width: float = 0.5) -> np.ndarray:
    t = cycles - np.floor(cycles)
    dt = _step(freq, len(t), sample_rate)
    shifted = t + (1.0 - width)
    shifted -= np.floor(shifted)
    return np.where(t < width, 1.0, -1.0) + _blep(t, dt) - _blep(shifted, dt)


def oscillator(wave: str, cycles: np.ndarray, freq: np.ndarray | float, sample_rate: int,
               width: float = 0.5) -> np.ndarray:
    if wave == "saw":
        return saw(cycles, freq, sample_rate)
    if wave == "square":
        return pulse(cycles, freq, sample_rate, 0.5)
    if wave == "pulse":
        return pulse(cycles, freq, sample_rate, width)
    if wave == "sine":
        return np.sin(2 * np.pi * cycles)
    if wave == "triangle":
        return 1.0 - 4.0 * np.abs((cycles + 0.25) % 1.0 - 0.5)
    raise ValueError(f"unknown wave {wave!r}: use saw, square, pulse, sine or triangle")


def adsr(n: int, gate: int, sample_rate: int, attack: float, decay: float, sustain: float,
         release: float) -> np.ndarray:
    """An envelope `n` samples long whose key is held for `gate` samples: linear attack, then
    exponential decay to `sustain` and exponential release (decay and release: seconds to -60 dB)."""
    t = np.arange(n) / sample_rate
    a = max(attack, 1e-4)
    held = np.where(t < a, t / a, sustain + (1.0 - sustain) * np.exp(-(t - a) * T60 / max(decay, 1e-4)))
    gate = min(max(gate, 1), n)
    out = held.copy()
    out[gate:] = held[gate - 1] * np.exp(-(t[gate:] - t[gate - 1]) * T60 / max(release, 1e-4))
    return out


def decay(n: int, sample_rate: int, seconds: float) -> np.ndarray:
    """An exponential fall from 1 that reaches -60 dB after `seconds`."""
    return np.exp(-np.arange(n) / sample_rate * T60 / max(seconds, 1e-4))


def _biquad(kind: str, freq: float, q: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook coefficients (b, a) of a low-pass, high-pass or band-pass (0 dB peak)."""
    w = 2 * np.pi * min(max(freq, 10.0), 0.45 * sample_rate) / sample_rate
    alpha, cos = np.sin(w) / (2 * max(q, 0.1)), np.cos(w)
    if kind == "lowpass":
        b = np.array([(1 - cos) / 2, 1 - cos, (1 - cos) / 2])
    elif kind == "highpass":
        b = np.array([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2])
    elif kind == "bandpass":
        b = np.array([alpha, 0.0, -alpha])
    else:
        raise ValueError(f"unknown filter {kind!r}")
    a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    return b / a[0], a / a[0]


def biquad(x: np.ndarray, kind: str, freq: float | np.ndarray, q: float, sample_rate: int) -> np.ndarray:
    """Filter `x`; `freq` is one frequency, or one per sample (then applied per FILTER_BLOCK)."""
    if np.ndim(freq) == 0:
        b, a = _biquad(kind, float(freq), q, sample_rate)
        return lfilter(b, a, x)
    out = np.empty(len(x))
    state = np.zeros(2)
    for start in range(0, len(x), FILTER_BLOCK):
        block = slice(start, start + FILTER_BLOCK)
        b, a = _biquad(kind, float(freq[start]), q, sample_rate)
        out[block], state = lfilter(b, a, x[block], zi=state)
    return out


def saturate(x: np.ndarray, drive: float) -> np.ndarray:
    """tanh saturation that keeps a quiet signal's level (drive 1: almost clean)."""
    drive = max(drive, 1e-3)
    return np.tanh(x * drive) / np.tanh(drive)


def add_at(out: np.ndarray, sound: np.ndarray, at: int) -> None:
    """Mix `sound` into `out` from sample `at`, cut at either end."""
    if at >= len(out) or at + len(sound) <= 0:
        return
    skip = max(0, -at)
    end = min(len(out), at + len(sound))
    out[max(at, 0):end] += sound[skip: skip + end - max(at, 0)]


def fade_cut(sound: np.ndarray, cut: int | None, sample_rate: int) -> np.ndarray:
    """`sound` ending at `cut` with a 3 ms fade (a note cut by the next one must not click)."""
    if cut is None or cut >= len(sound):
        return sound
    fade = min(cut, int(0.003 * sample_rate))
    out = sound[:cut].copy()
    if fade:
        out[cut - fade:] *= np.linspace(1.0, 0.0, fade)
    return out


def mix_hits(hits: list[tuple[int, np.ndarray, int | None]], n: int, sample_rate: int) -> np.ndarray:
    """Mix one-shot (start sample, sound, choke group) hits into `n` samples; a hit cuts the one
    still ringing in its group (None: no group), as a closed hi-hat silences an open one."""
    out = np.zeros(n)
    ringing: dict[int, tuple[int, np.ndarray]] = {}
    for at, sound, group in sorted(hits, key=lambda h: h[0]):
        if group is not None and group in ringing:
            before, previous = ringing[group]
            add_at(out, fade_cut(previous, at - before, sample_rate), before)
        if group is None:
            add_at(out, sound, at)
        else:
            ringing[group] = (at, sound)
    for at, sound in ringing.values():
        add_at(out, sound, at)
    return out
