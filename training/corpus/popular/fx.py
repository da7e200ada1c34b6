"""FX notes at section boundaries. Each is pitch 60: its synth recipe (riser, sweep, impact, noise)
says what it sounds like, and its length how long it lasts."""

from __future__ import annotations

from stemserver_training.corpus.popular.genres import ARRIVALS
from stemserver_training.corpus.popular.plan import Context
from stemserver_training.corpus.popular.score import Note

PITCH = 60
BEDS = ("intro", "break", "build")  # sections a noise bed plays under


def write_fx(ctx: Context, kind: str) -> list[Note]:
    """Risers end on each arrival (chorus, drop), impacts hit on it, sweeps open the other
    sections after the first, and noise beds lie under intros, breaks and builds (the whole song,
    when it has none)."""
    meter, rng = ctx.meter, ctx.rng
    later = ctx.sections[1:]
    notes = []
    if kind == "riser":
        for s in later:
            if s.name in ARRIVALS:
                beats = min(rng.choice((1, 2, 4)) * meter, s.start_bar * meter)
                notes.append(Note(s.start_bar * meter - beats, beats, PITCH, 90))
    elif kind == "impact":
        notes = [Note(s.start_bar * meter, 2.0 * meter, PITCH, 110) for s in later if s.name in ARRIVALS]
    elif kind == "sweep":
        notes = [Note(s.start_bar * meter, 1.0 * meter, PITCH, 80) for s in later if s.name not in ARRIVALS]
    elif kind == "noise":
        beds = [s for s in ctx.sections if s.name in BEDS] or ctx.sections
        notes = [Note(s.start_bar * meter, s.bars * meter, PITCH, 60) for s in beds]
    else:
        raise ValueError(f"unknown fx {kind!r}: use riser, sweep, impact or noise")
    return notes
