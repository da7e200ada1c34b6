"""Tempo and key: the rules that relate a stem to a mix (stemserver.music), what files state
(stemserver.tags, on real files with real chunks and tags written here), and the estimates from
audio (stemserver.estimate) on audio whose tempo and key are known by construction."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemserver.estimate import estimate_facts, estimate_key, estimate_tempo, file_facts, snap_to_loop, whole_bars
from stemserver.music import (
    Key,
    beats_at,
    key_name,
    key_relation,
    mirex_key_score,
    parse_key,
    stretch_to,
    transpose_to,
)
from stemserver.tags import facts_from_name, stated_facts

RATE = 16_000

# -- the rules ------------------------------------------------------------------------------------


def test_keys_in_the_short_forms_of_sample_packs():
    assert parse_key("Am") == parse_key("A minor") == parse_key("amin") == Key(9, "minor")
    assert parse_key("F#m") == Key(6, "minor") and parse_key("C#maj") == Key(1, "major")
    assert parse_key("Bbm") == Key(10, "minor") and parse_key("Ebmajor") == Key(3, "major")
    assert parse_key("Bb") is None and parse_key("Bb", bare_tonic=True) == Key(10, "major")
    assert key_name(Key(6, "minor")) == "F# minor" and key_name(Key(10, "major")) == "Bb major"
    assert parse_key(key_name(Key(3, "dorian"))) == Key(3, "dorian")


def test_stretch_is_the_playback_rate_to_the_mix_tempo_in_double_or_half_time_when_closer():
    assert stretch_to(100, 120) == pytest.approx(1.2)
    assert stretch_to(120, 100) == pytest.approx(100 / 120)
    assert stretch_to(62, 124) == pytest.approx(1.0)  # half time: plays as it is
    assert stretch_to(170, 87) == pytest.approx(174 / 170)  # drum and bass under a half-time mix
    assert stretch_to(90, 124) == pytest.approx(124 / 90)  # 1.38 beats 0.69


@pytest.mark.parametrize("stem, mix, semitones, relation", [
    ("C major", "C major", 0, "same"),
    ("A minor", "C major", 0, "relative"),
    ("D dorian", "C major", 0, "relative"),
    ("G major", "C major", 5, "dominant"),
    ("F major", "C major", 7 - 12, "subdominant"),
    ("C minor", "C major", -3, "clash"),
    ("F# major", "C major", 6, "clash"),
    ("E minor", "A minor", 5, "dominant"),
])
def test_transpose_brings_the_stem_onto_the_mix_scale_the_short_way(stem, mix, semitones, relation):
    stem_key, mix_key = parse_key(stem), parse_key(mix)
    assert transpose_to(stem_key, mix_key) == semitones
    assert -5 <= semitones <= 6
    assert key_relation(stem_key, mix_key) == relation
    moved = Key((stem_key.tonic + semitones) % 12, stem_key.mode)
    assert key_relation(moved, mix_key) in ("same", "relative")


def test_mirex_weighted_key_score():
    c = parse_key("C major")
    assert mirex_key_score(parse_key("C major"), c) == 1.0
    assert mirex_key_score(parse_key("G major"), c) == 0.5  # a fifth above
    assert mirex_key_score(parse_key("F major"), c) == 0.0  # a fifth below is not credited (mir_eval's default)
    assert mirex_key_score(parse_key("A minor"), c) == 0.3
    assert mirex_key_score(parse_key("C minor"), c) == 0.2
    assert mirex_key_score(parse_key("D major"), c) == 0.0
    assert mirex_key_score(parse_key("D dorian"), parse_key("D minor")) == 1.0  # modes read by their third


def test_an_offset_in_beats_counts_the_stem_at_its_stretched_speed():
    # 2 s into a 100 BPM stem played at 1.2x is 1.667 s of a 120 BPM mix: 3.33 beats
    assert beats_at(2.0, 1.2, 120) == pytest.approx(2.0 / 1.2 * 2)


# -- what files state --------------------------------------------------------------------------


@pytest.mark.parametrize("name, tempo, key", [
    ("Bass_124_Fmin_03", 124.0, "F minor"),
    ("Drums_92_01", 92.0, None),
    ("Kick_07", None, None),
    ("pad 90bpm A minor", 90.0, "A minor"),
    ("Keys_120_C_01", 120.0, "C major"),
    ("Lead_C#maj_128", 128.0, "C# major"),
    ("F#m chords 85 BPM", 85.0, "F# minor"),
    ("Guitar-Am-100", 100.0, "A minor"),
    ("Loop_120_140", None, None),  # two candidates: neither is trusted
    ("Track 01", None, None),
    ("Take 1995 final", None, None),
    ("Vocal_A_07", None, None),  # a letter alone is a key only beside the tempo
])
def test_names_state_tempo_and_key_as_sample_packs_write_them(name, tempo, key):
    found_tempo, found_key = facts_from_name(name)
    assert found_tempo == tempo
    assert (key_name(found_key) if found_key else None) == key


def write_wav(path: Path, seconds: float = 1.0, chunks: bytes = b"") -> Path:
    """A real WAV file with extra RIFF chunks after its data, the RIFF size fixed up."""
    sf.write(path, np.zeros(int(seconds * RATE), np.float32), RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes()) + chunks
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))
    return path


def acid_chunk(tempo: float, beats: int, numerator: int = 4, one_shot: bool = False) -> bytes:
    body = struct.pack("<IHHfIHHf", 1 if one_shot else 2, 60, 0x8000, 0.0, beats, 4, numerator, tempo)
    return b"acid" + struct.pack("<I", len(body)) + body


def id3_tag(frames: dict[str, str], version: int = 3) -> bytes:
    body = b""
    for frame, text in frames.items():
        payload = b"\x03" + text.encode() + b"\0"
        size = struct.pack(">I", len(payload)) if version == 3 else _syncsafe(len(payload))
        body += frame.encode() + size + b"\0\0" + payload
    return b"ID3" + bytes([version, 0, 0]) + _syncsafe(len(body)) + body


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def test_a_wav_acid_chunk_gives_tempo_and_bars(tmp_path: Path):
    loop = write_wav(tmp_path / "untitled.wav", chunks=acid_chunk(126.0, beats=8))
    facts = stated_facts(loop)
    assert (facts.tempo_bpm, facts.tempo_source, facts.bars, facts.key) == (126.0, "acid", 2, None)
    hit = write_wav(tmp_path / "hit.wav", chunks=acid_chunk(126.0, beats=0, one_shot=True))
    assert stated_facts(hit).tempo_bpm is None  # an Acidized one-shot has no tempo


def test_an_id3_chunk_in_a_wav_and_an_id3_tag_on_an_mp3(tmp_path: Path):
    tag = id3_tag({"TBPM": "98", "TKEY": "Ebm"})
    wav = write_wav(tmp_path / "a.wav", chunks=b"id3 " + struct.pack("<I", len(tag)) + tag)
    assert stated_facts(wav)[:6] == (98.0, 1.0, "id3", "Eb minor", 1.0, "id3")
    mp3 = tmp_path / "b.mp3"
    sf.write(mp3, np.zeros(RATE, np.float32), RATE, format="MP3")
    mp3.write_bytes(id3_tag({"TKEY": "G", "TBPM": "140"}, version=4) + mp3.read_bytes())
    assert (stated_facts(mp3).tempo_bpm, stated_facts(mp3).key) == (140.0, "G major")
    assert sf.info(mp3).frames > 0  # still a readable MP3


def test_flac_vorbis_comments(tmp_path: Path):
    flac = tmp_path / "c.flac"
    sf.write(flac, np.zeros(RATE, np.float32), RATE, format="FLAC")
    data = flac.read_bytes()
    comments = [b"BPM=87.5", b"INITIALKEY=F#m"]
    block = struct.pack("<I", 6) + b"stemsv" + struct.pack("<I", len(comments))
    block += b"".join(struct.pack("<I", len(c)) + c for c in comments)
    streaminfo = bytearray(data[4:8 + 34])
    last = streaminfo[0] & 0x80
    streaminfo[0] &= 0x7F  # STREAMINFO is no longer the last block: the comment block follows it
    header = bytes([4 | last]) + len(block).to_bytes(3, "big") if last else None
    if header is None:  # libsndfile wrote more blocks after STREAMINFO: insert ours right after it
        header = bytes([4]) + len(block).to_bytes(3, "big")
    flac.write_bytes(data[:4] + bytes(streaminfo) + header + block + data[8 + 34:])
    facts = stated_facts(flac)
    assert (facts.tempo_bpm, facts.key, facts.tempo_source) == (87.5, "F# minor", "vorbis")
    assert sf.info(flac).frames == RATE


def mp4_atom(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def test_mp4_tmpo_and_initialkey_atoms(tmp_path: Path):
    data = lambda payload, kind=21: mp4_atom(b"data", struct.pack(">II", kind, 0) + payload)  # noqa: E731
    ilst = mp4_atom(b"ilst", mp4_atom(b"tmpo", data(struct.pack(">H", 105)))
                    + mp4_atom(b"----", mp4_atom(b"mean", b"\0\0\0\0com.apple.iTunes")
                               + mp4_atom(b"name", b"\0\0\0\0initialkey") + data(b"Dm", kind=1)))
    moov = mp4_atom(b"moov", mp4_atom(b"udta", mp4_atom(b"meta", b"\0\0\0\0" + ilst)))
    m4a = tmp_path / "d.m4a"
    m4a.write_bytes(mp4_atom(b"ftyp", b"M4A \0\0\0\0") + moov)
    assert stated_facts(m4a)[:6] == (105.0, 1.0, "mp4", "D minor", 1.0, "mp4")


def test_tags_win_over_the_name_and_implausible_or_damaged_tags_state_nothing(tmp_path: Path):
    tagged = write_wav(tmp_path / "Bass_90_Cmin.wav", chunks=acid_chunk(126.0, beats=8))
    assert stated_facts(tagged)[:6] == (126.0, 1.0, "acid", "C minor", 1.0, "name")
    silly = write_wav(tmp_path / "Bass_90.wav", chunks=acid_chunk(1000.0, beats=8))
    assert (stated_facts(silly).tempo_bpm, stated_facts(silly).tempo_source) == (90.0, "name")
    broken = tmp_path / "Lead_128.wav"
    broken.write_bytes(b"RIFF\xff\xff\xff\x7fWAVEacid\x18\x00")  # cut inside the chunk
    assert stated_facts(broken).tempo_bpm == 128.0


# -- estimates from audio ------------------------------------------------------------------------


def click_track(bpm: float, seconds: float, accent_every: int = 4, seed: int = 0) -> np.ndarray:
    """Decaying noise bursts on every beat, louder on the first of each bar."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE), np.float32)
    burst = rng.standard_normal(800).astype(np.float32) * np.exp(-np.arange(800) / 120)
    beat, t = 0, 0.0
    while t < seconds:
        start = int(t * RATE)
        piece = burst[: len(out) - start] * (1.0 if beat % accent_every == 0 else 0.6)
        out[start:start + len(piece)] += piece
        beat, t = beat + 1, (beat + 1) * 60.0 / bpm
    return out * 0.5


