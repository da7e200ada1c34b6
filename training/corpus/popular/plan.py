"""A song's plan before any note is written: its form (sections over the bars), its chords per
bar, and which part slots play in which bars."""

from __future__ import annotations

import random
from dataclasses import dataclass

from stemserver_training.corpus.popular.genres import ARRIVALS, FORMS, PROGRESSIONS, SECTION_SLOTS
from stemserver_training.corpus.popular.score import Section
from stemserver_training.corpus.popular.theory import Chord, progression_bars, scale

DROP_CHANCE = 0.2  # that a slot sits out a section it would play in (outside choruses and drops)


@dataclass
class Context:
    """What every part writer needs: the grid, the harmony, and where its slot plays."""

    meter: int
    bpm: float
    tonic: int
    mode: str
    chords: list[list[Chord]]  # per bar: one chord, or two splitting it
    sections: list[Section]
    plays: dict[str, set[int]]  # slot -> bars it plays in
    groove: str
    rng: random.Random

    @property
    def bars(self) -> int:
        return len(self.chords)

    @property
    def scale(self) -> tuple[int, ...]:
        return scale(self.tonic, self.mode)

    def chord_at(self, bar: int, beat: float) -> Chord:
        """The chord sounding at a beat of a bar (the second half of a split bar has the second chord)."""
        chords = self.chords[bar]
        return chords[min(len(chords) - 1, int(beat * len(chords) / self.meter))]

    def changes(self, bar: int) -> list[tuple[float, float, Chord]]:
        """(beat, length, chord) of each chord in a bar."""
        chords = self.chords[bar]
        length = self.meter / len(chords)
        return [(i * length, length, c) for i, c in enumerate(chords)]

    def ms(self, milliseconds: float) -> float:
        """Milliseconds as beats at the song's tempo."""
        return milliseconds * self.bpm / 60000.0


def plan_form(form: str, bars: int) -> list[Section]:
    """Sections covering exactly `bars` bars: a short song takes the form's start with sections
    halved, a long one repeats the form's middle before the outro; the last section is cut to fit."""
    spec = list(FORMS[form])
    total = sum(b for _, b in spec)
    if form != "blues" and bars < 0.75 * total:
        spec = [(name, max(2, b // 2)) for name, b in spec]
        total = sum(b for _, b in spec)
    while total < bars:
        spec[-1:-1] = spec[1:-1]
        total = sum(b for _, b in spec)
    if total > bars:
        spec = spec[:-1]  # cut songs end inside the form, without an outro
    sections, start = [], 0
    for name, length in spec:
        if start >= bars:
            break
        length = min(length, bars - start)
        sections.append(Section(name, start, length))
        start += length
    if start < bars:  # the form without its outro was too short: extend the last section
        last = sections[-1]
        sections[-1] = Section(last.name, last.start_bar, last.bars + bars - start)
    return sections


def plan_chords(sections: list[Section], verse: str, chorus: str, tonic: int) -> list[list[Chord]]:
    """Chords per bar: each section restarts its progression, choruses, drops and bridges use the chorus one."""
    chords: list[list[Chord]] = []
    for section in sections:
        name = chorus if section.name in (*ARRIVALS, "bridge") else verse
        progression = progression_bars(PROGRESSIONS[name][1], tonic)
        chords += [progression[i % len(progression)] for i in range(section.bars)]
    return chords


def plan_plays(sections: list[Section], slots: set[str], rng: random.Random) -> dict[str, set[int]]:
    """The bars each of a song's slots plays in: the section's slots (genres.SECTION_SLOTS), each
    sitting out a non-arrival section now and then; a slot left with no bars plays the arrivals (or
    everything, when the song has none) so that no stem is silent throughout."""
    plays: dict[str, set[int]] = {slot: set() for slot in slots}
    for section in sections:
        bars = set(range(section.start_bar, section.start_bar + section.bars))
        playing = [s for s in sorted(slots) if s in SECTION_SLOTS[section.name]]
        if section.name not in ARRIVALS:
            kept = [s for s in playing if rng.random() >= DROP_CHANCE]
            playing = kept or playing
        for slot in playing:
            plays[slot] |= bars
    arrivals = {b for s in sections if s.name in ARRIVALS for b in range(s.start_bar, s.start_bar + s.bars)}
    for bars in plays.values():
        if not bars:
            bars |= arrivals or set(range(sum(s.bars for s in sections)))
    return plays
