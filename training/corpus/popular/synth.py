"""Synthesised voices: a recipe turns a part's notes into mono audio, with parameters drawn per song.

A Timbre of kind "synth" names a recipe in RECIPES; its `params` override the recipe's defaults
(DEFAULTS), which are the recipe's own sound. Voices are rendered one note at a time with whole
array operations (dsp.py), so the cost grows with the notes' total length, not with Python steps
per sample. Randomness (noise, oscillator start phases) comes only from the `rng` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from stemserver_training.corpus.popular import dsp
from stemserver_training.corpus.popular.score import Note

Recipe = Callable[[Sequence[Note], float, dict, int, int, np.random.Generator], np.ndarray]

# Formants of sung vowels (a bass-baritone's; Hz, dB): the "aah" and "ooh" of a synth choir.
VOWELS = {
    "a": ((800, 0), (1150, -6), (2900, -32), (3900, -20)),
    "e": ((400, 0), (1600, -24), (2700, -30), (3300, -35)),
    "i": ((350, 0), (1700, -20), (2700, -30), (3700, -36)),
    "o": ((450, 0), (800, -11), (2830, -22), (3500, -22)),
    "u": ((325, 0), (700, -16), (2530, -35), (3500, -40)),
}

_SUBTRACTIVE = dict(wave="saw", width=0.5, voices=1, detune=0.0, sub=0.0, octave=0, vibrato=0.0,
                    cutoff=1500.0, resonance=0.9, env_amount=2.0, keytrack=0.5,
                    f_attack=0.003, f_decay=0.35, f_sustain=0.2,
                    attack=0.005, decay=0.6, sustain=0.7, release=0.15,
                    mono=False, glide=None, accent=None, vowel=None, drive=1.0)

DEFAULTS: dict[str, dict] = {
    "subtractive": _SUBTRACTIVE,
    "pluck": {**_SUBTRACTIVE, "wave": "pulse", "width": 0.35, "cutoff": 500.0, "env_amount": 3.5,
              "f_decay": 0.25, "f_sustain": 0.0, "decay": 0.7, "sustain": 0.0, "release": 0.1},
    "supersaw": {**_SUBTRACTIVE, "voices": 7, "detune": 28.0, "cutoff": 4000.0, "env_amount": 0.0,
                 "attack": 0.01, "sustain": 0.8, "release": 0.3},
    "pad": {**_SUBTRACTIVE, "voices": 5, "detune": 12.0, "cutoff": 1800.0, "env_amount": 0.0, "resonance": 0.7,
            "attack": 0.6, "decay": 2.0, "sustain": 0.8, "release": 1.2, "vibrato": 8.0},
    "acid": {**_SUBTRACTIVE, "cutoff": 220.0, "resonance": 9.0, "env_amount": 3.5, "keytrack": 0.3,
             "f_decay": 0.25, "f_sustain": 0.0, "attack": 0.002, "decay": 0.4, "sustain": 0.5, "release": 0.02,
             "mono": True, "accent": 100, "drive": 2.0},
    "fm": dict(ratio=1.0, index=1.8, index_decay=0.8, attack=0.002, decay=2.5, sustain=0.0, release=0.25,
               octave=0),
    "bass808": dict(decay=1.8, sustain=0.5, release=0.08, drive=2.0, punch=7.0, punch_time=0.03,
                    glide=None, octave=0, click=0.2),
    "kick808": dict(start_hz=160.0, end_hz=48.0, sweep=0.05, decay=0.6, drive=2.0, click=0.3),
    "hats": dict(cutoff=6000.0, closed=0.06, open=0.45, metallic=0.4),
    "drum_machine": dict(start_hz=160.0, end_hz=48.0, sweep=0.05, decay=0.6, drive=2.0, click=0.3,
                         cutoff=6000.0, closed=0.06, open=0.45, metallic=0.4,
                         snare_hz=185.0, snare_decay=0.25, snare_tone=0.4, clap_decay=0.3, tom_decay=0.45),
    "riser": dict(start_hz=300.0, end_hz=6000.0, resonance=2.0, tone=0.3, semitones=24.0, curve=2.0, down=False),
    "impact": dict(start_hz=70.0, end_hz=32.0, decay=2.2, noise=0.5, noise_decay=0.5, cutoff=2500.0),
    "noise": dict(cutoff=1200.0, resonance=1.0, lfo_hz=0.2, depth=1.5, attack=0.5, release=1.0),
}
DEFAULTS["sweep"] = {**DEFAULTS["riser"], "tone": 0.0, "down": True}


def render_synth(name: str, params: dict, notes: Sequence[Note], seconds_per_beat: float, sample_rate: int,
                 n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """The part played by recipe `name` (a key of RECIPES) with `params` over its defaults."""
    if name not in RECIPES:
        raise ValueError(f"unknown synth recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    unknown = set(params) - set(DEFAULTS[name])
    if unknown:
        raise ValueError(f"synth recipe {name!r} has no parameter {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(sorted(DEFAULTS[name]))}")
    audio = RECIPES[name](notes, seconds_per_beat, {**DEFAULTS[name], **params}, sample_rate, n_samples, rng)
    return audio.astype(np.float32)


def _span(note: Note, spb: float, sr: int) -> tuple[int, int]:
    """(first sample, samples held) of a note."""
    return round(note.start * spb * sr), max(1, round(note.length * spb * sr))


def _mono_gates(notes: Sequence[Note], spb: float, sr: int) -> list[tuple[Note, int, int, int | None]]:
    """(note, start, gate, cut): a monophonic line, where each note stops at the next one's start."""
    ordered = sorted(notes, key=lambda n: n.start)
    out = []
    for i, note in enumerate(ordered):
        at, gate = _span(note, spb, sr)
        cut = round(ordered[i + 1].start * spb * sr) - at if i + 1 < len(ordered) else None
        out.append((note, at, gate if cut is None else max(1, min(gate, cut)), cut))
    return out


