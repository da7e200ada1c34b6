"""Musical facts about a piece of audio (tempo, key) and when two of them agree.

Keys are written as producers and the corpus write them: a tonic and a mode ("F# minor", "Bb
major", "D dorian"). Two keys agree when they use the same scale, i.e. share a parent major key:
C major, A minor and D dorian all agree (the relative of a key is the same scale from another
tonic), C major and C minor do not. Tempi agree within 4 % (MIREX's Accuracy1 window), or at
double or half time, which a producer plays along just as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PITCH_CLASSES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
# Semitones from a mode's tonic up to its parent major key's tonic.
MODE_OFFSETS = {"major": 0, "ionian": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7,
                "minor": 9, "aeolian": 9, "locrian": 11}
TEMPO_TOLERANCE = 0.04
_KEY = re.compile(r"^\s*([a-g])\s*([#b♯♭]?)\s*([a-z]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class, C = 0
    mode: str  # one of MODE_OFFSETS

    @property
    def parent(self) -> int:
        """The pitch class of the major key with the same scale."""
        return (self.tonic - MODE_OFFSETS[self.mode]) % 12


def parse_key(text: str) -> Key | None:
    """"F# minor", "Bb major", "D dorian" -> Key; None for anything else (not a key we can compare)."""
    match = _KEY.match(text or "")
    if not match or match.group(3).lower() not in MODE_OFFSETS:
        return None
    letter, accidental, mode = match.group(1).lower(), match.group(2), match.group(3).lower()
    shift = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental, 0)
    return Key((PITCH_CLASSES[letter] + shift) % 12, mode)


def keys_agree(a: Key, b: Key) -> bool:
    """Same key or its relative (any mode of the same scale)."""
    return a.parent == b.parent


def tempi_agree(a_bpm: float, b_bpm: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    """Within `tolerance` of each other, or of double or half the other."""
    return any(abs(a_bpm * factor / b_bpm - 1) <= tolerance for factor in (1.0, 2.0, 0.5))
