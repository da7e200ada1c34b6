"""Chord parts: voice-led voicings played as blocks, pads, comping, stabs, skanks, strums, power
chords, broken chords and montunos; arpeggiators and plucks; sustained vocal-like parts.

Every pitch is a chord tone: voicings come from theory.lead_voices, which keeps each voicing near
the previous one. A guitar strum spreads its strings over a few milliseconds (low to high going
down, high to low coming up); that delay is part of what is written.
"""

from __future__ import annotations

from stemserver_training.corpus.popular.plan import Context
from stemserver_training.corpus.popular.score import Note
from stemserver_training.corpus.popular.theory import lead_voices

# (notes per voicing, lowest, highest MIDI pitch) by style
RANGES = {"block": (4, 48, 72), "pad": (4, 48, 76), "comp": (4, 50, 74), "stab": (3, 55, 79), "skank": (3, 55, 76),
          "strum": (5, 40, 71), "power": (3, 40, 64), "broken": (4, 48, 76), "montuno": (4, 55, 79),
          "hold": (3, 55, 76), "line": (1, 57, 74), "arp": (4, 57, 81), "pluck": (3, 60, 84)}
# Rhythms on a sixteenth-step grid for one 4/4 bar (cut to the meter): "x" a hit, "." a rest;
# strums: "D" down, "U" up.
COMP = ("x..x..x.x..x..x.", "x...x...x...x...", "x.....x...x.....", "x..x...x..x.x...", "..x...x...x...x.")
STAB = ("..x...x...x...x.", "x..x..x.........", "...x..x....x..x.", "x.....x.x.....x.")
SKANK = ("....x.......x...", "..x...x...x...x.")
STRUM = ("D...D.U..UD.D.U.", "D.D.D.U.D.D.D.U.", "D...D...D.U.D.U.", "D..D..D.D..D..D.")
PLUCK = ("x..x..x...x..x..", "x.xx..x.x.xx..x.", "x..x..x..x..x.x.", "x.x.x..x.x.x..x.")
ARP_ORDERS = ("up", "down", "updown", "skip")


def _voiced(ctx: Context, style: str, bars: set[int]) -> list[tuple[float, float, tuple[int, ...]]]:
    """(start, length, voicing) of every chord the part plays, voice-led through the whole song."""
    notes, low, high = RANGES[style]
    changes = [(bar * ctx.meter + beat, length, chord) for bar in range(ctx.bars)
               for beat, length, chord in ctx.changes(bar)]
    if style == "power":
        voicings = [tuple(sorted(low + (c.root - low) % 12 + i for i in (0, 7, 12))) for _, _, c in changes]
    else:
        voicings = lead_voices([c for _, _, c in changes], notes, low, high)
    return [(start, length, v) for (start, length, _), v in zip(changes, voicings)
            if int(start // ctx.meter) in bars]


def _hits(start: float, length: float, rhythm: str, meter: int) -> list[tuple[float, float, str]]:
    """The hits of a bar's rhythm inside one chord's span, each lasting until the next (or the span's end)."""
    bar = start - start % meter
    onsets = [(bar + i / 4, c) for i, c in enumerate(rhythm) if c != "." and start <= bar + i / 4 < start + length]
    ends = [t for t, _ in onsets[1:]] + [start + length]
    return [(t, end - t, c) for (t, c), end in zip(onsets, ends)]


def _line(ctx: Context, voiced: list[tuple[float, float, tuple[int, ...]]]) -> list[Note]:
    """One sustained voice, moving to the nearest tone of each new chord."""
    _, low, high = RANGES["line"]
    notes: list[Note] = []
    for start, length, voicing in voiced:
        chord = ctx.chord_at(int(start // ctx.meter), start % ctx.meter)
        options = [p for p in range(low, high + 1) if p % 12 in chord.pitch_classes]
        pitch = min(options, key=lambda p: (abs(p - notes[-1].pitch) if notes else abs(p - voicing[0]), p))
        notes.append(Note(start, length * 0.97, pitch, 70))
    return notes


def write_chords(ctx: Context, style: str, bars: set[int]) -> list[Note]:
    rng = ctx.rng
    patterns = {"comp": COMP, "stab": STAB, "skank": SKANK, "strum": STRUM, "power": COMP, "pluck": PLUCK}
    rhythm = rng.choice(patterns.get(style, COMP))[: ctx.meter * 4]
    order = rng.choice(ARP_ORDERS)
    string_ms = rng.uniform(8, 25)
    voiced = _voiced(ctx, style, bars)
    if style == "line":
        return _line(ctx, voiced)
    notes: list[Note] = []
    previous, previous_end = None, None
    for start, length, voicing in voiced:
        if style in ("block", "pad", "hold"):
            if style != "block" and voicing == previous and previous_end == start:
                # a held chord rings on into the next bar rather than re-striking
                n = len(voicing)
                notes[-n:] = [Note(x.start, start + length * 0.97 - x.start, x.pitch, x.velocity) for x in notes[-n:]]
            else:
                notes += [Note(start, length * 0.97, p, 64 if style != "block" else 72) for p in voicing]
        elif style in ("comp", "stab", "skank", "power"):
            short = {"comp": 0.85, "stab": 0.2, "skank": 0.3, "power": 0.9}[style]
            for t, span, _ in _hits(start, length, rhythm, ctx.meter):
                dur = min(span * 0.9, short) if style in ("stab", "skank") else span * short
                notes += [Note(t, dur, p, 84) for p in voicing]
        elif style == "strum":
            delay = ctx.ms(string_ms)
            for t, span, stroke in _hits(start, length, rhythm, ctx.meter):
                strings = voicing if stroke == "D" else tuple(reversed(voicing))[:4]
                velocity = 90 if stroke == "D" else 66
                notes += [Note(t + i * delay, max(span * 0.5, span * 0.95 - i * delay), p, velocity)
                          for i, p in enumerate(strings)]
        elif style in ("broken", "montuno", "arp", "pluck"):
            notes += _broken(ctx, style, start, length, voicing, order, rhythm)
        else:
            raise ValueError(f"unknown chord style {style!r}")
        previous, previous_end = voicing, start + length
    return notes


def _broken(ctx: Context, style: str, start: float, length: float, voicing: tuple[int, ...], order: str,
            rhythm: str) -> list[Note]:
    """A chord one note at a time: broken chords in eighths, arpeggiators over two octaves in
    sixteenths, montunos alternating the top and the inner notes, plucks on a sixteenth rhythm."""
    tones = list(voicing)
    if style == "arp":
        tones = tones + [p + 12 for p in tones if p + 12 <= 96]
    sequence = {"up": tones, "down": tones[::-1], "updown": tones + tones[-2:0:-1],
                "skip": tones[::2] + tones[1::2]}[order]
    step = {"broken": 0.5, "arp": 0.25, "montuno": 0.5, "pluck": 0.25}[style]
    notes = []
    for i in range(int(round(length / step))):
        t = start + i * step
        if style == "pluck" and rhythm[int(round((t % ctx.meter) * 4)) % len(rhythm)] == ".":
            continue
        if style == "montuno":
            pitch = (tones[-1], tones[1], tones[-1], tones[0])[i % 4]
        else:
            pitch = sequence[i % len(sequence)]
        notes.append(Note(t, step * (0.9 if style != "arp" else 0.6), pitch, 84 if i % 2 == 0 else 72))
    return notes