def _voices(notes: Sequence[Note], spb: float, sr: int, mono: bool) -> list[tuple[Note, int, int, int | None]]:
    if mono:
        return _mono_gates(notes, spb, sr)
    return [(note, *_span(note, spb, sr), None) for note in notes]


def subtractive(notes, spb, p, sr, n, rng) -> np.ndarray:
    """Oscillators (saw/square/pulse, detuned unison, sub octave) -> resonant low-pass with its
    own envelope -> amplitude envelope. Also pluck, supersaw, pad and acid (DEFAULTS)."""
    out = np.zeros(n)
    voices = int(p["voices"])
    spread = np.linspace(-1.0, 1.0, voices) if voices > 1 else np.zeros(1)
    for note, at, gate, cut in _voices(notes, spb, sr, p["mono"]):
        length = gate + int(p["release"] * sr)
        accent = p["accent"] is not None and note.velocity >= p["accent"]
        glide_s = p["glide"] if p["glide"] is not None else gate / sr
        pitch = note.pitch + 12 * p["octave"]
        glide_to = None if note.glide_to is None else note.glide_to + 12 * p["octave"]
        freq = dsp.glide_hz(pitch, glide_to, length, sr, glide_s)
        if p["vibrato"]:
            freq = freq * 2 ** (p["vibrato"] / 1200 * np.sin(2 * np.pi * 5.0 * np.arange(length) / sr
                                                             + rng.uniform(0, 2 * np.pi)))
        tone = np.zeros(length)
        for offset in spread:
            f = freq * 2 ** (offset * p["detune"] / 1200)
            tone += dsp.oscillator(p["wave"], dsp.phase(f, length, sr, rng.random()), f, sr, p["width"])
        tone /= np.sqrt(voices)
        if p["sub"]:
            tone += p["sub"] * np.sin(2 * np.pi * dsp.phase(freq / 2, length, sr))
        base = p["cutoff"] * (freq[0] / 261.6) ** p["keytrack"]
        env_amount = p["env_amount"] * (0.6 + 0.4 * note.velocity / 127) + (1.5 if accent else 0.0)
        if env_amount:
            f_env = dsp.adsr(length, gate, sr, p["f_attack"], p["f_decay"] * (0.6 if accent else 1.0),
                             p["f_sustain"], p["release"])
            cutoff = base * 2 ** (env_amount * f_env)
        else:
            cutoff = base
        y = dsp.biquad(tone, "lowpass", cutoff, p["resonance"], sr)
        if p["drive"] != 1.0:
            y = dsp.saturate(y, p["drive"])
        y *= dsp.adsr(length, gate, sr, p["attack"], p["decay"], p["sustain"], p["release"])
        y *= (note.velocity / 127) * (1.6 if accent else 1.0)
        dsp.add_at(out, dsp.fade_cut(y, cut, sr), at)
    if p["vowel"]:
        out = formants(out, p["vowel"], sr)
    return out