def chords(key_chords: list[list[int]], seconds_each: float = 1.0) -> np.ndarray:
    """Sine triads (MIDI notes), one after the other."""
    t = np.arange(int(seconds_each * RATE)) / RATE
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) * 20)
    return np.concatenate([sum(np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * t) for n in chord) * envelope
                           for chord in key_chords]).astype(np.float32) * 0.2


@pytest.mark.parametrize("bpm", [87.0, 124.0, 140.0])
def test_the_tempo_of_a_click_track_within_two_percent(bpm):
    found, confidence = estimate_tempo(click_track(bpm, 12.0), RATE)
    assert found == pytest.approx(bpm, rel=0.02) and confidence > 0.3


def test_a_loop_gets_its_exact_tempo_and_bar_count_from_its_length():
    loop = click_track(124.0, 2 * 4 * 60 / 124)  # two bars
    facts = estimate_facts(loop, RATE)
    assert facts.bars == 2 and facts.tempo_bpm == pytest.approx(124.0, abs=0.01) and facts.tempo_source == "audio"
    assert estimate_facts(loop, RATE, loop_grid=False).bars is None  # a mix is never a loop
    assert snap_to_loop(7.0, 123.0) == (123.0, None)  # 7 s is no whole number of bars near 123 BPM
    assert whole_bars(4 * 60 / 120 * 4, 120.0) == 4 and whole_bars(3.3, 120.0) is None


