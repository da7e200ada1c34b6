"""Drum grooves as step patterns, fills at section ends and crashes at section starts.

A pattern is a string of sixteenth-note steps (4 per beat), one character a step: "X" accent,
"x" hit, "o" soft, "g" ghost, "." rest. It spans one or two bars; its length fixes the meter (16
steps: 4/4, 12 steps: 3/4). Each piece plays a General MIDI percussion key and belongs to one
separate-drums stem (PIECES), so the same groove renders as one kit or as kick/snare/hats/perc.
"""

from __future__ import annotations

import random

from stemserver_training.corpus.popular.score import Note

VELOCITY = {"X": 118, "x": 100, "o": 78, "g": 42}
STEPS_PER_BEAT = 4
# Groove piece -> (General MIDI percussion key, the separate stem it plays in).
PIECES = {
    "kick": (36, "kick"), "snare": (38, "snare"), "rim": (37, "snare"), "clap": (39, "clap"),
    "hat": (42, "hats"), "phat": (44, "hats"), "ohat": (46, "hats"), "ride": (51, "hats"), "crash": (49, "hats"),
    "shaker": (70, "perc"), "tamb": (54, "perc"), "conga": (63, "perc"), "congalo": (64, "perc"),
    "bongo": (60, "perc"), "cowbell": (56, "perc"), "clave": (75, "perc"),
    "tom_hi": (50, "snare"), "tom_mid": (47, "snare"), "tom_lo": (45, "snare"), "tom_floor": (41, "snare"),
}
TOMS = ("tom_hi", "tom_mid", "tom_lo", "tom_floor")

GROOVES = {
    "house": {"kick": "x...x...x...x...", "clap": "....x.......x...", "ohat": "..o...o...o...o.",
              "hat": ".g.g.g.g.g.g.g.g", "shaker": "oggooggooggooggo"},
    "house_garage": {"kick": "x.......x.x.....", "clap": "....x.......x...", "hat": "..o.g.o...o.g.o.",
                     "ohat": "......o.......o.", "shaker": "g.g.g.g.g.g.g.g."},
    "techno": {"kick": "X...x...x...x...", "hat": "..x...x...x...x.", "ride": "gggggggggggggggg",
               "clap": "....o.......o...", "rim": "...o..o....o..o."},
    "techno_rolling": {"kick": "X...x...x...x...", "ohat": "..o...o...o...o.", "hat": "ggogggogggogggog",
                       "rim": "......o.......o.", "conga": "...g.....g..g..."},
    "boombap": {"kick": "x.......x.x.....x..x....x.......", "snare": "....x.......x.......x.......x..g",
                "hat": "o.o.o.o.o.o.o.o.o.o.o.o.o.o.o.o.", "ohat": "..............o.............o..."},
    "boombap_sparse": {"kick": "x..x......x.....x.........x.....", "snare": "....x.......x.......x.......x...",
                       "hat": "o.g.o.g.o.g.o.g.o.g.o.g.o.g.o.g.", "tamb": "....o.......o.......o.......o..."},
    "trap": {"kick": "x......x..x.....x.....x...x..x..", "clap": "........x...............x.......",
             "hat": "o.o.o.o.o.o.o.o.o.o.o.o.o.o.o.o.", "snare": "..............................g."},
    "trap_sparse": {"kick": "x.........x.....x..x............", "clap": "........x...............x.......",
                    "hat": "o.o.o.o.o.o.o.o.o.o.o.o.o.o.o.o.", "ohat": "......................o........."},
    "dnb": {"kick": "x.........x.....", "snare": "....x.......x...", "hat": "o.o.o.o.o.o.o.o.",
            "ride": "..g...g...g...g.", "shaker": "gggggggggggggggg"},
    "dnb_amen": {"kick": "x.x.......xx....x.x.......x.....", "snare": "....x..g.g..x..g....x..g.g....x.",
                 "ride": "o.o.o.o.o.o.o.o.o.o.o.o.o.o.o.o."},
    "pop": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "o.o.o.o.o.o.o.o.",
            "tamb": "....o.......o..."},
    "pop_four": {"kick": "x...x...x...x...", "clap": "....x.......x...", "hat": "..o...o...o...o.",
                 "shaker": "ogogogogogogogog"},
    "rock": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.o.x.o.x.o.x.o."},
    "rock_drive": {"kick": "x...x...x...x...", "snare": "....X.......X...", "ride": "x.o.x.o.x.o.x.o.",
                   "crash": "x..............."},
    "rock_halftime": {"kick": "x.....x...x.....", "snare": "........X.......", "hat": "x.o.x.o.x.o.x.o."},
    "funk": {"kick": "x..x..x...x..x..", "snare": "....x..g.g..x..g", "hat": "xgxgxgxgxgogxgxg",
             "ohat": "......o........."},
    "funk_break": {"kick": "x.x.......x..x..", "snare": "....x..g.g.gx...", "hat": "x.x.x.x.x.x.xox.",
                   "tamb": "..o...o...o...o."},
    "reggae_one_drop": {"kick": "........x.......", "rim": "........x.......", "hat": "o.o.o.o.o.o.o.o.",
                        "ohat": "......o.......o."},
    "reggae_steppers": {"kick": "x...x...x...x...", "rim": "........x.......", "hat": "..o...o...o...o.",
                        "shaker": "g.g.g.g.g.g.g.g."},
    "lofi": {"kick": "x.......x.x.....x.........x.....", "snare": "....x.......x.......x.......x...",
             "hat": "o.g.o.g.o.g.o.g.o.g.o.g.o.g.o.g.", "rim": "..............g..............g.."},
    "jazz_swing": {"kick": "x.........x.....", "ride": "o.....og....o.og", "phat": "....o.......o...",
                   "snare": ".......g.......g"},
    "bossa": {"kick": "x.....x.x.....x.x.....x.x.....x.", "rim": "x..x..x...x.x.....x..x..x..x....",
              "shaker": "ogogogogogogogogogogogogogogogog"},
    "dembow": {"kick": "x...x...x...x...", "snare": "...x..x....x..x.", "hat": "o.o.o.o.o.o.o.o.",
               "conga": "..g...g...g...g."},
    "cumbia": {"kick": "x.......x.......", "shaker": "o.x.o.x.o.x.o.x.", "conga": "....x.o.....x.o.",
               "cowbell": "x...x...x...x..."},
    "ambient_pulse": {"kick": "x...............", "shaker": "..g...g...g...g.", "rim": "........g......."},
    "waltz": {"kick": "x...........", "snare": "....x...x...", "hat": "o.o.o.o.o.o."},
    "waltz_rock": {"kick": "x.....x.....", "snare": "....x.......", "ride": "x.o.x.o.x.o."},
}


