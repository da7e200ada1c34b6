"""The drum notes of a song: its groove in every bar a piece plays, a fill in the last bar of each
section that leads into another, and a crash on the downbeat of each new section."""

from __future__ import annotations

from stemserver_training.corpus.popular.grooves import GROOVES, PIECES, drum_notes, fill, hat_roll, pattern_hits
from stemserver_training.corpus.popular.plan import Context
from stemserver_training.corpus.popular.score import Note

CRASH_KEY = 49


def fill_piece(groove: str) -> str:
    """The piece a groove's fills are played on: its snare, else its clap, else a rim shot."""
    pieces = GROOVES[groove]
    return next((p for p in ("snare", "clap", "rim") if p in pieces), "snare")


def drum_slots(groove: str) -> set[str]:
    """The separate stems a groove needs (kick, snare, clap, hats, perc)."""
    return {PIECES[p][1] for p in GROOVES[groove]} | {PIECES[fill_piece(groove)][1]}


def write_drums(ctx: Context, kit: bool, rolls: bool) -> dict[str, list[Note]]:
    """Notes per slot (kick, snare, clap, hats, perc). With `kit`, fills may run down the toms."""
    rng, meter = ctx.rng, ctx.meter
    notes: dict[str, list[Note]] = {slot: [] for slot in drum_slots(ctx.groove)}
    fill_on = fill_piece(ctx.groove)
    section_ends = {s.start_bar + s.bars - 1 for s in ctx.sections[:-1]}
    section_starts = {s.start_bar for s in ctx.sections[1:]}
    for bar in range(ctx.bars):
        start = bar * meter
        fill_beats = 0
        fill_slot = PIECES[fill_on][1]
        if bar in section_ends and (bar in ctx.plays[fill_slot] or bar + 1 in ctx.plays[fill_slot]):
            fill_beats = rng.choice((1, 1, 2))
            for piece, beat, velocity in fill(fill_on, meter, fill_beats, kit and fill_on == "snare", rng):
                notes[PIECES[piece][1]].append(Note(start + beat, 0.25, PIECES[piece][0], velocity))
        for piece in GROOVES[ctx.groove]:
            slot = PIECES[piece][1]
            if bar not in ctx.plays[slot]:
                continue
            hits = pattern_hits(ctx.groove, piece, bar, meter)
            if rolls and piece == "hat" and bar % 2 == 1:
                hits = hat_roll(meter, rng)
            if fill_beats and slot == fill_slot:
                hits = [(beat, v) for beat, v in hits if beat < meter - fill_beats]
            notes[slot] += drum_notes(piece, hits, start)
        if bar in section_starts and "hats" in notes and bar in ctx.plays["hats"]:
            notes["hats"].append(Note(start, 1.0, CRASH_KEY, 105))
    return notes
