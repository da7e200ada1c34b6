"""A minimal Standard MIDI File writer: one track, one channel, notes timed in seconds.

The file carries a fixed tempo (120 BPM, 960 ticks a second), so the time of every note is
exactly what the caller asked for, whatever the score's own tempo marks say: the tempo of a
variant is applied before this point, and stems cut from the same track line up to the tick.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_QUARTER = 480
MICROSECONDS_PER_QUARTER = 500_000  # 120 BPM
TICKS_PER_SECOND = TICKS_PER_QUARTER * 1_000_000 // MICROSECONDS_PER_QUARTER
DRUM_CHANNEL = 9  # General MIDI's channel 10, counted from 0


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    end: float
    pitch: int  # MIDI note number (a percussion key on the drum channel)
    velocity: int


def write_midi(path: str | Path, notes: Iterable[Note], program: int | None, channel: int, end: float) -> None:
    """Write `notes` on `channel` with `program` (None: no program change, as for drums).

    The track ends at `end` seconds, so the renderer keeps going until release tails have died.
    A note that would overlap the next note of the same pitch is shortened, since MIDI cannot
    tell two overlapping same-pitch notes apart (the first note-off would cut the second).
    """
    write_segments(path, [(0.0, notes, program, channel)], end)


def write_segments(path: str | Path, segments: Iterable[tuple[float, Iterable[Note], int | None, int]],
                   end: float) -> None:
    """Write several parts in one file, each (offset in seconds, notes, program, channel) with its
    program change at its offset and its notes shifted by it: one FluidSynth run then renders
    parts one after another (the caller leaves gaps for their tails), paying for one soundfont load."""
    events: list[tuple[int, int, bytes]] = []  # (tick, order: program changes, then offs, then ons; message)
    for offset, notes, program, channel in segments:
        base = _tick(offset)  # whole ticks, so a part's notes fall on the same ticks at any offset
        if program is not None:
            events.append((base, 0, bytes([0xC0 | channel, program])))
        for note in _without_overlaps(notes):
            on = base + _tick(note.start)
            off = base + max(_tick(note.end), _tick(note.start) + 1)
            events.append((on, 2, bytes([0x90 | channel, note.pitch, note.velocity])))
            events.append((off, 1, bytes([0x80 | channel, note.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    last = max([_tick(end)] + [tick for tick, _, _ in events])

    track = bytearray(b"\x00\xff\x51\x03" + MICROSECONDS_PER_QUARTER.to_bytes(3, "big"))
    now = 0
    for tick, _, message in events:
        track += _varlen(tick - now) + message
        now = tick
    track += _varlen(last - now) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    Path(path).write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def _without_overlaps(notes: Iterable[Note]) -> list[Note]:
    kept: dict[int, list[Note]] = {}
    for note in sorted(notes, key=lambda n: (n.start, n.pitch)):
        same = kept.setdefault(note.pitch, [])
        if same and _tick(same[-1].start) == _tick(note.start):
            continue  # a unison doubling: one key cannot sound twice
        if same and same[-1].end > note.start:
            same[-1] = Note(same[-1].start, note.start, same[-1].pitch, same[-1].velocity)
        same.append(note)
    return [note for same in kept.values() for note in same]


def _tick(seconds: float) -> int:
    return max(0, round(seconds * TICKS_PER_SECOND))


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))
