"""The popular corpus's arrangements (training/corpus/popular): seeded songs whose genre, tempo,
key, chords, form and parts are the ground truth, checked as music: notes in the key or the chord,
bass in the bass register on the chord roots and with the kick, leads on chord tones, fills at
section ends, a key-profile estimate that agrees, voice-leading that moves less than root position.
No audio: a few hundred songs take seconds."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from stemserver.vocabulary import normalize_label, standard_vocabulary
from stemserver_training.corpus.popular.arrange import arrange_song, song_record, swing_warp
from stemserver_training.corpus.popular.bass import HIGH, LOW, ROOT_STYLES
from stemserver_training.corpus.popular.drums import fill_piece
from stemserver_training.corpus.popular.genres import FORMS, GENRES, PROGRESSIONS, SECTION_SLOTS
from stemserver_training.corpus.popular.grooves import GROOVES, PIECES, STEPS_PER_BEAT, TOMS, groove_bars, meter_of
from stemserver_training.corpus.popular.melody import strong
from stemserver_training.corpus.popular.score import ROLES, TIMBRE_KINDS, Song
from stemserver_training.corpus.popular.theory import (
    FLAT_NAMES,
    MODES,
    QUALITIES,
    SHARP_NAMES,
    Chord,
    estimate_key,
    key_name,
    lead_voices,
    movement,
    parse_roman,
    progression_bars,
    root_position,
    same_key_family,
    scale,
)
from stemserver_training.corpus.popular.timbres import (
    ACOUSTIC_KITS,
    DRUM_KITS,
    GM_KIT_PROGRAMS,
    MACHINE_KITS,
    PERCUSSION_KITS,
    SYNTH_PARAMS,
    Voice,
)

SYNTH_RECIPES = {"saw", "square", "pulse", "acid", "fm", "supersaw", "808", "noise_hat", "pad", "pluck", "riser",
                 "sweep", "impact", "noise"}
HARMONIC_ROLES = ("bass", "chords", "arp", "lead", "vocal")
TOM_KEYS = {PIECES[t][0] for t in TOMS}
KICK = 36


@pytest.fixture(scope="module")
def songs() -> list[Song]:
    return [arrange_song(2026, index=i) for i in range(300)]


def kicks(song: Song) -> list[float]:
    return [n.start for p in song.parts if p.name in ("kick", "drums") for n in p.notes if n.pitch == KICK]


def chord_near(song: Song, beat: float, tolerance: float = 0.12) -> set[int]:
    """Chord tones sounding within `tolerance` beats of a time (humanisation moves notes a little)."""
    pcs: set[int] = set()
    for t in (beat - tolerance, beat, beat + tolerance):
        bar = min(song.bars - 1, max(0, int(t // song.meter)))
        symbols = song.chords[bar].split("|")
        half = min(len(symbols) - 1, int((t - bar * song.meter) * len(symbols) / song.meter))
        pcs |= set(chord_of_symbol(symbols[half]).pitch_classes)
    return pcs


def chord_of_symbol(symbol: str) -> Chord:
    name = symbol[:2] if len(symbol) > 1 and symbol[1] in "#b" else symbol[:1]
    root = (SHARP_NAMES.index(name) if name in SHARP_NAMES else FLAT_NAMES.index(name))
    quality = symbol[len(name):]
    assert quality in QUALITIES, symbol
    return Chord(root, quality)


def part(song: Song, name: str):
    return next(p for p in song.parts if p.name == name)


# --- theory -------------------------------------------------------------------------------------


def test_roman_numerals_read_against_the_major_scale_with_borrowed_and_secondary_chords():
    c, a = 0, 9
    assert parse_roman("bVII", c) == Chord(10, "")  # Bb in C: borrowed from the minor
    assert parse_roman("iv", c) == Chord(5, "m")
    assert parse_roman("V7/vi", c) == Chord(4, "7")  # E7, the dominant of A minor
    assert parse_roman("V/V", c) == Chord(2, "")
    assert parse_roman("iih7", c) == Chord(2, "m7b5")
    assert parse_roman("ii7", c) == Chord(2, "m7") and parse_roman("Imaj7", c) == Chord(0, "maj7")
    assert [c.root for bar in progression_bars(("i", "bVI", "bIII", "bVII"), a) for c in bar] == [9, 5, 0, 7]
    assert key_name(6, "major") == "Gb major" and key_name(6, "minor") == "F# minor"
    with pytest.raises(ValueError, match="roman numeral"):
        parse_roman("X", c)


def test_every_progression_and_quality_has_voicings_in_every_key():
    for name, (modes, bars) in PROGRESSIONS.items():
        assert modes and all(m in MODES for m in modes), name
        for tonic in range(12):
            for bar in progression_bars(bars, tonic):
                assert 1 <= len(bar) <= 2
                assert all(lead_voices([chord], 5, 40, 71) for chord in bar)


def test_voice_leading_moves_less_than_root_position_voicings():
    led, naive = [], []
    for _, bars in PROGRESSIONS.values():
        for tonic in range(12):
            chords = [c for bar in progression_bars(bars * 2, tonic) for c in bar]
            voiced = lead_voices(chords, 4, 48, 72)
            rooted = [root_position(c, 4, 48) for c in chords]
            assert all(set(p % 12 for p in v) <= set(c.pitch_classes) for v, c in zip(voiced, chords))
            led += [movement(x, y) for x, y in zip(voiced, voiced[1:])]
            naive += [movement(x, y) for x, y in zip(rooted, rooted[1:])]
    assert np.mean(led) < 0.6 * np.mean(naive)  # measured: 3.9 against 16.9 semitones per change


def test_the_key_estimate_finds_a_scale_and_its_relatives():
    for tonic in range(12):
        for mode in ("major", "minor"):
            weights = np.zeros(12)
            weights[list(scale(tonic, mode))] = 1.0
            weights[tonic] += 2.0
            weights[(tonic + 7) % 12] += 1.0
            assert estimate_key(weights) == (tonic, mode)
    assert same_key_family((0, "major"), 9, "minor") and same_key_family((2, "minor"), 2, "dorian")
    assert not same_key_family((7, "major"), 0, "major")


# --- tables -------------------------------------------------------------------------------------


def test_soundfont_kits_are_bank_128_presets_of_their_kind():
    for kind, voices in (("acoustic", ACOUSTIC_KITS), ("machine", MACHINE_KITS), ("percussion", PERCUSSION_KITS)):
        programs = {v.timbre.program for v in voices if v.timbre.name == "gm"}
        assert programs == set(GM_KIT_PROGRAMS[kind])
        assert {DRUM_KITS[v.timbre.name][0] for v in voices if v.timbre.name != "gm"} == {kind}


def test_the_tables_are_consistent():
    assert len(GENRES) >= 10
    for name, pieces in GROOVES.items():
        lengths = {len(p) for p in pieces.values()}
        assert len(lengths) == 1 and set(pieces) <= set(PIECES), name
        assert lengths.pop() == groove_bars(name) * meter_of(name) * STEPS_PER_BEAT
    for genre in GENRES.values():
        assert genre.bpm[0] < genre.bpm[1] and 0 <= genre.swing[0] <= genre.swing[1] <= 1
        assert set(genre.grooves) <= set(GROOVES) and set(genre.forms) <= set(FORMS)
        for progression in genre.progressions:
            assert set(PROGRESSIONS[progression][0]) & set(genre.modes), (genre.name, progression)
        assert set(genre.parts) <= set().union(*SECTION_SLOTS.values())
        voices: list[Voice] = [*genre.kits, *genre.bass.voices, *(v for s in genre.parts.values() for v in s.voices)]
        for voice in voices:
            assert voice.timbre.kind in TIMBRE_KINDS
            assert len(voice.label_path) == 2 and all(normalize_label(x) == x for x in voice.label_path)
            if voice.timbre.kind == "drumkit":
                assert voice.timbre.name in DRUM_KITS
                assert voice.timbre.name != "gm" or voice.timbre.bank == 128
            if voice.timbre.kind == "synth":
                assert voice.timbre.name in SYNTH_RECIPES and voice.timbre.name in SYNTH_PARAMS
            if voice.timbre.kind == "soundfont":
                assert 0 <= voice.timbre.program <= 127


# --- songs ----------------------------------------------------------------------------------------


def test_a_song_is_a_function_of_its_seed_and_index():
    a, b = arrange_song(5, index=3), arrange_song(5, index=3)
    assert asdict(a) == asdict(b)
    assert asdict(arrange_song(5, index=4)) != asdict(a) and asdict(arrange_song(6, index=3)) != asdict(a)
    assert arrange_song(5, genre="funk", bars=12).genre == "funk"
    with pytest.raises(ValueError, match="choose one of"):
        arrange_song(5, genre="polka")


def test_songs_cover_every_genre_key_mode_and_meter(songs):
    assert {s.genre for s in songs} == set(GENRES)
    assert {(s.tonic, s.mode) for s in songs if s.mode in ("major", "minor")} == {
        (t, m) for t in range(12) for m in ("major", "minor")}
    assert {"dorian", "mixolydian", "phrygian"} <= {s.mode for s in songs}
    assert {s.meter for s in songs} == {3, 4}
    assert len({s.bpm for s in songs}) > 50


@pytest.mark.parametrize("genre", sorted(GENRES))
def test_each_genre_keeps_to_its_tempo_range_meter_and_modes(genre):
    template = GENRES[genre]
    for index in range(15):
        song = arrange_song(31, genre=genre, index=index)
        assert template.bpm[0] <= song.bpm <= template.bpm[1]
        assert template.swing[0] <= song.swing <= template.swing[1]
        assert song.meter in {meter_of(g) for g in template.grooves}
        assert song.mode in template.modes


def test_bars_and_seconds_set_the_length_and_sections_cover_every_bar(songs):
    assert arrange_song(1, bars=13).bars == 13
    song = arrange_song(1, genre="house", seconds=30.0)
    assert abs(song.seconds - 30.0) <= song.meter * 60 / song.bpm
    for song in songs:
        assert song.sections[0].start_bar == 0 and len(song.chords) == song.bars
        for s, t in zip(song.sections, song.sections[1:]):
            assert s.bars > 0 and s.start_bar + s.bars == t.start_bar
        assert song.sections[-1].start_bar + song.sections[-1].bars == song.bars


def test_parts_are_well_formed_stems(songs):
    for song in songs:
        names = [p.name for p in song.parts]
        assert len(names) == len(set(names)) and any(p.role in ("chords", "arp", "vocal") for p in song.parts), song.id
        end = song.bars * song.meter + 0.5
        for p in song.parts:
            assert p.role in ROLES and p.notes, (song.id, p.name)
            assert all(0 <= n.start < end and n.length > 0 and 1 <= n.velocity <= 127 for n in p.notes)
            assert all(n.glide_to is None for n in p.notes) or p.style in ("808", "acid")
            if p.role == "fx":
                assert {n.pitch for n in p.notes} == {60} and p.timbre.kind in ("synth", "soundfont")


def test_bass_and_lead_play_one_note_at_a_time(songs):
    for song in songs:
        for p in song.parts:
            if p.role in ("bass", "lead"):
                ends = [n.start + n.length for n in p.notes]
                assert all(end <= n.start + 0.1 for end, n in zip(ends, p.notes[1:])), (song.id, p.name, p.style)


def test_chord_notes_last_at_least_a_twentieth_of_a_beat(songs):
    """Fast strums at high tempi once left their last strings no time at all."""
    for song in songs:
        for p in song.parts:
            if p.role in ("chords", "arp", "vocal"):
                assert min(n.length for n in p.notes) >= 0.05, (song.id, p.name, p.style)


def test_harmonic_notes_are_in_the_scale_or_the_chord(songs):
    """Chord, arp, lead and vocal parts never leave the key and its chords; bass lines only by a
    walking line's chromatic approach notes (bass.py), on the last beat of a bar."""
    for song in songs:
        key = set(scale(song.tonic, song.mode))
        for p in song.parts:
            if p.role not in HARMONIC_ROLES:
                continue
            outside = [n for n in p.notes if n.pitch % 12 not in key | chord_near(song, n.start)]
            if p.role == "bass":
                assert not outside or p.style == "walking", (song.id, outside[:3])
                assert all(abs(n.start % song.meter - (song.meter - 1)) < 0.15 for n in outside), song.id
            else:
                assert not outside, (song.id, p.name, p.style, outside[:3])


