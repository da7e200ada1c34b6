"""Bass lines in the bass register (E1..G3), one style a song.

Root-playing styles (kick, 808, eighths, octave, sub, walking) sound the chord's root on each
downbeat; a tumbao anticipates the next bar's root on the last beat; "kick" and "808" play where
the groove's kick plays (and so lock to it even in bars whose kick is silent). Walking lines
approach the next bar's root by a scale step or, now and then, chromatically: the only tones of a
bass line outside the chord and the scale.
"""

from __future__ import annotations

from stemserver_training.corpus.popular.grooves import kick_beats
from stemserver_training.corpus.popular.plan import Context
from stemserver_training.corpus.popular.score import Note

LOW, HIGH = 28, 55  # E1..G3
ROOT_STYLES = ("kick", "808", "eighths", "octave", "sub", "walking")
# Sixteenth-step patterns for the syncopated (funk, d&b) and dub (reggae) styles: a digit is the
# chord tone played (0 root, 1 third, 2 fifth), "8" the root an octave up, "." a rest.
SYNCOPATED = ("0..0..2.8..0.2..", "0.0...0.2.8..0..", "0..8..0...2.0.8.", "0...0.2.0..8.2..")
DUB = ("..0.0..02.2.....", "....0..0..2.0...", "..0...02..0.2...")
ACID = ("0.80..0.28.0.0.8", "00.8.0.20.8..0.0", "0.0.8.0.0.2.8.00")
CHROMATIC_APPROACH = 0.3


def _in_register(pitch: int) -> int:
    while pitch > HIGH:
        pitch -= 12
    while pitch < LOW:
        pitch += 12
    return pitch


def _tone(ctx: Context, bar: int, beat: float, low: int, code: str) -> int:
    chord = ctx.chord_at(bar, beat)
    root = low + (chord.root - low) % 12
    if code == "8":
        return _in_register(root + 12)
    return _in_register(root + (chord.triad[int(code)] - chord.root) % 12)


def _pattern_bar(ctx: Context, bar: int, low: int, pattern: str, length: float) -> list[Note]:
    """A sixteenth pattern's notes, each `length` beats or up to the next (a bass plays one note at a time)."""
    onsets = [(i, c) for i, c in enumerate(pattern[: ctx.meter * 4]) if c != "."]
    gaps = [(j - i) / 4 for (i, _), (j, _) in zip(onsets, onsets[1:])] + [length]
    return [Note(bar * ctx.meter + i / 4, min(length, gap * 0.9), _tone(ctx, bar, i / 4, low, c),
                 96 if i % 4 == 0 else 84) for (i, c), gap in zip(onsets, gaps)]


def _kick_bar(ctx: Context, bar: int, low: int, glide: bool) -> list[Note]:
    beats = kick_beats(ctx.groove, bar, ctx.meter) or [0.0]
    ends = beats[1:] + [float(ctx.meter)]
    notes = []
    for beat, end in zip(beats, ends):
        pitch = _tone(ctx, bar, beat, low, "0")
        if beat > 0 and ctx.rng.random() < 0.15:
            pitch = _in_register(pitch + 12)
        length = (end - beat) * (0.95 if glide else 0.8)
        notes.append(Note(bar * ctx.meter + beat, min(length, 3.0), pitch, 100))
    return notes


def _walking_bar(ctx: Context, bar: int, low: int) -> list[Note]:
    rng, meter = ctx.rng, ctx.meter
    pitches = [_tone(ctx, bar, 0, low, "0")]
    for beat in range(1, meter - 1):
        pitches.append(_tone(ctx, bar, beat, low, rng.choice("12")))
    if meter > 1:
        target = _tone(ctx, (bar + 1) % ctx.bars, 0, low, "0")
        if rng.random() < CHROMATIC_APPROACH:
            approach = target + rng.choice((-1, 1))
        else:
            below = [p for p in range(target - 3, target) if p % 12 in ctx.scale]
            approach = below[-1] if below else target - 1
        pitches.append(_in_register(approach))
    return [Note(bar * meter + i, 0.9, p, 92 if i == 0 else 80) for i, p in enumerate(pitches)]


def write_bass(ctx: Context, style: str, bars: set[int]) -> list[Note]:
    rng, meter = ctx.rng, ctx.meter
    low = rng.choice((28, 31, 33))
    pattern = rng.choice({"syncopated": SYNCOPATED, "dub": DUB, "acid": ACID}.get(style, ("",)))
    notes: list[Note] = []
    for bar in sorted(bars):
        start = bar * meter
        if style in ("kick", "808"):
            notes += _kick_bar(ctx, bar, low, glide=style == "808")
        elif style in ("syncopated", "dub", "acid"):
            notes += _pattern_bar(ctx, bar, low, pattern, 0.22 if style == "acid" else 0.4)
        elif style == "walking":
            notes += _walking_bar(ctx, bar, low)
        elif style == "tumbao":  # the fifth on the and of two, the next chord's root anticipated on four
            following = (bar + 1) % ctx.bars
            notes += [Note(start + 1.5, 1.4, _tone(ctx, bar, 1.5, low, "2"), 90),
                      Note(start + meter - 1, 1.0, _tone(ctx, following, 0, low, "0"), 96)]
        elif style == "sub":
            notes += [Note(start + beat, length * 0.98, _tone(ctx, bar, beat, low, "0"), 90)
                      for beat, length, _ in ctx.changes(bar)]
        else:  # eighths, octave, offbeat, rolling
            steps = {"eighths": range(0, meter * 4, 2), "octave": range(0, meter * 4, 2),
                     "offbeat": range(2, meter * 4, 4), "rolling": [i for i in range(meter * 4) if i % 4]}[style]
            for n, step in enumerate(steps):
                code = "8" if style == "octave" and n % 2 else "0"
                notes.append(Note(start + step / 4, 0.45 if style != "rolling" else 0.2,
                                  _tone(ctx, bar, step / 4, low, code), 98 if step % 4 == 0 else 86))
    if style in ("808", "acid"):
        notes = _glides(notes, rng)
    return notes


def _glides(notes: list[Note], rng) -> list[Note]:
    """808 and acid lines slide into the next note now and then (only when they touch)."""
    out = []
    for note, following in zip(notes, notes[1:] + [None]):
        touches = following is not None and following.start - (note.start + note.length) < 0.3
        if touches and following.pitch != note.pitch and rng.random() < 0.35:
            note = Note(note.start, note.length, note.pitch, note.velocity, glide_to=following.pitch)
        out.append(note)
    return out
