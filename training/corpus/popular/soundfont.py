"""Parts played by General MIDI soundfont presets, through the classical corpus's FluidSynth path.

Bank 0 is the melodic GM set (Timbre.program: the GM program); bank 128 is the soundfont's drum
kits, played on the GM drum channel, where Timbre.program picks the kit (0 Standard, 8 Room,
16 Power, 24 Electronic, 25 TR-808, 32 Jazz, 40 Brush in the GS numbering; None: Standard).

All the parts of a song that use one soundfont are rendered by one FluidSynth run, one after
another in one MIDI file with a silent gap for their tails, and cut apart (the same samples as a
part rendered alone, but for a slight colour on its first hits from FluidSynth's reused voices):
starting FluidSynth
costs more than rendering a part (0.2 s for FluidR3_GM; 1.1 s for the .sf3 MuseScore General,
whose Vorbis samples are decoded with dynamic sample loading, else 13 s). FluidSynth's own
reverb and chorus are off: the same room on every soundfont part would be one more
fingerprint, and production (production.py) draws a reverb per stem instead.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stemserver_training.corpus import midi
from stemserver_training.corpus.popular.score import Part, Timbre
from stemserver_training.corpus.popular.sources import soundfont_path
from stemserver_training.corpus.render import find_fluidsynth, render_midi

DRUM_BANK = 128
GAP_S = 4.0  # silence after each part in a shared run: longer than any release tail of the GM presets


def _check(timbre: Timbre) -> None:
    if timbre.bank not in (0, DRUM_BANK):
        raise ValueError(f"soundfont bank {timbre.bank} is not supported: use 0 (GM programs) or 128 (drum kits)")
    if timbre.bank == 0 and timbre.program is None:
        raise ValueError(f"a soundfont part needs a GM program (timbre {timbre.name!r} has none)")


def render_soundfont_parts(parts: Sequence[Part], seconds_per_beat: float, sample_rate: int,
                           n_samples: int) -> dict[str, np.ndarray]:
    """Each part (all of one soundfont) as float32 mono `n_samples` long, by one FluidSynth run."""
    names = {part.timbre.name for part in parts}
    if len(names) != 1:
        raise ValueError(f"render_soundfont_parts takes parts of one soundfont, not {sorted(names)}")
    for part in parts:
        _check(part.timbre)
    path = soundfont_path(names.pop())
    options = ["-R", "0", "-C", "0"]
    if path.suffix.lower() == ".sf3":
        options += ["-o", "synth.dynamic-sample-loading=1"]
    # whole seconds apart: every part's notes then fall on the same ticks and samples as if alone
    stride_s = math.ceil(n_samples / sample_rate + GAP_S)
    segments = []
    for k, part in enumerate(parts):
        drums = part.timbre.bank == DRUM_BANK
        program = part.timbre.program if part.timbre.program is not None else 0  # a kit must not carry over
        notes = [midi.Note(n.start * seconds_per_beat, (n.start + n.length) * seconds_per_beat, n.pitch, n.velocity)
                 for n in part.notes]
        segments.append((float(k * stride_s), notes, program, midi.DRUM_CHANNEL if drums else 0))
    stride = stride_s * sample_rate
    with tempfile.TemporaryDirectory(prefix="stemserver-sf-") as workdir:
        file = Path(workdir) / "parts.mid"
        midi.write_segments(file, segments, end=len(parts) * stride_s)
        audio = render_midi(file, path, len(parts) * stride, find_fluidsynth(), sample_rate, options)
    return {part.name: audio[k * stride: k * stride + n_samples].copy() for k, part in enumerate(parts)}


class SongBatch:
    """Renders a song's soundfont parts a soundfont at a time, on the first request for any of
    them, and hands each out once: render_part asks part by part, FluidSynth runs once per font."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._ready: dict[str, np.ndarray] = {}

    def get(self, part: Part, song_parts: Sequence[Part], song_key: tuple, seconds_per_beat: float,
            sample_rate: int, n_samples: int) -> np.ndarray:
        key = (*song_key, sample_rate, n_samples)
        if key != self._key:
            self._key, self._ready = key, {}
        if part.name not in self._ready:
            same = [p for p in song_parts if p.timbre.kind == "soundfont" and p.timbre.name == part.timbre.name]
            if part not in same:
                same = [part]
            self._ready.update(render_soundfont_parts(same, seconds_per_beat, sample_rate, n_samples))
        return self._ready.pop(part.name)
