"""A drum part for a score, generated from its own bars: meter, pickup and length.

Producers ask for drums, and classical scores have none, so each work gets a drummer: one of a
few pattern families (backbeat, half-time, four-on-the-floor, shuffle, side-stick, march) played
on the score's beat grid (two subdivisions per beat in simple meters, three in compound ones),
a crash at the start of each phrase, a fill at its end, a lead-in fill over a pickup bar and a
final hit on the last bar. Everything random comes from the caller's seeded generator.
Notes are General MIDI percussion keys, played on MIDI channel 10 by the renderer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from stemserver_training.corpus.scores import Bar

KICK, SIDE_STICK, SNARE, CLAP = 36, 37, 38, 39
CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 42, 44, 46
FLOOR_TOM, LOW_TOM, MID_TOM, HIGH_TOM = 41, 45, 47, 50
CRASH, RIDE, SHAKER = 49, 51, 70
CYMBALS = (CLOSED_HAT, OPEN_HAT, RIDE, SHAKER)
TOMS = (HIGH_TOM, MID_TOM, LOW_TOM, FLOOR_TOM)


@dataclass(frozen=True)
class Hit:
    start: float  # quarter lengths from the start of the score
    end: float
    note: int  # General MIDI percussion key
    velocity: int


# A pattern maps (beat, subdivision, beats per bar, subdivisions, cymbal, rng) to the hits on that
# step as (key, velocity) pairs.
Step = list[tuple[int, int]]
Pattern = Callable[[int, int, int, int, int, random.Random], Step]


def _kick_beats(beats: int) -> set[int]:
    return {0, beats // 2} if beats >= 4 else {0}


def _snare_beats(beats: int) -> set[int]:
    if beats == 1:
        return set()
    if beats == 3:
        return {1, 2}
    return {b for b in range(beats) if b % 2 == 1}


def _backbeat(beat, sub, beats, subs, cymbal, rng) -> Step:
    hits = [(cymbal, 80 if sub == 0 else 60)]
    if sub == 0 and beat in _kick_beats(beats):
        hits.append((KICK, 100))
    if sub == 0 and beat in _snare_beats(beats):
        hits.append((SNARE, 100))
    elif sub > 0 and rng.random() < 0.08:
        hits.append((SNARE, 35))  # ghost note
    return hits


def _halftime(beat, sub, beats, subs, cymbal, rng) -> Step:
    hits = [(cymbal, 75 if sub == 0 else 55)]
    if sub == 0 and beat == 0:
        hits.append((KICK, 100))
    if sub == 0 and beats >= 2 and beat == beats // 2:
        hits.append((SNARE, 105))
    return hits


def _four_on_the_floor(beat, sub, beats, subs, cymbal, rng) -> Step:
    if sub == 0:
        hits = [(KICK, 105), (CLOSED_HAT, 50)]
        if beat in _snare_beats(beats):
            hits.append((CLAP, 95))
        return hits
    return [(OPEN_HAT if sub == subs - 1 else CLOSED_HAT, 70)]


def _shuffle(beat, sub, beats, subs, cymbal, rng) -> Step:
    hits: Step = []
    if sub == 0:
        hits.append((RIDE, 85))
        if beat == 0:
            hits.append((KICK, 75))
        if beat in _snare_beats(beats):
            hits.append((PEDAL_HAT, 70))
    elif sub == subs - 1:
        hits.append((RIDE, 60))
        if rng.random() < 0.15:
            hits.append((SNARE, 35))
    return hits


def _sidestick(beat, sub, beats, subs, cymbal, rng) -> Step:
    hits = [(SHAKER, 55 if sub == 0 else 40)]
    if sub == 0 and beat in _kick_beats(beats):
        hits.append((KICK, 85))
    if sub == 0 and beat in _snare_beats(beats):
        hits.append((SIDE_STICK, 90))
    return hits


def _march(beat, sub, beats, subs, cymbal, rng) -> Step:
    accent = 100 if (beat, sub) == (0, 0) else 80 if sub == 0 else 50
    hits = [(SNARE, accent)]
    if sub == 0 and beat in _kick_beats(beats):
        hits.append((KICK, 95))
    return hits


PATTERNS: dict[str, Pattern] = {
    "backbeat": _backbeat,
    "halftime": _halftime,
    "four_on_the_floor": _four_on_the_floor,
    "shuffle": _shuffle,
    "sidestick": _sidestick,
    "march": _march,
}


def drum_part(bars: tuple[Bar, ...] | list[Bar], rng: random.Random) -> tuple[str, list[Hit]]:
    """A drum part over `bars`; returns the pattern family's name and the hits, sorted by time."""
    name = rng.choice(sorted(PATTERNS))
    pattern = PATTERNS[name]
    cymbal = rng.choice((CLOSED_HAT, RIDE))
    phrase = rng.choice((4, 8))
    hits: list[Hit] = []
    full_bars = 0
    for index, bar in enumerate(bars):
        if index == len(bars) - 1 and index > 0:
            hits += [_hit(bar.start, bar.beat, CRASH, 110, rng), _hit(bar.start, bar.beat, KICK, 110, rng)]
        elif bar.partial and index == 0:
            hits += _fill(bar, bar.start, bar.start + bar.length, rng)  # a lead-in over the pickup
        else:
            phrase_end = (full_bars + 1) % phrase == 0 or index == len(bars) - 2
            hits += _bar_hits(bar, pattern, cymbal, crash=full_bars % phrase == 0, fill=phrase_end, rng=rng)
            full_bars += 1
    hits.sort(key=lambda h: (h.start, h.note))
    return name, hits