def formants(x: np.ndarray, vowel: str, sr: int) -> np.ndarray:
    """`x` through the parallel band-passes of a sung vowel (VOWELS)."""
    if vowel not in VOWELS:
        raise ValueError(f"unknown vowel {vowel!r}; known: {', '.join(VOWELS)}")
    bands = [dsp.biquad(x, "bandpass", freq, freq / 80.0, sr) * 10 ** (db / 20) for freq, db in VOWELS[vowel]]
    return 3.0 * np.sum(bands, axis=0)


def fm(notes, spb, p, sr, n, rng) -> np.ndarray:
    """Two-operator FM: a sine modulator at `ratio` times the pitch, its index decaying (electric
    piano at ratio 1, bells at non-integer ratios such as 3.5)."""
    out = np.zeros(n)
    for note, at, gate, _ in _voices(notes, spb, sr, False):
        length = gate + int(p["release"] * sr)
        freq = float(dsp.midi_hz(note.pitch + 12 * p["octave"]))
        carrier = dsp.phase(freq, length, sr)
        index = p["index"] * (0.5 + note.velocity / 254) * dsp.decay(length, sr, p["index_decay"])
        y = np.sin(2 * np.pi * carrier + index * np.sin(2 * np.pi * carrier * p["ratio"]))
        y *= dsp.adsr(length, gate, sr, p["attack"], p["decay"], p["sustain"], p["release"]) * note.velocity / 127
        dsp.add_at(out, y, at)
    return out


def bass808(notes, spb, p, sr, n, rng) -> np.ndarray:
    """The 808 bass: a sine with a short downward pitch 'punch', a slide to `glide_to`, a long
    decay and tanh saturation; monophonic."""
    out = np.zeros(n)
    for note, at, gate, cut in _mono_gates(notes, spb, sr):
        length = gate + int(p["release"] * sr)
        glide_s = p["glide"] if p["glide"] is not None else gate / sr
        pitch = note.pitch + 12 * p["octave"]
        glide_to = None if note.glide_to is None else note.glide_to + 12 * p["octave"]
        freq = dsp.glide_hz(pitch, glide_to, length, sr, glide_s)
        freq = freq * 2 ** (p["punch"] / 12 * dsp.decay(length, sr, p["punch_time"]))
        y = np.sin(2 * np.pi * dsp.phase(freq, length, sr))
        y = dsp.saturate(y, p["drive"])
        y *= dsp.adsr(length, gate, sr, 0.001, p["decay"], p["sustain"], p["release"])
        click = int(0.004 * sr)
        y[:click] += p["click"] * rng.standard_normal(min(click, length)) * np.linspace(1, 0, min(click, length))
        dsp.add_at(out, dsp.fade_cut(y * note.velocity / 127, cut, sr), at)
    return out


# --- drum voices: one hit each, (velocity, params, sample rate, rng) -> samples --------------------

def kick(velocity: int, p: dict, sr: int, rng: np.random.Generator) -> np.ndarray:
    length = int(p["decay"] * sr)
    freq = p["end_hz"] + (p["start_hz"] - p["end_hz"]) * dsp.decay(length, sr, p["sweep"] * dsp.T60 / 2)
    y = dsp.saturate(np.sin(2 * np.pi * dsp.phase(freq, length, sr)), p["drive"]) * dsp.decay(length, sr, p["decay"])
    click = min(length, int(0.003 * sr))
    y[:click] += p["click"] * rng.standard_normal(click)
    return y * velocity / 127


