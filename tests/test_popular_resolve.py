"""The arrangement as the builder hands it on: every synth voice any genre draws maps
to a recipe and parameters the synths accept, GM presets and kits to an installed soundfont, and
notes to the bars they sound in."""

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


def test_a_note_humanised_before_a_bar_line_belongs_to_its_written_bar():
    """Regression: bars_playing listed bar 1 for a note written on bar 2 and played 10 ms early."""
    from stemserver_training.corpus.popular.build import bars_of
    from stemserver_training.corpus.popular.score import Note

    assert list(bars_of(Note(7.99, 3.9, 40, 100), 4)) == [2]
    assert list(bars_of(Note(8.0, 4.03, 40, 100), 4)) == [2]  # ends just after the bar line
    assert list(bars_of(Note(6.0, 4.0, 40, 100), 4)) == [1, 2]
    assert list(bars_of(Note(3.95, 0.02, 42, 90), 4)) == [1]  # a short hit just before the line
