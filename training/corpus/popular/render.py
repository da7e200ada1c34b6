"""A part of a song -> its stem: the dry sound from its timbre, then its production chain.

    audio, effects = render_part(part, song, sample_rate, rng)
    mix, stems, levels = mix_song(song, {part.name: audio, ...}, rng)

A song's soundfont parts are rendered together on the first request for one of them (see
soundfont.py), so ask for them within one song before moving to the next. The stem is exactly
the song's length (tails past the last bar are cut, as a DAW's export of the
song's range would). Every random choice is drawn from `rng`, so a song renders the same from
the same seed.
"""

from __future__ import annotations

import numpy as np

from stemserver_training.corpus.popular import drumkit, production, sources
from stemserver_training.corpus.popular.mix import mix_song
from stemserver_training.corpus.popular.score import Part, Song
from stemserver_training.corpus.popular.soundfont import SongBatch
from stemserver_training.corpus.popular.synth import render_synth

__all__ = ["dry", "mix_song", "render_part"]

_SOUNDFONT_RUNS = SongBatch()  # one per process: a build worker renders one song at a time


def dry(part: Part, song: Song, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The part as its timbre plays it, before any production; float32 mono."""
    timbre = part.timbre
    spb = 60.0 / song.bpm
    n = round(song.seconds * sample_rate)
    if timbre.kind == "soundfont":
        return _SOUNDFONT_RUNS.get(part, song.parts, (id(song), song.id, song.seed), spb, sample_rate, n)
    if timbre.kind == "drumkit":
        kit = drumkit.load_kit(sources.drumkit_folder(timbre.name))
        return drumkit.render_kit(kit, part.notes, spb, sample_rate, n)
    if timbre.kind == "synth":
        return render_synth(timbre.name, timbre.params, part.notes, spb, sample_rate, n, rng)
    raise ValueError(f"unknown timbre kind {timbre.kind!r} of part {part.name!r}: use soundfont, drumkit or synth")


def render_part(part: Part, song: Song, sample_rate: int,
                rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """(stem audio, effects chain): the part's dry sound through a production chain drawn from `rng`.
    The chain is also stored in `part.effects`, for the manifest."""
    audio = dry(part, song, sample_rate, rng)
    part.effects = production.draw_chain(part, song, rng)
    return production.apply_chain(audio, part.effects, sample_rate, production.kick_times(song)), part.effects