def test_one_shots_and_sustained_noise_have_no_tempo():
    hit = click_track(120.0, 0.8)
    assert estimate_tempo(hit, RATE)[0] is None
    noise = np.random.default_rng(1).standard_normal(RATE * 8).astype(np.float32) * 0.1
    assert estimate_tempo(noise, RATE)[0] is None


C_MAJOR = [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]  # I IV V I
A_MINOR = [[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]  # i iv V i


@pytest.mark.parametrize("progression, semitones, expected", [
    (C_MAJOR, 0, "C major"), (C_MAJOR, 6, "F# major"), (A_MINOR, 0, "A minor"), (A_MINOR, 3, "C minor"),
])
def test_the_key_of_a_chord_progression(progression, semitones, expected):
    audio = chords([[n + semitones for n in chord] for chord in progression] * 2)
    key, confidence = estimate_key(audio, RATE)
    assert key is not None and key_name(key) == expected and confidence > 0.5


def test_drums_and_noise_have_no_key():
    assert estimate_key(click_track(120.0, 8.0), RATE)[0] is None
    noise = np.random.default_rng(2).standard_normal(RATE * 4).astype(np.float32) * 0.1
    assert estimate_key(noise, RATE)[0] is None


def test_file_facts_decode_only_when_the_name_does_not_say_everything(tmp_path: Path):
    def refuse():
        raise AssertionError("decoded although the name states tempo and key")

    facts = file_facts(tmp_path / "Bass_124_Fmin_03.wav", refuse, RATE, duration_s=2 * 4 * 60 / 124)
    assert (facts.tempo_bpm, facts.key, facts.bars, facts.tempo_source) == (124.0, "F minor", 2, "name")
    audio = chords(C_MAJOR * 2)
    facts = file_facts(tmp_path / "Keys_96_03.wav", lambda: audio, RATE, duration_s=len(audio) / RATE)
    assert (facts.tempo_bpm, facts.tempo_source, facts.key, facts.key_source) == (96.0, "name", "C major", "audio")


def test_only_what_nobody_states_is_estimated(monkeypatch: pytest.MonkeyPatch):
    """A stated key skips the constant-Q chroma (most of a query's music time), a stated tempo the
    onset envelope; what is estimated is what the full estimate finds."""
    import stemserver.estimate as estimate

    audio = np.concatenate([chords(A_MINOR * 2), np.zeros(RATE, np.float32)]) + click_track(120.0, 9.0)
    full = estimate_facts(audio, RATE, loop_grid=False)
    assert full.tempo_bpm is not None and full.key is not None

    def refuse(*args, **kwargs):
        raise AssertionError("estimated what was stated")

    with monkeypatch.context() as patch:
        patch.setattr(estimate, "harmonic_chroma", refuse)
        tempo_only = estimate_facts(audio, RATE, loop_grid=False, key=False)
    assert (tempo_only.tempo_bpm, tempo_only.tempo_confidence, tempo_only.key) == (full.tempo_bpm,
                                                                                    full.tempo_confidence, None)
    monkeypatch.setattr(estimate, "onset_envelope", refuse)
    key_only = estimate_facts(audio, RATE, loop_grid=False, tempo=False)
    assert (key_only.key, key_only.key_confidence, key_only.tempo_bpm) == (full.key, full.key_confidence, None)


def test_the_constant_q_filters_are_built_once_and_the_transform_is_the_same(monkeypatch: pytest.MonkeyPatch):
    """librosa builds its constant-Q filter bank on every call; the key estimate keeps it (a copy per
    call, as librosa scales it in place: a second call on a kept bank must not be scaled twice)."""
    import warnings

    from librosa.core import constantq

    import stemserver.estimate as estimate

    librosa = estimate._librosa()
    kept = constantq.__vqt_filter_fft
    built = []

    def counting_build(*args, **kwargs):
        built.append(1)
        return kept.build(*args, **kwargs)

    audio = chords(C_MAJOR)

    def cqt():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return librosa.cqt(audio, sr=RATE, hop_length=estimate.KEY_HOP, n_bins=252, bins_per_octave=36)

    with monkeypatch.context() as patch:
        patch.setattr(constantq, "__vqt_filter_fft", kept.build)
        fresh = cqt()
    monkeypatch.setattr(constantq, "__vqt_filter_fft", estimate._keep_filter_banks(counting_build))
    first = cqt()
    octaves = len(built)
    second = cqt()
    assert octaves > 1 and len(built) == octaves  # nothing built the second time
    assert np.array_equal(first, fresh) and np.array_equal(second, fresh)


@pytest.mark.parametrize("frames", [1, 2, 30, 31, 126, 400])
def test_the_harmonic_part_is_librosa_s_bit_for_bit(frames: int):
    import librosa

    from stemserver.estimate import harmonic_part

    spectrum = np.abs(np.random.default_rng(frames).standard_normal((252, frames))).astype(np.float32)
    spectrum[:, ::7] = 0  # silent frames: the soft mask's 0/0
    assert np.array_equal(harmonic_part(spectrum), librosa.decompose.hpss(spectrum, margin=2.0)[0])


def test_the_key_profile_trainer_learns_weights_that_name_the_keys_it_has_not_seen():
    import importlib.util

    spec = importlib.util.spec_from_file_location("learn_key_profiles",
                                                  Path(__file__).parents[1] / "tools" / "learn_key_profiles.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from stemserver.estimate import KEY_PROFILES

    rng = np.random.default_rng(0)

    def songs(n):  # chroma drawn around Krumhansl's profile of a random key, noisy
        keys = rng.integers(0, 24, n)
        chroma = np.stack([np.roll(KEY_PROFILES["krumhansl"][k // 12], k % 12) for k in keys])
        chroma = chroma + rng.normal(0, 1.0, chroma.shape)
        return (chroma - chroma.mean(1, keepdims=True)) / chroma.std(1, keepdims=True), keys

    weights = tool.fit_weights(*songs(300))
    assert np.linalg.norm(weights, axis=1).mean() == pytest.approx(np.sqrt(12))  # scores read like correlations
    test, keys = songs(200)
    scores = np.stack([[np.roll(x, -(k % 12)) @ weights[k // 12] for k in range(24)] for x in test])
    assert np.mean(scores.argmax(axis=1) == keys) > 0.8