def _bar_hits(bar: Bar, pattern: Pattern, cymbal: int, crash: bool, fill: bool, rng: random.Random) -> list[Hit]:
    end = bar.start + bar.length
    fill_start = end
    if fill:
        fill_beats = 2 if bar.beats >= 4 and rng.random() < 0.5 else 1
        fill_start = max(bar.start, end - fill_beats * bar.beat)
    step = bar.beat / bar.subdivisions
    hits = []
    for beat in range(bar.beats):
        for sub in range(bar.subdivisions):
            offset = beat * bar.beat + sub * step
            if pattern is _shuffle and bar.subdivisions == 2 and sub == 1:
                offset += step / 3  # swing the off-beat to the last triplet
            time = bar.start + offset
            if time >= fill_start - 1e-9:
                continue
            for note, velocity in pattern(beat, sub, bar.beats, bar.subdivisions, cymbal, rng):
                if crash and offset == 0 and note in CYMBALS:
                    continue
                hits.append(_hit(time, step, note, velocity, rng))
    if crash:
        hits.append(_hit(bar.start, bar.beat, CRASH, 105, rng))
        if not any(h.note == KICK and h.start == bar.start for h in hits):
            hits.append(_hit(bar.start, step, KICK, 100, rng))
    if fill:
        hits += _fill(bar, fill_start, end, rng)
    return hits


def _fill(bar: Bar, start: float, end: float, rng: random.Random) -> list[Hit]:
    """A run on snare or down the toms, twice the subdivision rate in simple meters, rising in loudness."""
    rate = bar.subdivisions * 2 if bar.subdivisions == 2 else bar.subdivisions
    step = bar.beat / rate
    count = max(1, round((end - start) / step))
    toms = rng.random() < 0.6
    hits = []
    for i in range(count):
        note = TOMS[min(len(TOMS) - 1, i * len(TOMS) // count)] if toms else SNARE
        velocity = 70 + round(40 * i / max(1, count - 1))
        hits.append(_hit(start + i * step, step, note, velocity, rng))
    return hits


def _hit(start: float, length: float, note: int, velocity: int, rng: random.Random) -> Hit:
    velocity = max(1, min(127, velocity + rng.randint(-6, 6)))
    return Hit(start=start, end=start + length, note=note, velocity=velocity)
