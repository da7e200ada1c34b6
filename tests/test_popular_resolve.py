"""The arrangement's voices as the renderer plays them: every synth voice any genre draws maps
to a recipe and parameters the synths accept, and GM presets and kits to an installed soundfont."""

from __future__ import annotations

import random

import numpy as np
import pytest

from stemserver_training.corpus.popular import synth
from stemserver_training.corpus.popular.arrange import arrange_song
from stemserver_training.corpus.popular.genres import GENRES
from stemserver_training.corpus.popular.resolve import resolve_timbres, synth_recipe
from stemserver_training.corpus.popular.score import Part, Timbre
from stemserver_training.corpus.popular.sources import SOUNDFONTS
from stemserver_training.corpus.popular.timbres import SYNTH_PARAMS


def test_every_drawn_synth_voice_renders_with_the_parameters_it_resolves_to(monkeypatch):
    monkeypatch.setattr("stemserver_training.corpus.popular.resolve.installed_soundfonts", lambda: list(SOUNDFONTS))
    seen = set()
    for index in range(240):
        song = arrange_song(7, genre=sorted(GENRES)[index % len(GENRES)], bars=8, index=index)
        drawn = resolve_timbres(song, random.Random(index))
        for part in song.parts:
            before = drawn[part.name]
            if before.kind == "synth":
                seen.add((before.name, part.role == "drums"))
                # no notes: the parameters are checked against the recipe's, nothing is rendered
                synth.render_synth(part.timbre.name, part.timbre.params, [], 0.5, 16000, 100, np.random.default_rng(0))
            elif before.name == "gm":
                assert part.timbre.name in {sf.name for sf in SOUNDFONTS}
                assert part.timbre.kind == "soundfont" and part.timbre.bank == before.bank
            else:
                assert part.timbre == before  # recorded kits play as drawn
    assert {name for name, _ in seen} == set(SYNTH_PARAMS) and ("808", True) in seen and ("noise", True) in seen


def test_an_unknown_voice_is_a_clear_error():
    part = Part("lead", "lead", ("synth lead", "saw lead"), Timbre("synth", "theremin", params={}))
    with pytest.raises(ValueError, match="no synth recipe renders the arranged voice 'theremin'"):
        synth_recipe(part)
