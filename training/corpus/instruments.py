"""Plausible General MIDI instruments for a part, from its pitch range.

A part gets only a program whose usual sounding range holds all its notes (no violin on a bass
line, no tuba on a soprano), so every stem sounds like something a player could play. Families
are drawn uniformly first and programs within the family second, which spreads the labels over
the families instead of favouring the ones with many wide-range programs (synth pads, organs).
The bass family is kept for the added bass stem, so "bass" always means the doubled bass line.
"""

from __future__ import annotations

import random

from stemserver.vocabulary import gm_family

# program -> (lowest, highest) sounding MIDI note it plays convincingly.
PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    # piano
    0: (21, 108), 1: (21, 108), 2: (21, 108), 3: (21, 108),
    4: (28, 103), 5: (28, 103), 6: (29, 89), 7: (29, 89),
    # chromatic percussion
    8: (60, 108), 9: (79, 108), 10: (60, 96), 11: (53, 89), 12: (45, 96), 13: (65, 108),
    14: (60, 77), 15: (48, 84),
    # organ
    16: (24, 96), 17: (24, 96), 18: (24, 96), 19: (24, 96), 20: (36, 96), 21: (41, 89),
    22: (60, 84), 23: (41, 89),
    # guitar (not the harmonics)
    24: (40, 83), 25: (40, 84), 26: (40, 86), 27: (40, 86), 28: (40, 86), 29: (40, 86), 30: (40, 86),
    # strings (not the timpani)
    40: (55, 103), 41: (48, 91), 42: (36, 76), 43: (28, 67), 44: (28, 96), 45: (28, 96), 46: (24, 103),
    # ensemble (not the orchestra hit)
    48: (28, 96), 49: (28, 96), 50: (36, 96), 51: (36, 96), 52: (40, 84), 53: (40, 84), 54: (40, 84),
    # brass
    56: (54, 86), 57: (40, 72), 58: (28, 58), 59: (54, 82), 60: (34, 77), 61: (34, 84),
    62: (36, 96), 63: (36, 96),
    # reed
    64: (56, 88), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91), 69: (52, 81),
    70: (34, 75), 71: (50, 91),
    # pipe
    72: (74, 108), 73: (60, 96), 74: (60, 96), 75: (60, 96), 76: (60, 84), 77: (55, 86),
    78: (72, 96), 79: (60, 84),
    # synth lead
    80: (36, 96), 81: (36, 96), 82: (36, 96), 83: (36, 96), 84: (36, 96), 85: (40, 84),
    86: (36, 84), 87: (36, 84),
    # synth pad
    88: (36, 96), 89: (36, 96), 90: (36, 96), 91: (36, 96), 92: (36, 96), 93: (36, 96),
    94: (36, 96), 95: (36, 96),
    # ethnic (not the bagpipe's drone)
    104: (48, 77), 105: (48, 84), 106: (50, 79), 107: (55, 91), 108: (60, 84), 110: (55, 96),
    111: (60, 84),
    # percussive
    114: (52, 76),
}

BASS_PROGRAMS = tuple(range(32, 40))  # acoustic, fingered, picked, fretless, slap, popped, synth x2
BASS_RANGE = (28, 67)  # E1..G4: where a bass line is folded to

TRANSPOSITIONS = range(-5, 7)


def candidate_programs(lowest: int, highest: int) -> list[int]:
    """Programs whose range holds [lowest, highest]."""
    return [p for p, (low, high) in PROGRAM_RANGES.items() if low <= lowest and highest <= high]


def playable_transpositions(ranges: list[tuple[int, int]]) -> list[int]:
    """Transpositions (semitones, -5..+6) that leave every part with at least one instrument."""
    return [t for t in TRANSPOSITIONS if all(candidate_programs(lo + t, hi + t) for lo, hi in ranges)]


def choose_programs(ranges: list[tuple[int, int]], rng: random.Random) -> list[int]:
    """One program per part range: a random family that can play it, then a random program in it.

    Programs already given to another part of the work are avoided while others remain, so two
    parts rarely share one timbre (a target stem should be distinguishable from its context).
    """
    chosen: list[int] = []
    for lowest, highest in ranges:
        candidates = candidate_programs(lowest, highest) or _closest_programs(lowest, highest)
        fresh = [p for p in candidates if p not in chosen] or candidates
        families = sorted({gm_family(p) for p in fresh})
        family = rng.choice(families)
        chosen.append(rng.choice([p for p in fresh if gm_family(p) == family]))
    return chosen


def choose_bass_program(rng: random.Random) -> int:
    return rng.choice(BASS_PROGRAMS)


def _closest_programs(lowest: int, highest: int) -> list[int]:
    """For a range no instrument covers (beyond the piano's): the programs that cover most of it."""
    def overlap(program: int) -> int:
        low, high = PROGRAM_RANGES[program]
        return min(high, highest) - max(low, lowest)

    best = max(overlap(p) for p in PROGRAM_RANGES)
    return [p for p in PROGRAM_RANGES if overlap(p) == best]