def test_bass_stays_in_the_bass_register_on_the_chord_roots(songs):
    checked = 0
    for song in songs:
        for p in song.parts:
            if p.role != "bass":
                continue
            assert all(LOW <= n.pitch <= HIGH for n in p.notes), song.id
            if p.style not in ROOT_STYLES:
                continue
            for n in p.notes:
                bar = round(n.start / song.meter)
                if abs(n.start - bar * song.meter) < 0.1 and bar < song.bars:
                    assert n.pitch % 12 == chord_of_symbol(song.chords[bar].split("|")[0]).root, song.id
                    checked += 1
    assert checked > 1000


def test_the_bass_locks_to_the_kick_in_the_genres_that_do_that():
    def coincidence(genre: str, styles: tuple[str, ...] = ROOT_STYLES) -> float:
        hits = together = 0
        for index in range(40):
            song = arrange_song(8, genre=genre, index=index)
            if "bass" not in [p.name for p in song.parts] or part(song, "bass").style not in styles:
                continue
            bass = np.array([n.start for n in part(song, "bass").notes])
            for k in kicks(song):
                bar = int(k // song.meter)
                if bass.size and np.min(np.abs(bass - bar * song.meter)) < song.meter * 1.5:  # the bass plays here
                    hits += 1
                    together += np.min(np.abs(bass - k)) < 0.1
        assert hits > 50, genre
        return together / hits

    for genre in (g for g in GENRES.values() if g.lock):
        assert coincidence(genre.name) > 0.9, genre.name
    assert coincidence("house", ("offbeat",)) < 0.25  # an off-beat bass does not (garage kicks hit some off-beats)


def test_lead_notes_on_strong_beats_are_chord_tones(songs):
    strong_notes = tones = 0
    for song in songs:
        for p in song.parts:
            if p.role != "lead":
                continue
            for n in p.notes:
                beat = round(n.start)
                if abs(n.start - beat) < 0.06 and strong(beat % song.meter, song.meter):
                    strong_notes += 1
                    tones += n.pitch % 12 in chord_near(song, beat, 0.0)
    assert strong_notes > 500 and tones / strong_notes > 0.95


def test_lead_motifs_repeat():
    """A motif's rhythm comes back bar after bar: most lead bars share their onset pattern with another."""
    repeated = total = 0
    for index in range(40):
        song = arrange_song(12, genre="pop", index=index)
        if "lead" not in [p.name for p in song.parts]:
            continue
        rhythms: dict[int, tuple] = {}
        for n in part(song, "lead").notes:
            bar = int(n.start // song.meter)
            rhythms[bar] = rhythms.get(bar, ()) + (round((n.start % song.meter) * 2),)
        values = list(rhythms.values())
        repeated += sum(values.count(r) > 1 for r in values)
        total += len(values)
    assert total > 100 and repeated / total > 0.6


def test_a_key_profile_estimate_agrees_with_the_key_on_most_songs(songs):
    agree = []
    for song in songs:
        weights = np.zeros(12)
        for p in song.parts:
            if p.role in HARMONIC_ROLES:
                for n in p.notes:
                    weights[n.pitch % 12] += n.length
        agree.append(same_key_family(estimate_key(weights), song.tonic, song.mode))
    assert np.mean(agree) > 0.8  # measured 0.88 over 300 songs (seed 11)


def test_drums_fill_the_ends_of_sections(songs):
    checked = 0
    for song in songs:
        grooves = {p.style for p in song.parts if p.role == "drums"}
        if not grooves:
            continue
        keys = {PIECES[fill_piece(grooves.pop())][0]} | TOM_KEYS
        drums = [n for p in song.parts if p.role == "drums" for n in p.notes if n.pitch in keys]
        starts = np.array([n.start for n in drums])
        for section, following in zip(song.sections, song.sections[1:]):
            boundary = following.start_bar * song.meter
            near = (starts >= boundary - 1.1) & (starts < boundary - 0.05)
            before = ((starts >= boundary - song.meter) & (starts < boundary - 1.1)).any()
            after = ((starts >= boundary) & (starts < boundary + song.meter)).any()
            if before or after:  # the fill's piece plays on one side of the boundary
                assert near.sum() >= 2, (song.id, section)
                checked += 1
    assert checked > 300


def test_split_drums_and_kits_both_occur_with_piece_labels(songs):
    kits = [p for s in songs for p in s.parts if p.name == "drums"]
    pieces = {p.name: p.label_path for s in songs for p in s.parts if p.role == "drums" and p.name != "drums"}
    assert len(kits) > 30 and {"kick", "snare", "clap", "hats", "perc"} <= set(pieces)
    assert pieces["kick"] == ("drums", "kick drum")


def test_parts_change_over_the_form(songs):
    """Sections differ in which parts play: breaks drop the drums and bass of the drops around them."""
    changed = 0
    for song in songs:
        playing = []
        for s in song.sections:
            lo, hi = s.start_bar * song.meter - 0.1, (s.start_bar + s.bars) * song.meter - 0.1  # humanised onsets
            playing.append({p.name for p in song.parts if p.role != "fx" and any(lo <= n.start < hi for n in p.notes)})
            if s.name == "break":
                assert not playing[-1] & {"kick", "bass"}, song.id
        changed += len({frozenset(x) for x in playing}) > 1
    assert changed > 0.9 * len(songs)


def test_swing_delays_the_off_beats_only():
    assert swing_warp(0.5, 1.0, 0.5) == pytest.approx(2 / 3)
    assert swing_warp(1.0, 1.0, 0.5) == pytest.approx(1.0) and swing_warp(0.0, 0.7, 0.25) == 0.0
    assert swing_warp(0.25, 0.0, 0.25) == pytest.approx(0.25)


def test_the_record_is_the_ground_truth_without_notes(songs):
    record = song_record(songs[0])
    assert json.loads(json.dumps(record)) == record
    assert {"genre", "bpm", "meter", "key", "tonic", "mode", "chords", "sections", "parts"} <= set(record)
    assert all({"role", "label_path", "timbre", "effects", "style"} <= set(p) for p in record["parts"])
    assert "notes" not in json.dumps(record["sections"]) and isinstance(record["parts"][0]["notes"], int)


def test_every_label_the_corpus_writes_is_in_the_products_vocabulary(songs):
    """Two-level labels in the words the product already uses, so `stemserver eval` can report fine and
    coarse labels and a user's query for "claps" or "riser" meets the label trained with."""
    vocabulary = set(standard_vocabulary())
    labels = {label for song in songs for part in song.parts for label in part.label_path}
    assert labels and labels <= vocabulary, sorted(labels - vocabulary)
