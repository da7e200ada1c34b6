"""Musical facts about a piece of audio (tempo, key), when two of them agree, and how to make a
stem fit a mix (stretch, transpose).

Keys are written as producers and the corpus write them: a tonic and a mode ("F# minor", "Bb
major", "D dorian"; sample packs' "F#m", "Fmin", "C#maj" too). Two keys agree when they use the
same scale, i.e. share a parent major key: C major, A minor and D dorian all agree (the relative
of a key is the same scale from another tonic), C major and C minor do not. Tempi agree within
4 % (MIREX's Accuracy1 window), or at double or half time, which a producer plays along just as
well.

`stretch` is a playback-rate ratio (> 1 plays the stem faster), the convention of Rubber Band's
stretch factor in pedalboard and of a REAPER take's playrate. `transpose` is the semitones that
bring the stem's scale onto the mix's, the smaller way round (-5..+6).

Imports neither numpy nor dataclasses: the wire contract (stemserver.server.protocol) reads keys with it,
and the client that REAPER spawns on every "Find" imports that.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

PITCH_CLASSES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
# Semitones from a mode's tonic up to its parent major key's tonic.
MODE_OFFSETS = {"major": 0, "ionian": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7,
                "minor": 9, "aeolian": 9, "locrian": 11}
TEMPO_TOLERANCE = 0.04
_KEY = re.compile(r"^\s*([a-g])\s*([#b♯♭]?)\s*([a-z]*)\s*$", re.IGNORECASE)
SHORT_MODES = {"m": "minor", "min": "minor", "maj": "major", "": "major"}
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # the spelling producers read most
# Modes whose third is minor: where a score's mode is reduced to major/minor (MIREX, sample packs).
MINOR_THIRD_MODES = frozenset({"minor", "aeolian", "dorian", "phrygian", "locrian"})
BEATS_PER_BAR = 4
MIN_STATED_MIX_BPM, MAX_STATED_MIX_BPM = 20.0, 400.0  # what a client may state as the mix's tempo


class Key(NamedTuple):
    tonic: int  # pitch class, C = 0
    mode: str  # one of MODE_OFFSETS

    @property
    def parent(self) -> int:
        """The pitch class of the major key with the same scale."""
        return (self.tonic - MODE_OFFSETS[self.mode]) % 12


@lru_cache(maxsize=1024)  # a library holds a few dozen distinct key texts, read on every query
def parse_key(text: str | None, bare_tonic: bool = False) -> Key | None:
    """"F# minor", "Bb major", "D dorian", "F#m", "Fmin", "C#maj" -> Key; None for anything else (not a
    key we can compare). A tonic alone ("F#") is F# major only with `bare_tonic`: alone it says little."""
    match = _KEY.match(text or "") if isinstance(text, str) else None
    if not match:
        return None
    word = match.group(3)
    mode = SHORT_MODES.get(word.lower(), word.lower())
    if mode not in MODE_OFFSETS or (not word and not bare_tonic):
        return None
    letter, accidental = match.group(1).lower(), match.group(2)
    shift = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental, 0)
    return Key((PITCH_CLASSES[letter] + shift) % 12, mode)


def keys_agree(a: Key, b: Key) -> bool:
    """Same key or its relative (any mode of the same scale)."""
    return a.parent == b.parent


def tempi_agree(a_bpm: float | np.ndarray, b_bpm: float, tolerance: float = TEMPO_TOLERANCE) -> bool | np.ndarray:
    """Within `tolerance` of each other, or of double or half the other; element by element for an
    array of tempi (NaN, an unknown tempo, agrees with none). Plain operators, so that the
    numpy-free client can import this module."""
    same, double, half = (abs(a_bpm * factor / b_bpm - 1) <= tolerance for factor in (1.0, 2.0, 0.5))
    return same | double | half


def key_name(key: Key) -> str:
    """Key(9, "minor") -> "A minor"."""
    return f"{NAMES[key.tonic]} {key.mode}"


def major_or_minor(key: Key) -> Key:
    """The key as MIREX scores it: the tonic, and major or minor by the mode's third."""
    return Key(key.tonic, "minor" if key.mode in MINOR_THIRD_MODES else "major")


def stretch_to(stem_bpm: float, mix_bpm: float) -> float:
    """The playback rate that brings a stem at `stem_bpm` to the mix's tempo, in double or half time
    when that is closer to its own speed."""
    return min((mix_bpm * factor / stem_bpm for factor in (1.0, 2.0, 0.5)), key=lambda rate: abs(math.log(rate)))


def transpose_to(stem: Key, mix: Key) -> int:
    """Semitones (-5..+6) that move the stem's scale onto the mix's: its key, or the key's relative."""
    semitones = (mix.parent - stem.parent) % 12
    return semitones - 12 if semitones > 6 else semitones


def key_relation(stem: Key, mix: Key) -> str:
    """How a stem's key sits with the mix's: same, relative (same scale), dominant or subdominant (the
    scale a fifth above or below: one note differs), or clash."""
    if stem.parent == mix.parent:
        return "same" if stem.tonic == mix.tonic else "relative"
    return {7: "dominant", 5: "subdominant"}.get((stem.parent - mix.parent) % 12, "clash")


def mirex_key_score(estimated: Key, reference: Key) -> float:
    """MIREX's weighted key score, on major/minor keys: 1 the same key, 0.5 a fifth above (same mode),
    0.3 the relative, 0.2 the parallel, 0 otherwise (as mir_eval.key.weighted_score)."""
    est, ref = major_or_minor(estimated), major_or_minor(reference)
    if est == ref:
        return 1.0
    if est.mode == ref.mode and (est.tonic - ref.tonic) % 12 == 7:
        return 0.5
    if est.mode != ref.mode and est.parent == ref.parent:
        return 0.3
    if est.tonic == ref.tonic:
        return 0.2
    return 0.0


def beats_at(offset_s: float, stretch: float, mix_bpm: float) -> float:
    """A stem position (its own seconds) as beats of the mix, the stem playing at `stretch`."""
    return offset_s / stretch * mix_bpm / 60.0


class MusicFacts(NamedTuple):
    """What a library file (or a mix) is, musically, and where each value came from: a tag or chunk
    ("acid", "id3", "mp4", "vorbis"), the file's name ("name"), the audio ("audio"), or the client
    ("client"). None where there is nothing to say: no tempo for a one-shot, no key for drums."""

    tempo_bpm: float | None = None
    tempo_confidence: float | None = None  # 0..1; 1 for a stated value
    tempo_source: str | None = None
    key: str | None = None  # as key_name writes it
    key_confidence: float | None = None
    key_source: str | None = None
    bars: int | None = None  # a loop's length in bars of BEATS_PER_BAR beats (or the meter a tag states)