def hat(velocity: int, p: dict, sr: int, rng: np.random.Generator, open_: bool = False) -> np.ndarray:
    """Filtered noise plus a cluster of detuned squares (the 808's metallic hat)."""
    seconds = p["open"] if open_ else p["closed"]
    length = int(seconds * sr)
    noise = rng.standard_normal(length)
    cycles = np.arange(length) / sr
    metal = sum(np.sign(np.sin(2 * np.pi * f * cycles + rng.uniform(0, 6.3)))
                for f in (205.3, 304.4, 369.6, 522.7, 540.0, 800.0))
    y = dsp.biquad(noise + p["metallic"] * metal / 3, "highpass", p["cutoff"], 0.8, sr)
    return y * dsp.decay(length, sr, seconds) * velocity / 127 * 0.6


def snare(velocity: int, p: dict, sr: int, rng: np.random.Generator) -> np.ndarray:
    length = int(p["snare_decay"] * sr)
    body = np.sin(2 * np.pi * dsp.phase(p["snare_hz"] * (1 + 0.5 * dsp.decay(length, sr, 0.02)), length, sr))
    noise = dsp.biquad(rng.standard_normal(length), "bandpass", 3000.0, 0.7, sr)
    y = p["snare_tone"] * body * dsp.decay(length, sr, p["snare_decay"] * 0.5) + noise * dsp.decay(
        length, sr, p["snare_decay"])
    return y * velocity / 127


