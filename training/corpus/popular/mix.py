"""Mixing: every stem to a level typical of its role, then one master gain so the mix does not clip.

A stem's level is its RMS while it plays (frames within 40 dB of its loudest), so a part that
rests half the song is not pushed up for its silence. The targets follow a producer's habit
(kick and bass loudest, pads and effects well under them), jittered per song. The master gain
is applied to every stem as to the mix, so the stems still sum to the mix exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stemserver_training.corpus.popular.score import Part, Song

# dBFS RMS while playing, before the master gain
ROLE_TARGET_DB = {"drums": -15.0, "bass": -16.0, "chords": -21.0, "arp": -23.0, "lead": -19.0, "fx": -26.0,
                  "vocal": -21.0}
PIECE_TARGET_DB = {"kick": -14.0, "snare": -17.0, "clap": -18.0, "hat": -25.0, "hats": -25.0, "perc": -25.0,
                   "cymbal": -26.0, "toms": -22.0}
# Effects by kind: a noise bed plays for bars on end and covers the whole spectrum, so it sits far
# under everything (at the role's -26 dB it was a median 9 dB under the mix, washing over intros);
# an impact is a short hit and may be louder.
FX_TARGET_DB = {"noise": -36.0, "sweep": -30.0, "riser": -28.0, "impact": -24.0}
JITTER_DB = 2.0
PEAK_DB = -1.0  # the mix and every stem peak at or below this
ACTIVE_DB = 40.0
FRAME = 1024


def target_db(part: Part) -> float:
    """The role's level; a drum piece (a part named kick, snare, hats...) or an effect (riser, noise...)
    has its own."""
    own = {"drums": PIECE_TARGET_DB, "fx": FX_TARGET_DB}.get(part.role, {})
    for kind, db in own.items():
        if part.name.lower().startswith(kind):
            return db
    return ROLE_TARGET_DB.get(part.role, -20.0)


def active_rms_db(audio: np.ndarray) -> float | None:
    """RMS in dBFS over the frames within ACTIVE_DB of the loudest one; None for digital silence."""
    usable = len(audio) // FRAME * FRAME
    frames = audio[:usable].reshape(-1, FRAME) if usable else audio[np.newaxis, :]
    power = (frames.astype(np.float64) ** 2).mean(axis=1)
    if power.max() <= 1e-20:
        return None
    active = power[power >= power.max() * 10 ** (-ACTIVE_DB / 10)]
    return float(10 * np.log10(active.mean()))


def mix_song(song: Song, stems: Mapping[str, np.ndarray],
             rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """(mix, levelled stems, record): each stem at its role's level (drawn within +-JITTER_DB), then
    all scaled by one master gain that puts the loudest of the mix and the stems at PEAK_DB or below.
    Silent stems are kept silent. `stems` are named by their parts' names in `song`. The record
    (for the manifest) gives every gain in dB."""
    parts = {part.name: part for part in song.parts}
    levelled: dict[str, np.ndarray] = {}
    record: dict = {"stems": {}}
    for name, audio in stems.items():
        level = active_rms_db(audio)
        target = round(target_db(parts[name]) + float(rng.uniform(-JITTER_DB, JITTER_DB)), 2)
        gain_db = 0.0 if level is None else target - level
        levelled[name] = (audio.astype(np.float64) * 10 ** (gain_db / 20))
        record["stems"][name] = {"target_db": target, "gain_db": round(gain_db, 2)}
    n = max((len(a) for a in levelled.values()), default=0)
    mix = np.zeros(n)
    for audio in levelled.values():
        mix[: len(audio)] += audio
    peak = max([float(np.abs(mix).max(initial=0.0))] + [float(np.abs(a).max(initial=0.0)) for a in levelled.values()])
    master = min(1.0, 10 ** (PEAK_DB / 20) / peak) if peak > 0 else 1.0
    out = {name: (audio * master).astype(np.float32) for name, audio in levelled.items()}
    total = np.zeros(n, dtype=np.float32)
    for audio in out.values():
        total[: len(audio)] += audio
    record["master_gain_db"] = round(float(20 * np.log10(master)), 2)
    record["peak_dbfs"] = round(float(20 * np.log10(max(float(np.abs(total).max(initial=0.0)), 1e-12))), 2)
    return total, out, record