def meter_of(groove: str) -> int:
    return 3 if len(next(iter(GROOVES[groove].values()))) % 16 else 4


def groove_bars(groove: str) -> int:
    steps = len(next(iter(GROOVES[groove].values())))
    return steps // (meter_of(groove) * STEPS_PER_BEAT)


def pattern_hits(groove: str, piece: str, bar: int, meter: int) -> list[tuple[float, int]]:
    """(beat within the bar, velocity) of one piece's hits in a bar of the song."""
    pattern = GROOVES[groove].get(piece, "")
    steps = meter * STEPS_PER_BEAT
    if not pattern:
        return []
    offset = (bar % groove_bars(groove)) * steps
    return [(i / STEPS_PER_BEAT, VELOCITY[c]) for i, c in enumerate(pattern[offset:offset + steps]) if c != "."]


def kick_beats(groove: str, bar: int, meter: int) -> list[float]:
    """Where the kick hits in a bar: kick-locked bass lines play here."""
    return [beat for beat, _ in pattern_hits(groove, "kick", bar, meter)]


def hat_roll(meter: int, rng: random.Random) -> list[tuple[float, int]]:
    """Trap hats: eighths with a roll (32nds or sixteenth triplets) on one beat of the bar."""
    beat = rng.randrange(meter)
    division = rng.choice((8, 6))
    hits = [(b * 0.5, 78 if b % 2 == 0 else 60) for b in range(meter * 2) if int(b * 0.5) != beat]
    hits += [(beat + i / division, 55 + 6 * (i % 2)) for i in range(division)]
    return sorted(hits)


def fill(piece: str, meter: int, beats: int, toms: bool, rng: random.Random) -> list[tuple[str, float, int]]:
    """A fill over the last `beats` beats of a bar: (piece, beat, velocity). A roll on `piece`, or
    (with `toms`) sometimes a run down the toms; velocities rise into the next section."""
    start = meter - beats
    division = rng.choice((2, 4, 4))
    count = beats * division
    toms = toms and rng.random() < 0.6
    return [(TOMS[min(3, i * 4 // count)] if toms else piece, start + i / division, 70 + 45 * i // max(1, count - 1))
            for i in range(count)]


def drum_notes(piece: str, hits: list[tuple[float, int]], bar_start: float) -> list[Note]:
    key = PIECES[piece][0]
    return [Note(bar_start + beat, 0.25, key, velocity) for beat, velocity in hits]