def clap(velocity: int, p: dict, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Four noise bursts 10 ms apart, then a short tail: the many hands of an analogue clap."""
    length = int(p["clap_decay"] * sr)
    env = 0.6 * dsp.decay(length, sr, p["clap_decay"])
    burst = int(0.01 * sr)
    for k in range(4):
        env[k * burst:(k + 1) * burst] = np.maximum(env[k * burst:(k + 1) * burst],
                                                    dsp.decay(min(burst, length - k * burst), sr, 0.012))
    return dsp.biquad(rng.standard_normal(length), "bandpass", 1200.0, 1.2, sr) * env * velocity / 127 * 2


def tom(velocity: int, pitch: int, p: dict, sr: int, rng: np.random.Generator) -> np.ndarray:
    length = int(p["tom_decay"] * sr)
    base = 80.0 * 2 ** ((pitch - 41) / 9)  # GM toms 41..50 spread over about an octave
    freq = base * (1 + 0.6 * dsp.decay(length, sr, 0.08))
    return np.sin(2 * np.pi * dsp.phase(freq, length, sr)) * dsp.decay(length, sr, p["tom_decay"]) * velocity / 127


def cymbal(velocity: int, p: dict, sr: int, rng: np.random.Generator, seconds: float, cutoff: float) -> np.ndarray:
    length = int(seconds * sr)
    y = dsp.biquad(rng.standard_normal(length), "highpass", cutoff, 0.7, sr)
    return y * dsp.decay(length, sr, seconds) * velocity / 127 * 0.4


def cowbell(velocity: int, p: dict, sr: int, rng: np.random.Generator) -> np.ndarray:
    length = int(0.3 * sr)
    t = np.arange(length) / sr
    y = np.sign(np.sin(2 * np.pi * 540 * t)) + np.sign(np.sin(2 * np.pi * 800 * t))
    return dsp.biquad(y, "bandpass", 700.0, 2.0, sr) * dsp.decay(length, sr, 0.3) * velocity / 127


def _drum_hit(pitch: int, velocity: int, p: dict, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The drum machine's sound for a General MIDI percussion key."""
    if pitch in (35, 36):
        return kick(velocity, p, sr, rng)
    if pitch in (38, 40):
        return snare(velocity, p, sr, rng)
    if pitch == 39:
        return clap(velocity, p, sr, rng)
    if pitch in (42, 44):
        return hat(velocity, p, sr, rng)
    if pitch == 46:
        return hat(velocity, p, sr, rng, open_=True)
    if pitch in (41, 43, 45, 47, 48, 50):
        return tom(velocity, pitch, p, sr, rng)
    if pitch in (49, 52, 55, 57):
        return cymbal(velocity, p, sr, rng, 1.8, 4000.0)
    if pitch in (51, 53, 59):
        return cymbal(velocity, p, sr, rng, 0.9, 5500.0)
    if pitch == 56:
        return cowbell(velocity, p, sr, rng)
    # rim shot, claves, shakers, congas and the rest: a short band of noise
    return cymbal(velocity, p, sr, rng, 0.08, 2500.0) * 1.5


HAT_KEYS = (42, 44, 46)  # closed, pedal, open: one choke group


def _hits(voice: Callable[[Note], np.ndarray], notes, spb, sr, n) -> np.ndarray:
    return dsp.mix_hits([(round(note.start * spb * sr), voice(note), 0 if note.pitch in HAT_KEYS else None)
                         for note in notes], n, sr)


def drum_machine(notes, spb, p, sr, n, rng) -> np.ndarray:
    """An analogue-style drum machine playing General MIDI percussion keys."""
    return _hits(lambda note: _drum_hit(note.pitch, note.velocity, p, sr, rng), notes, spb, sr, n)


def kick808(notes, spb, p, sr, n, rng) -> np.ndarray:
    """Every note an 808 kick (a sine falling from start_hz to end_hz)."""
    return _hits(lambda note: kick(note.velocity, p, sr, rng), notes, spb, sr, n)


def hats(notes, spb, p, sr, n, rng) -> np.ndarray:
    """Noise hats: key 46 open, any other key closed; a closed hat chokes an open one."""
    return _hits(lambda note: hat(note.velocity, p, sr, rng, open_=note.pitch == 46), notes, spb, sr, n)


# --- effects voices ------------------------------------------------------------------------------

def riser(notes, spb, p, sr, n, rng) -> np.ndarray:
    """A noise band sweeping from start_hz to end_hz over the note (reversed if `down`: a sweep
    down), swelling as it goes, with a saw rising `semitones` from the note's pitch."""
    out = np.zeros(n)
    for note in notes:
        at, length = _span(note, spb, sr)
        ramp = np.arange(length) / length
        if p["down"]:
            ramp = 1.0 - ramp
        centre = p["start_hz"] * (p["end_hz"] / p["start_hz"]) ** ramp
        y = dsp.biquad(rng.standard_normal(length), "bandpass", centre, p["resonance"], sr)
        if p["tone"]:
            f = dsp.midi_hz(note.pitch + p["semitones"] * ramp)
            y += p["tone"] * dsp.saw(dsp.phase(f, length, sr), f, sr)
        y *= ramp ** p["curve"] * note.velocity / 127
        dsp.add_at(out, y, at)
    return out


def impact(notes, spb, p, sr, n, rng) -> np.ndarray:
    """A hit: a low sine boom falling in pitch, and a burst of low-passed noise."""
    out = np.zeros(n)
    for note in notes:
        at = round(note.start * spb * sr)
        length = int(p["decay"] * sr)
        freq = p["end_hz"] + (p["start_hz"] - p["end_hz"]) * dsp.decay(length, sr, 0.4)
        boom = np.sin(2 * np.pi * dsp.phase(freq, length, sr)) * dsp.decay(length, sr, p["decay"])
        noise = dsp.biquad(rng.standard_normal(length), "lowpass", p["cutoff"], 0.7, sr)
        y = dsp.saturate(boom + p["noise"] * noise * dsp.decay(length, sr, p["noise_decay"]), 1.5)
        dsp.add_at(out, y * note.velocity / 127, at)
    return out


def noise(notes, spb, p, sr, n, rng) -> np.ndarray:
    """A bed of low-passed noise whose cutoff drifts with a slow LFO, shaped by each note."""
    out = np.zeros(n)
    for note in notes:
        at, gate = _span(note, spb, sr)
        length = gate + int(p["release"] * sr)
        lfo = np.sin(2 * np.pi * p["lfo_hz"] * np.arange(length) / sr + rng.uniform(0, 2 * np.pi))
        y = dsp.biquad(rng.standard_normal(length), "lowpass", p["cutoff"] * 2 ** (p["depth"] * lfo),
                       p["resonance"], sr)
        y *= dsp.adsr(length, gate, sr, p["attack"], 1.0, 1.0, p["release"]) * note.velocity / 127
        dsp.add_at(out, y, at)
    return out


RECIPES: dict[str, Recipe] = {
    "subtractive": subtractive, "pluck": subtractive, "supersaw": subtractive, "pad": subtractive,
    "acid": subtractive, "fm": fm, "bass808": bass808, "kick808": kick808, "hats": hats,
    "drum_machine": drum_machine, "riser": riser, "sweep": riser, "impact": impact, "noise": noise,
}
