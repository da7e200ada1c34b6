"""Lead melodies: a one-bar motif (a rhythm and a contour in scale steps) that repeats over each
four-bar phrase as call, call, call, response, moved to each bar's chord; later phrases vary it
(a changed rhythm, an inverted contour). Notes on strong beats are chord tones; the others come
from the bar's chord scale (the key's scale, less the tones a semitone from a borrowed chord tone,
plus the chord's own tones), so a melody over a borrowed iv takes its flat sixth.
"""

from __future__ import annotations

from stemserver_training.corpus.popular.plan import Context
from stemserver_training.corpus.popular.score import Note
from stemserver_training.corpus.popular.theory import Chord

LOW, HIGH = 60, 86
# One 4/4 bar in eighths (cut to the meter): "x" an onset, "-" held, "." rest.
CELLS = ("x-x-x-x-", "x--xx-x-", "x-.xx-x.", "x---x-xx", "..x-x-x-", "x-x-x---", "xxx-x--.", "x.x.xx-.",
         "x--x--x-", ".xx-x-x-")
RESPONSES = ("x---x---", "x-x-x---", "x-------", "..x-x---", "x--x----")
PHRASE = 4


def chord_scale(scale: tuple[int, ...], chord: Chord) -> list[int]:
    """The pitch classes a melody uses over a chord (see the module's docstring)."""
    borrowed = [pc for pc in chord.pitch_classes if pc not in scale]
    kept = [pc for pc in scale if all(min((pc - b) % 12, (b - pc) % 12) != 1 for b in borrowed)]
    return sorted(set(kept) | set(chord.pitch_classes))


def strong(beat: float, meter: int) -> bool:
    return beat == int(beat) and (beat == 0 or (meter == 4 and beat == 2))


def _onsets(cell: str, meter: int) -> list[tuple[float, float]]:
    cell = cell[: meter * 2]
    starts = [i for i, c in enumerate(cell) if c == "x"]
    out = []
    for i in starts:
        j = i + 1
        while j < len(cell) and cell[j] == "-":
            j += 1
        out.append((i / 2, (j - i) / 2))
    return out


def _nearest(pitch: int, allowed: list[int]) -> int:
    options = [p for p in range(LOW, HIGH + 1) if p % 12 in allowed]
    return min(options, key=lambda p: (abs(p - pitch), p))


def _step(pitch: int, steps: int, allowed: list[int]) -> int:
    """Move a number of steps along the allowed pitch classes, turning back at the range's edges."""
    options = [p for p in range(LOW, HIGH + 1) if p % 12 in allowed]
    i = options.index(_nearest(pitch, allowed)) + steps
    if i < 0 or i >= len(options):
        i = options.index(_nearest(pitch, allowed)) - steps
    return options[max(0, min(len(options) - 1, i))]


def write_lead(ctx: Context, bars: set[int]) -> list[Note]:
    rng, meter = ctx.rng, ctx.meter
    cell, response = rng.choice(CELLS), rng.choice(RESPONSES)
    contour = [rng.choice((-2, -1, -1, 0, 1, 1, 2, 3)) for _ in range(8)]
    pitch = rng.randint(64, 76)
    notes: list[Note] = []
    for bar in sorted(bars):
        section = next(s for s in ctx.sections if s.start_bar <= bar < s.start_bar + s.bars)
        position = (bar - section.start_bar) % PHRASE
        phrase = (bar - section.start_bar) // PHRASE
        rhythm = response if position == PHRASE - 1 else cell
        shape = [-c for c in contour] if phrase % 2 else contour
        if phrase % 2 and position == 1:  # a varied call: the motif's rhythm shifted by an eighth
            rhythm = rhythm[-1] + rhythm[:-1] if rhythm[-1] != "-" else rhythm
        for i, (beat, length) in enumerate(_onsets(rhythm, meter)):
            chord = ctx.chord_at(bar, beat)
            if i == 0 or strong(beat, meter):
                pitch = _nearest(pitch + (shape[i % len(shape)] if i else 0), list(chord.pitch_classes))
            else:
                pitch = _step(pitch, shape[i % len(shape)], chord_scale(ctx.scale, chord))
            notes.append(Note(bar * meter + beat, length * 0.92, pitch, 96 if strong(beat, meter) else 84))
    return notes
