"""A part played by a General MIDI soundfont preset, through the classical corpus's FluidSynth path.

Bank 0 is the melodic GM set (Timbre.program: the GM program); bank 128 is the soundfont's drum
kits, played on the GM drum channel, where Timbre.program picks the kit (0 Standard, 8 Room,
16 Power, 24 Electronic, 25 TR-808, 32 Jazz, 40 Brush in the GS numbering; None: the default
kit). A .sf3 soundfont (Vorbis-compressed samples) is read with dynamic sample loading:
otherwise FluidSynth decodes every sample of the font at each start (about 13 s for MuseScore
General; with it, about 1 s). FluidSynth's own reverb and chorus are off: the same room on every
soundfont part would be one more fingerprint, and production (production.py) draws a reverb per
stem instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stemserver_training.corpus import midi
from stemserver_training.corpus.popular.score import Note, Timbre
from stemserver_training.corpus.popular.sources import soundfont_path
from stemserver_training.corpus.render import find_fluidsynth, render

DRUM_BANK = 128


def render_soundfont(timbre: Timbre, notes: Sequence[Note], seconds_per_beat: float, sample_rate: int,
                     n_samples: int) -> np.ndarray:
    """`notes` played by the soundfont preset `timbre` (bank 0 or 128), float32 mono."""
    if timbre.bank not in (0, DRUM_BANK):
        raise ValueError(f"soundfont bank {timbre.bank} is not supported: use 0 (GM programs) or 128 (drum kits)")
    drums = timbre.bank == DRUM_BANK
    if not drums and timbre.program is None:
        raise ValueError(f"a soundfont part needs a GM program (timbre {timbre.name!r} has none)")
    path = soundfont_path(timbre.name)
    options = ["-R", "0", "-C", "0"]  # no built-in reverb or chorus: production draws its own
    if path.suffix.lower() == ".sf3":
        options += ["-o", "synth.dynamic-sample-loading=1"]
    events = [midi.Note(n.start * seconds_per_beat, (n.start + n.length) * seconds_per_beat, n.pitch, n.velocity)
              for n in notes]
    with tempfile.TemporaryDirectory(prefix="stemserver-sf-") as workdir:
        return render(events, timbre.program, midi.DRUM_CHANNEL if drums else 0, path, n_samples, Path(workdir),
                      find_fluidsynth(), sample_rate=sample_rate, options=options)
