"""How a result fits the mix, end to end: the library keeps each file's tempo, key and bars (and
upgrades a library made before them in place), the engine turns them into stretch, transpose, key
relation and beats against the mix's (stated by the client or estimated), and the filters that
need the mix's facts. Real files, a real library and index, the tiny identity model."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import build_library, melody
from test_music import C_MAJOR, chords, click_track

from stemserver import estimate
from stemserver.checkpoint import load_checkpoint
from stemserver.config import Settings, TextSettings
from stemserver.engine import Engine, Query
from stemserver.files import sha256_file
from stemserver.inference import stem_embedder
from stemserver.library import SCHEMA_VERSION, Library
from stemserver.selection import Filters
from stemserver.server.messages import match_from_result, mix_from_done, result_replies
from stemserver.server.osc import _options_from_pairs
from stemserver.server.protocol import RESULT_FIELDS, ProtocolError, query_options

RATE = 16_000
SETTINGS = Settings(device="cpu", text=TextSettings(backend="none"))
LOOP_S = 2 * 4 * 60 / 124  # two bars at 124 BPM


def write_samples(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    soundfile.write(root / "Bass_100_Am_01.wav", melody(12.0, seed=1), RATE)  # the name says it all
    soundfile.write(root / "Lead_128_F#m.wav", melody(12.0, seed=2), RATE)  # F# minor clashes with C major
    soundfile.write(root / "untitled loop.wav", click_track(124.0, LOOP_S), RATE)  # only its audio says
    soundfile.write(root / "chords.wav", chords(C_MAJOR * 3), RATE)
    soundfile.write(root / "hit.wav", click_track(120.0, 0.6), RATE)  # a one-shot: no tempo, no key
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory, identity_checkpoint: Path) -> Path:
    samples = write_samples(tmp_path_factory.mktemp("samples"))
    return build_library(samples, tmp_path_factory.mktemp("library"), identity_checkpoint)


@pytest.fixture(scope="module")
def engine(identity_checkpoint: Path, library: Path) -> Engine:
    return Engine(identity_checkpoint, library, SETTINGS)


def facts_by_name(library_dir: Path) -> dict:
    with Library(library_dir) as library:
        return {Path(path).name: facts for path, facts in library.music().items()}


def test_the_library_keeps_each_file_s_tempo_key_and_bars_with_their_source(library: Path):
    facts = facts_by_name(library)
    assert facts["Bass_100_Am_01.wav"][:6] == (100.0, 1.0, "name", "A minor", 1.0, "name")
    loop = facts["untitled loop.wav"]
    assert (loop.tempo_bpm, loop.tempo_source, loop.bars) == (pytest.approx(124.0, abs=0.01), "audio", 2)
    assert loop.key is None  # clicks have no key
    assert (facts["chords.wav"].key, facts["chords.wav"].key_source) == ("C major", "audio")
    assert facts["hit.wav"].tempo_bpm is None and facts["hit.wav"].key is None


def test_a_library_made_before_tempo_and_key_is_upgraded_in_place_without_embedding_again(
        tmp_path: Path, identity_checkpoint: Path):
    samples = write_samples(tmp_path / "samples")
    root = build_library(samples, tmp_path / "library", identity_checkpoint)
    embeddings = {p: p.stat().st_mtime_ns for p in (root / "embeddings").rglob("*.npy")}
    with sqlite3.connect(root / "library.sqlite") as db:  # what a format-1 library holds
        db.execute("DROP TABLE music")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    model = load_checkpoint(identity_checkpoint).build_model()
    with Library(root) as library:
        assert library.meta("schema_version") == str(SCHEMA_VERSION) and library.music() == {}
        report = library.scan([samples], stem_embedder(model, torch.device("cpu")), sha256_file(identity_checkpoint),
                              identity_checkpoint.name, progress=False)
        assert (report.analysed, report.unchanged, report.added, report.updated) == (5, 5, 0, 0)
        again = library.scan([samples], stem_embedder(model, torch.device("cpu")), sha256_file(identity_checkpoint),
                             identity_checkpoint.name, progress=False)
    assert again.analysed == 0  # analysed once
    assert {p: p.stat().st_mtime_ns for p in (root / "embeddings").rglob("*.npy")} == embeddings
    assert facts_by_name(root)["Bass_100_Am_01.wav"].key == "A minor"


def test_library_upgrade_analyses_every_file_without_facts_and_skips_unreadable_ones(
        tmp_path: Path, identity_checkpoint: Path):
    samples = write_samples(tmp_path / "samples")
    root = build_library(samples, tmp_path / "library", identity_checkpoint)
    with sqlite3.connect(root / "library.sqlite") as db:
        db.execute("DELETE FROM music")
    db.close()
    (samples / "hit.wav").rename(tmp_path / "hit.wav")  # on a drive that is not mounted now
    with Library(root) as library:
        assert library.stats()["without_tempo_and_key"] == 5
        assert library.add_missing_music(progress=False) == 4
        assert library.stats()["without_tempo_and_key"] == 1
        (tmp_path / "hit.wav").rename(samples / "hit.wav")
        assert library.add_missing_music(progress=False) == 1 and library.add_missing_music(progress=False) == 0
    assert facts_by_name(root)["Lead_128_F#m.wav"][:4] == (128.0, 1.0, "name", "F# minor")


def test_a_newer_library_format_is_refused(tmp_path: Path, identity_checkpoint: Path):
    root = build_library(write_samples(tmp_path / "samples"), tmp_path / "library", identity_checkpoint)
    with sqlite3.connect(root / "library.sqlite") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(Exception, match="library format 99"):
        Library(root)


def by_name(result) -> dict:
    return {Path(m.path).name: m for m in result.matches}


def test_results_say_how_each_stem_fits_a_mix_whose_tempo_and_key_the_client_states(engine: Engine):
    mix = melody(8.0, seed=1) + 0.2 * click_track(120.0, 8.0)
    result = engine.query(Query(mix, "bass", k=5, tempo_bpm=120.0, key="C"))
    assert (result.mix_tempo_bpm, result.mix_tempo_source, result.mix_key, result.mix_key_source) == \
        (120.0, "client", "C major", "client")
    matches = by_name(result)
    bass = matches["Bass_100_Am_01.wav"]
    assert (bass.tempo_bpm, bass.key, bass.stretch, bass.transpose, bass.key_relation) == \
        (100.0, "A minor", 1.2, 0, "relative")
    assert bass.offset_beats == pytest.approx(bass.offset_s / 1.2 * 2, abs=1e-3)
    assert bass.offset_bars == pytest.approx(bass.offset_beats / 4, abs=1e-3)
    assert bass.offset_at_end_s == pytest.approx(bass.offset_s + 8.0 * 1.2, abs=1e-3)  # the stem plays 1.2x
    lead = matches["Lead_128_F#m.wav"]
    assert (lead.stretch, lead.transpose, lead.key_relation) == (pytest.approx(120 / 128, abs=1e-4), 3, "clash")
    loop = matches["untitled loop.wav"]
    assert loop.bars == 2 and loop.stretch == pytest.approx(120 / 124, abs=1e-3) and loop.loop
    assert loop.offset_at_end_s == pytest.approx((loop.offset_s + 8.0 * loop.stretch) % loop.duration_s, abs=1e-3)
    hit = matches["hit.wav"]
    assert (hit.tempo_bpm, hit.stretch, hit.offset_beats, hit.key, hit.transpose) == (None,) * 5


def test_the_mix_s_tempo_and_key_are_estimated_when_not_stated(engine: Engine, monkeypatch: pytest.MonkeyPatch):
    mix = click_track(124.0, 8.0) + chords(C_MAJOR * 2)
    result = engine.query(Query(mix, "bass", k=5))
    assert result.mix_tempo_source == "estimated" and result.mix_tempo_bpm == pytest.approx(124.0, rel=0.02)
    assert (result.mix_key, result.mix_key_source) == ("C major", "estimated")
    assert by_name(result)["Bass_100_Am_01.wav"].key_relation == "relative"

    def refuse(*args, **kwargs):
        raise AssertionError("the engine estimated the tempo the client stated")

    monkeypatch.setattr(estimate, "onset_envelope", refuse)
    stated_tempo = engine.query(Query(mix, "bass", k=5, tempo_bpm=90.0))
    assert (stated_tempo.mix_tempo_bpm, stated_tempo.mix_key_source) == (90.0, "estimated")


def test_silence_in_the_mix_gives_no_tempo_or_key_and_no_fit(engine: Engine):
    mix = np.zeros(8 * RATE, np.float32)
    mix[:100] = 0.5  # one click: not silent for the engine, but no rhythm and no pitch
    result = engine.query(Query(mix, "bass", k=5))
    assert result.mix_tempo_bpm is None and result.mix_key is None
    assert all(m.stretch is None and m.transpose is None for m in result.matches)


def test_max_stretch_and_key_compatible_filter_against_the_mix(engine: Engine):
    mix = melody(8.0, seed=1)
    loose = by_name(engine.query(Query(mix, "bass", k=5, tempo_bpm=120.0, key="C major")))
    assert set(loose) == {"Bass_100_Am_01.wav", "Lead_128_F#m.wav", "untitled loop.wav", "chords.wav", "hit.wav"}
    tight = by_name(engine.query(Query(mix, "bass", k=5, tempo_bpm=120.0, key="C major",
                                       filters=Filters(max_stretch=1.1))))
    assert "Bass_100_Am_01.wav" not in tight  # 1.2x is more than 1.1
    assert {"Lead_128_F#m.wav", "untitled loop.wav", "hit.wav"} <= set(tight)  # 0.94x, 0.97x, no tempo
    compatible = by_name(engine.query(Query(mix, "bass", k=5, tempo_bpm=120.0, key="C major",
                                            filters=Filters(key_compatible=True))))
    assert "Lead_128_F#m.wav" not in compatible and {"Bass_100_Am_01.wav", "hit.wav"} <= set(compatible)
    # at 200 BPM, 100 BPM is double time: stretch 1.0
    double = by_name(engine.query(Query(mix, "bass", k=5, tempo_bpm=200.0, filters=Filters(max_stretch=1.05))))
    assert double["Bass_100_Am_01.wav"].stretch == 1.0


def test_the_mix_s_key_and_tempo_rank_the_stems_that_share_them(identity_checkpoint: Path, library: Path):
    """key_weight is added to the score of a stem in the mix's scale (A minor for C major: the relative),
    tempo_weight to one within 4 % of the mix's tempo or at double or half time; nothing to a stem whose
    key or tempo is unknown, or differs; both 0: the compatibility cosine alone."""
    plain = Engine(identity_checkpoint, library, replace(SETTINGS, key_weight=0.0, tempo_weight=0.0))
    keyed = Engine(identity_checkpoint, library, replace(SETTINGS, key_weight=0.25, tempo_weight=0.0))
    timed = Engine(identity_checkpoint, library, replace(SETTINGS, key_weight=0.0, tempo_weight=0.5))
    mix = melody(8.0, seed=1)

    def gain(engine: Engine, **stated) -> dict[str, float]:
        base = {name: m.score for name, m in by_name(plain.query(Query(mix, "bass", k=5, **stated))).items()}
        return {name: round(m.score - base[name], 4)
                for name, m in by_name(engine.query(Query(mix, "bass", k=5, **stated))).items()}

    assert gain(keyed, key="C major", tempo_bpm=120.0) == {
        "Bass_100_Am_01.wav": 0.25, "Lead_128_F#m.wav": 0.0, "untitled loop.wav": 0.0, "chords.wav": 0.25,
        "hit.wav": 0.0}
    assert gain(timed, key="C major", tempo_bpm=200.0) == {  # 100 BPM is half of 200
        "Bass_100_Am_01.wav": 0.5, "Lead_128_F#m.wav": 0.0, "untitled loop.wav": 0.0, "chords.wav": 0.0,
        "hit.wav": 0.0}
    assert gain(timed, key="C major", tempo_bpm=125.0)["untitled loop.wav"] == 0.5  # 124 BPM: within 4 %


# -- the wire ----------------------------------------------------------------------------------


def test_tempo_and_key_options_are_validated_on_every_wire():
    assert query_options("bass", tempo=124, key="F#m")[4:] == (124.0, "F#m")
    for bad in ({"tempo": 10}, {"tempo": float("nan")}, {"tempo": "fast"}, {"tempo": True}, {"key": "H minor"},
                {"key": 5}):
        with pytest.raises(ProtocolError, match="tempo|key") as error:
            query_options("bass", **bad)
        assert error.value.code == "bad_request"
    for bad in ({"max_stretch": 0.5}, {"max_stretch": 9}, {"max_stretch": "x"}, {"key_compatible": 1},
                {"key_compatible": "yes"}):
        with pytest.raises(ProtocolError, match="max_stretch|key_compatible"):
            query_options("bass", filters=bad)
    assert query_options("bass", filters={"max_stretch": 1.1, "key_compatible": True}).filters[5:] == (1.1, True)
    # OSC: pairs after k; key_compatible as 0/1, which every OSC client can send
    options = _options_from_pairs("bass", 5, ["tempo", 124, "key", "Am", "key_compatible", 1, "max_stretch", 1.2])
    assert (options.tempo, options.key, options.filters.key_compatible, options.filters.max_stretch) == \
        (124.0, "Am", True, 1.2)
    with pytest.raises(ProtocolError):
        _options_from_pairs("bass", 5, ["key_compatible", 2])


def test_osc_results_carry_unknowns_as_sentinels_and_read_back_as_null(engine: Engine):
    mix = melody(8.0, seed=1)
    result = engine.query(Query(mix, "bass", k=5, tempo_bpm=120.0, key="C major")).to_dict()
    replies = result_replies("q", result)
    assert all(len(args) == 1 + len(RESULT_FIELDS) for address, args in replies if address.endswith("/result"))
    read = [match_from_result(args[1:]) for address, args in replies if address.endswith("/result")]
    for sent, back in zip(result["matches"], read):
        assert {field: back[field] for field in RESULT_FIELDS} == {field: sent[field] for field in RESULT_FIELDS}
    done = replies[-1][1]
    assert mix_from_done(done[3:]) == {"mix_tempo_bpm": 120.0, "mix_key": "C major"}
    unknown = next(args for address, args in replies if address.endswith("/result") and args[2].endswith("hit.wav"))
    assert unknown[RESULT_FIELDS.index("tempo_bpm") + 1] == -1.0 and unknown[RESULT_FIELDS.index("key") + 1] == ""
    old_server = match_from_result(unknown[1:10])  # a server from before these fields sends nine
    assert "tempo_bpm" not in old_server and old_server["loop"] in (True, False)
    assert mix_from_done([]) == {"mix_tempo_bpm": None, "mix_key": None}
