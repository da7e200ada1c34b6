"""Keys, modes, chords and voice-leading: the music theory an arrangement is written with.

Roman numerals are read against the tonic's MAJOR scale, with explicit accidentals, whatever the
mode: a minor-key i-VI-III-VII is written "i bVI bIII bVII". That one reading serves every mode
(dorian's IV is "IV", mixolydian's bVII is "bVII") and names borrowed chords plainly ("iv" in a
major key is the minor subdominant borrowed from the parallel minor). Case gives the triad
(upper major, lower minor); a suffix overrides or extends it ("7", "maj7", "o", "h7", "sus4"...),
and "/x" makes a secondary chord: "V7/vi" is the dominant seventh of the sixth degree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MODES = {  # intervals from the tonic
    "major": MAJOR_SCALE,
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}
# Semitones from the tonic of the parent major scale up to each mode's tonic (a mode is a rotation of a major scale).
MODE_OFFSET = {"major": 0, "minor": 9, "dorian": 2, "mixolydian": 7, "phrygian": 4}
MINOR_THIRD_MODES = ("minor", "dorian", "phrygian")

SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
SHARP_MAJOR_KEYS = {7, 2, 9, 4, 11}  # G D A E B major (and modes sharing their signature) spell with sharps

QUALITIES = {  # chord suffix -> intervals above the root
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "9": (0, 4, 7, 10, 14),
    "maj9": (0, 4, 7, 11, 14),
    "m9": (0, 3, 7, 10, 14),
}

_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")
_ROMAN = re.compile(r"^(b|#)?(VII|VI|V|IV|III|II|I|vii|vi|v|iv|iii|ii|i)(.*)$")


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class
    quality: str  # a key of QUALITIES

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple(sorted({(self.root + i) % 12 for i in QUALITIES[self.quality]}))

    @property
    def triad(self) -> tuple[int, int, int]:
        """Root, third (or suspension) and fifth, the notes a voicing cannot leave out."""
        i = QUALITIES[self.quality]
        return (self.root % 12, (self.root + i[1]) % 12, (self.root + i[2]) % 12)


def scale(tonic: int, mode: str) -> tuple[int, ...]:
    """The pitch classes of a key, from its tonic."""
    return tuple((tonic + i) % 12 for i in MODES[mode])


def parent_major(tonic: int, mode: str) -> int:
    """The tonic of the major scale a mode is a rotation of (A minor -> C, D dorian -> C)."""
    return (tonic - MODE_OFFSET[mode]) % 12


def uses_sharps(tonic: int, mode: str) -> bool:
    return parent_major(tonic, mode) in SHARP_MAJOR_KEYS


def note_name(pitch_class: int, sharps: bool) -> str:
    return (SHARP_NAMES if sharps else FLAT_NAMES)[pitch_class % 12]


def key_name(tonic: int, mode: str) -> str:
    """e.g. "F# minor", "Bb dorian"."""
    return f"{note_name(tonic, uses_sharps(tonic, mode))} {mode}"


def _degree_root(accidental: str | None, numeral: str) -> int:
    root = MAJOR_SCALE[_NUMERALS.index(numeral.upper())]
    return root + {"b": -1, "#": 1, None: 0}[accidental]


def _quality(numeral: str, suffix: str) -> str:
    minor = numeral.islower()
    if suffix in ("o", "dim"):
        return "dim"
    if suffix in ("o7", "dim7"):
        return "dim7"
    if suffix in ("h7", "m7b5"):
        return "m7b5"
    if suffix in ("7", "9", "6"):
        return ("m" if minor else "") + suffix
    if suffix in ("maj7", "maj9", "sus2", "sus4", "aug"):
        return suffix
    if suffix:
        raise ValueError(f"unknown chord suffix {suffix!r} in a roman numeral: use one of 7 9 6 maj7 o h7 sus4 ...")
    return "m" if minor else ""


def parse_roman(numeral: str, tonic: int) -> Chord:
    """A roman numeral in a key (see the module's docstring), e.g. ("bVII", 9) -> G major."""
    head, _, target = numeral.partition("/")
    base = tonic
    if target:
        target_chord = parse_roman(target, tonic)
        base = target_chord.root
    match = _ROMAN.match(head)
    if not match:
        raise ValueError(f"not a roman numeral: {numeral!r} (write e.g. I, bVII, ii7, V7/vi)")
    accidental, roman, suffix = match.groups()
    return Chord((base + _degree_root(accidental, roman)) % 12, _quality(roman, suffix))


def chord_symbol(chord: Chord, sharps: bool) -> str:
    return note_name(chord.root, sharps) + chord.quality


def progression_bars(bars: tuple[str, ...], tonic: int) -> list[list[Chord]]:
    """A progression's bars, each "I" or "ii7 V7" (two chords splitting the bar), as chords."""
    return [[parse_roman(n, tonic) for n in bar.split()] for bar in bars]


def bar_symbol(chords: list[Chord], sharps: bool) -> str:
    """The symbol Song.chords records for a bar: one chord, or "Dm7|G7" for a bar split in halves."""
    return "|".join(chord_symbol(c, sharps) for c in chords)


def voicings(chord: Chord, notes: int, low: int, high: int) -> list[tuple[int, ...]]:
    """Every close or open voicing of a chord with `notes` notes between low and high (MIDI),
    containing its root, third and fifth: the candidates voice-leading picks from."""
    pcs = (list(chord.triad) + [pc for pc in chord.pitch_classes if pc not in chord.triad])[:notes]
    found = set()
    for bottom in range(low, high + 1):
        for inversion in range(len(pcs)):
            if bottom % 12 != pcs[inversion]:
                continue
            order = pcs[inversion:] + pcs[:inversion]
            order = [order[i % len(order)] for i in range(notes)]  # doubling the bass note, then the next, on top
            voice, last = [bottom], bottom
            for pc in order[1:]:
                last += (pc - last) % 12 or 12
                voice.append(last)
            if voice[-1] <= high:
                found.add(tuple(voice))
    return sorted(found)


def movement(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Semitones the voices move from one voicing to the next (voices paired from the bottom)."""
    return sum(abs(x - y) for x, y in zip(sorted(a), sorted(b)))


def lead_voices(chords: list[Chord], notes: int, low: int, high: int, first: tuple[int, ...] | None = None
                ) -> list[tuple[int, ...]]:
    """Voicings for a chord sequence that move the least from each to the next (greedy), the way
    a keyboard player keeps the hands in one place; the first is the one nearest the range's middle."""
    result: list[tuple[int, ...]] = []
    middle = (low + high) / 2
    previous = first
    for chord in chords:
        options = voicings(chord, notes, low, high)
        if previous is None:
            chosen = min(options, key=lambda v: abs(float(np.mean(v)) - middle))
        else:
            chosen = min(options, key=lambda v: (movement(previous, v), abs(float(np.mean(v)) - middle)))
        result.append(chosen)
        previous = chosen
    return result


def root_position(chord: Chord, notes: int, low: int) -> tuple[int, ...]:
    """The naive voicing: the root at or above `low`, the chord stacked above it. Voice-leading is
    measured against this."""
    bottom = low + (chord.root - low) % 12
    return next(v for v in voicings(chord, notes, bottom, bottom + 36) if v[0] == bottom)


# Krumhansl-Kessler key profiles (probe-tone ratings), from C.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(pitch_class_weights: np.ndarray) -> tuple[int, str]:
    """The Krumhansl-Schmuckler estimate (tonic, "major" | "minor") from 12 pitch-class weights
    (durations): the key whose profile correlates best."""
    weights = np.asarray(pitch_class_weights, dtype=float)
    best, key = -2.0, (0, "major")
    for tonic in range(12):
        for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
            r = float(np.corrcoef(weights, np.roll(profile, tonic))[0, 1])
            if r > best:
                best, key = r, (tonic, mode)
    return key


def same_key_family(estimate: tuple[int, str], tonic: int, mode: str) -> bool:
    """Whether an estimated major/minor key agrees with a song's key: the same tonic and third, or
    the same parent scale (the relative major or minor, or the mode's parent)."""
    est_tonic, est_mode = estimate
    third_minor = mode in MINOR_THIRD_MODES
    if est_tonic == tonic and (est_mode == "minor") == third_minor:
        return True
    return parent_major(est_tonic, est_mode) == parent_major(tonic, mode)
