"""Per-stem production: an effects chain drawn per song from the part's role, applied with pedalboard.

A chain is a list of dicts, {"name": ..., parameters...}, in processing order: what the manifest
records is exactly what was applied (parameters are rounded before use). Sidechain ducking is not
a pedalboard plugin: its gain curve is computed here from the song's kick notes (the times a
producer's sidechain compressor would react to), so it ducks exactly under every kick.

pedalboard (Spotify; GPL-3.0) is used as a library by the corpus builder only: it does not ship
with stemserver and the audio it processes carries no licence of its.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pedalboard

from stemserver_training.corpus.popular.score import Part, Song

KICK_KEYS = (35, 36)
# Genres whose basses and pads pump with the kick; elsewhere ducking is drawn rarely.
PUMPING_GENRES = ("house", "techno", "trance", "edm", "drum", "dnb", "dubstep", "future", "synthwave", "garage")
DUCKED_ROLES = ("bass", "chords", "arp", "vocal")


def is_kick(part: Part) -> bool:
    return part.role == "drums" and "kick" in part.name.lower()


def kick_times(song: Song) -> list[float]:
    """Seconds of every kick of the song (GM keys 35/36 in its drum parts), sorted."""
    spb = 60.0 / song.bpm
    return sorted({round(n.start * spb, 6) for p in song.parts if p.role == "drums" for n in p.notes
                   if n.pitch in KICK_KEYS})


def _u(rng: np.random.Generator, low: float, high: float, digits: int = 2) -> float:
    return round(float(rng.uniform(low, high)), digits)


def draw_chain(part: Part, song: Song, rng: np.random.Generator) -> list[dict]:
    """The production of one stem, drawn for its role (and genre, for sidechain ducking)."""
    role, kick = part.role, is_kick(part)
    low_end = role == "bass" or kick
    chain: list[dict] = []
    if rng.random() < 0.8:
        chain.append({"name": "highpass", "cutoff_hz": _u(rng, 20, 40, 0) if low_end else _u(rng, 60, 250, 0)})
    if rng.random() < 0.5:
        chain.append({"name": "low_shelf", "cutoff_hz": _u(rng, 80, 250, 0), "gain_db": _u(rng, -4, 4, 1)})
    if rng.random() < 0.5:
        chain.append({"name": "peak", "cutoff_hz": _u(rng, 300, 5000, 0), "gain_db": _u(rng, -5, 5, 1),
                      "q": _u(rng, 0.5, 2.0)})
    if rng.random() < (0.8 if role in ("drums", "bass") else 0.5):
        chain.append({"name": "compressor", "threshold_db": _u(rng, -28, -10, 1), "ratio": _u(rng, 2, 6, 1),
                      "attack_ms": _u(rng, 1, 30, 1), "release_ms": _u(rng, 50, 300, 0)})
    if rng.random() < (0.35 if role in ("bass", "lead", "drums") else 0.1):
        chain.append({"name": "distortion", "drive_db": _u(rng, 3, 12, 1)})
    if role in ("chords", "lead", "arp", "vocal") and rng.random() < 0.35:
        chain.append({"name": "chorus", "rate_hz": _u(rng, 0.2, 2.0), "depth": _u(rng, 0.1, 0.5),
                      "mix": _u(rng, 0.2, 0.5)})
    if role in ("lead", "arp", "fx", "vocal", "chords") and rng.random() < 0.4:
        beats = float(rng.choice([0.5, 0.75, 1.0, 1.5]))
        chain.append({"name": "delay", "beats": beats, "delay_s": round(beats * 60.0 / song.bpm, 4),
                      "feedback": _u(rng, 0.15, 0.5), "mix": _u(rng, 0.1, 0.35)})
    reverb_p = {"bass": 0.05, "drums": 0.1 if kick else 0.35}.get(role, 0.7)
    if rng.random() < reverb_p:
        chain.append({"name": "reverb", "room_size": _u(rng, 0.2, 0.9), "damping": _u(rng, 0.2, 0.8),
                      "wet_level": _u(rng, 0.08, 0.35), "dry_level": _u(rng, 0.75, 1.0)})
    pumping = any(g in song.genre.lower() for g in PUMPING_GENRES)
    if role in DUCKED_ROLES and kick_times(song) and rng.random() < (0.7 if pumping else 0.1):
        chain.append({"name": "sidechain", "depth_db": _u(rng, 3, 12, 1), "attack_ms": _u(rng, 2, 10, 1),
                      "release_ms": _u(rng, 80, 250, 0)})
    return chain


def _plugin(effect: dict) -> pedalboard.Plugin:
    name = effect["name"]
    if name == "highpass":
        return pedalboard.HighpassFilter(cutoff_frequency_hz=effect["cutoff_hz"])
    if name == "low_shelf":
        return pedalboard.LowShelfFilter(cutoff_frequency_hz=effect["cutoff_hz"], gain_db=effect["gain_db"])
    if name == "peak":
        return pedalboard.PeakFilter(cutoff_frequency_hz=effect["cutoff_hz"], gain_db=effect["gain_db"],
                                     q=effect["q"])
    if name == "compressor":
        return pedalboard.Compressor(threshold_db=effect["threshold_db"], ratio=effect["ratio"],
                                     attack_ms=effect["attack_ms"], release_ms=effect["release_ms"])
    if name == "distortion":
        return pedalboard.Distortion(drive_db=effect["drive_db"])
    if name == "chorus":
        return pedalboard.Chorus(rate_hz=effect["rate_hz"], depth=effect["depth"], mix=effect["mix"])
    if name == "delay":
        return pedalboard.Delay(delay_seconds=effect["delay_s"], feedback=effect["feedback"], mix=effect["mix"])
    if name == "reverb":
        return pedalboard.Reverb(room_size=effect["room_size"], damping=effect["damping"],
                                 wet_level=effect["wet_level"], dry_level=effect["dry_level"])
    raise ValueError(f"unknown effect {name!r}")


def duck_gain(n_samples: int, sample_rate: int, kicks: Sequence[float], depth_db: float, attack_ms: float,
              release_ms: float) -> np.ndarray:
    """The gain curve of a sidechain compressor keyed by `kicks` (seconds): down `depth_db` within
    `attack_ms` of each kick, back up with a `release_ms` time constant."""
    starts = np.round(np.asarray(kicks) * sample_rate).astype(np.int64)
    if len(starts) == 0:
        return np.ones(n_samples, dtype=np.float32)
    idx = np.arange(n_samples)
    last = np.searchsorted(starts, idx, side="right") - 1
    since = (idx - starts[np.maximum(last, 0)]) / sample_rate
    attack = np.clip(since / max(attack_ms / 1000, 1e-4), 0.0, 1.0)
    duck = np.where(last >= 0, depth_db * attack * np.exp(-since / max(release_ms / 1000, 1e-4)), 0.0)
    return (10 ** (-duck / 20)).astype(np.float32)


def apply_chain(audio: np.ndarray, chain: Sequence[dict], sample_rate: int, kicks: Sequence[float] = ()) -> np.ndarray:
    """`audio` (mono) through `chain`, in order; float32, as long as it came in."""
    out = np.asarray(audio, dtype=np.float32)[np.newaxis, :]
    pending: list[pedalboard.Plugin] = []
    for effect in [*chain, None]:
        if effect is not None and effect["name"] != "sidechain":
            pending.append(_plugin(effect))
            continue
        if pending:
            out = pedalboard.Pedalboard(pending)(out, sample_rate)
            pending = []
        if effect is not None:
            out = out * duck_gain(out.shape[1], sample_rate, kicks, effect["depth_db"], effect["attack_ms"],
                                  effect["release_ms"])
    return out[0].astype(np.float32)
