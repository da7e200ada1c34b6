"""The popular corpus's sound: synthesised voices, recorded drum kits, soundfonts, production, mixing.

Real audio, measured: where notes play and where they rest, the pitch of the bass, the onsets of
the drums, the ducking of the sidechain, the peak and the sum of the mix. Soundfont and Debian drum
kit tests skip, with the package to install, where those are missing.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile

pytest.importorskip("scipy", reason="the synthesised voices need scipy (pip install -e '.[corpus]')")
pytest.importorskip("pedalboard", reason="production needs pedalboard (pip install -e '.[corpus]')")

from stemserver_training.corpus.errors import CorpusError  # noqa: E402
from stemserver_training.corpus.popular import drumkit, production, sources  # noqa: E402
from stemserver_training.corpus.popular.mix import PEAK_DB, active_rms_db, mix_song  # noqa: E402
from stemserver_training.corpus.popular.render import dry, render_part  # noqa: E402
from stemserver_training.corpus.popular.score import Note, Part, Section, Song, Timbre  # noqa: E402
from stemserver_training.corpus.popular.synth import RECIPES, render_synth  # noqa: E402

SR = 16_000
BPM = 120.0  # half a second a beat
SPB = 60.0 / BPM
DRUM_RECIPES = ("drum_machine", "kick808", "hats")
FX_RECIPES = ("riser", "sweep", "impact", "noise")


def db(x: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.abs(x).max(initial=0.0)), 1e-12)))


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(max(float(np.mean(np.asarray(x, dtype=np.float64) ** 2)), 1e-24)))


def song_of(parts: list[Part], bars: int = 5, genre: str = "house") -> Song:
    return Song("s", 0, genre, BPM, 4, 0.0, 9, "minor", ["Am"] * bars, [Section("verse", 0, bars)], parts)


def notes_for(recipe: str) -> list[Note]:
    """Notes from beat 4 to beat 8 (2 s .. 4 s), in the register the recipe is for."""
    if recipe in DRUM_RECIPES:
        return [Note(4 + k * 0.5, 0.25, (36, 42, 38, 46, 36, 42, 38, 44)[k], 110) for k in range(8)]
    if recipe in FX_RECIPES:
        return [Note(4, 4, 60, 110)]
    return [Note(4 + k, 0.9, (45, 52, 57, 60)[k], 100) for k in range(4)]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_sounds_where_its_notes_play_and_is_silent_where_none_do(recipe):
    audio = render_synth(recipe, {}, notes_for(recipe), SPB, SR, 10 * SR, np.random.default_rng(0))
    assert audio.dtype == np.float32 and audio.shape == (10 * SR,)
    assert np.isfinite(audio).all()
    assert db(audio[: 2 * SR]) < -60, "sound before the first note"
    playing = audio[int(2.05 * SR): 4 * SR]
    assert rms_db(playing) > -40, f"{recipe} is (nearly) silent while its notes play"
    assert db(audio[int(7 * SR):]) < -60, "sound long after the last note and its release"


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_recipe_renders_the_same_from_the_same_seed_and_differently_from_another(recipe):
    notes = notes_for(recipe)
    a, b, c = (render_synth(recipe, {}, notes, SPB, SR, 5 * SR, np.random.default_rng(seed)) for seed in (1, 1, 2))
    assert np.array_equal(a, b)
    if recipe != "fm":  # the only recipe without noise or random phases
        assert not np.array_equal(a, c)


def test_unknown_recipes_and_parameters_are_errors_that_name_the_known_ones():
    with pytest.raises(ValueError, match="known: .*acid"):
        render_synth("moog", {}, [], SPB, SR, SR, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no parameter cutof.*takes .*cutoff"):
        render_synth("acid", {"cutof": 300}, [], SPB, SR, SR, np.random.default_rng(0))


def pitch_hz(x: np.ndarray, low: float = 30.0, high: float = 500.0) -> float:
    """The fundamental of a steady tone by autocorrelation: the first lag whose correlation is
    within 10% of the best one in the range (so a lag of two periods does not win)."""
    x = x - x.mean()
    spectrum = np.fft.rfft(x, 2 * len(x))
    ac = np.fft.irfft(np.abs(spectrum) ** 2)[: len(x)]
    lags = np.arange(int(SR / high), int(SR / low))
    best = ac[lags].max()
    peaks = [lag for lag in lags[1:-1] if ac[lag] >= 0.9 * best and ac[lag] >= ac[lag - 1] and ac[lag] >= ac[lag + 1]]
    lag = peaks[0]
    # parabolic interpolation between samples
    a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
    return SR / (lag + 0.5 * (a - c) / (a - 2 * b + c))


def semitones(measured: float, pitch: float) -> float:
    return 12 * np.log2(measured / (440.0 * 2 ** ((pitch - 69) / 12)))


@pytest.mark.parametrize("recipe", ["bass808", "acid", "subtractive", "fm", "pluck"])
@pytest.mark.parametrize("pitch", [28, 33, 40, 47])
def test_the_bass_sounds_at_the_written_pitch(recipe, pitch):
    audio = render_synth(recipe, {}, [Note(0, 2, pitch, 100)], SPB, SR, 2 * SR, np.random.default_rng(0))
    window = audio[int(0.15 * SR): int(0.55 * SR)]  # past the 808's punch, before the pluck has died
    assert abs(semitones(pitch_hz(window), pitch)) < 0.25


def test_an_808_glide_arrives_at_its_target_pitch():
    note = Note(0, 2, 36, 100, glide_to=43)
    audio = render_synth("bass808", {"glide": 0.3}, [note], SPB, SR, 2 * SR, np.random.default_rng(0))
    assert abs(semitones(pitch_hz(audio[int(0.1 * SR): int(0.2 * SR)]), 36)) > 1, "no slide under way"
    assert abs(semitones(pitch_hz(audio[int(0.5 * SR): int(0.9 * SR)]), 43)) < 0.25


def onsets(audio: np.ndarray, hop: int = 16) -> list[float]:
    """Seconds where the peak level over `hop` samples jumps 12 dB over what it was 5-20 ms before
    and is within 40 dB of the loudest; detections closer than 40 ms are one onset."""
    frames = np.abs(audio[: len(audio) // hop * hop]).reshape(-1, hop).max(axis=1) + 1e-9
    back, span = int(0.005 * SR / hop), int(0.015 * SR / hop)
    found: list[float] = []
    for k in range(back + span, len(frames)):
        before = frames[k - back - span: k - back].max()
        if frames[k] > 4 * before and frames[k] > frames.max() * 0.01:
            t = k * hop / SR
            if not found or t - found[-1] > 0.04:
                found.append(t)
    return found


DRUM_NOTES = [Note(1 + k, 0.25, (36, 38, 42)[k % 3], 110) for k in range(9)]  # one hit a beat from beat 1


def assert_onsets_at_written_times(audio: np.ndarray, tolerance: float = 0.010) -> None:
    written = [n.start * SPB for n in DRUM_NOTES]
    found = onsets(audio)
    assert len(found) == len(written), (found, written)
    assert max(abs(f - w) for f, w in zip(found, written)) < tolerance, (found, written)


def test_the_drum_machine_hits_at_the_written_times():
    assert_onsets_at_written_times(render_synth("drum_machine", {}, DRUM_NOTES, SPB, SR, 6 * SR,
                                                np.random.default_rng(0)))


KITS = sources.installed_drumkits()
needs_kits = pytest.mark.skipif(not KITS, reason="needs the Hydrogen drum kits (apt-get install hydrogen-drumkits)")


@needs_kits
def test_every_full_debian_drum_kit_hits_at_the_written_times():
    full = drumkit.playable_kits((36, 38, 42))
    assert len(full) >= 8, full
    for name in full:
        kit = drumkit.load_kit(sources.drumkit_folder(name))
        audio = drumkit.render_kit(kit, DRUM_NOTES, SPB, SR, 6 * SR)
        assert np.isfinite(audio).all() and db(audio[: int(0.45 * SR)]) < -60, name
        assert_onsets_at_written_times(audio)


@needs_kits
def test_kit_instruments_are_matched_to_gm_keys_by_name():
    keymap = drumkit.load_kit(sources.drumkit_folder("ElectricEmpireKit")).keymap()
    assert keymap[36].name.startswith("Kick") and keymap[38].name.startswith("Snare")
    assert keymap[46].name == "Hat Op Dirty"
    assert not any(k in keymap for k in (41, 45, 48)), "'Kick Stomp' is not a tom"


def write_kit(folder, instruments: list[tuple[str, list[tuple[float, float, float]], int]]) -> None:
    """A namespaced Hydrogen kit: each instrument (name, layers (min, max, frequency Hz), mute group);
    every sample starts with 20 ms of silence, as some recorded kits' do."""
    folder.mkdir()
    parts = []
    for i, (name, layers, group) in enumerate(instruments):
        xml_layers = []
        for j, (low, high, freq) in enumerate(layers):
            file = f"s{i}_{j}.wav"
            t = np.arange(SR) / SR
            sound = 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-t * 3)
            soundfile.write(folder / file, np.concatenate([np.zeros(SR // 50), sound]), SR)
            xml_layers.append(f"<layer><filename>{file}</filename><min>{low}</min><max>{high}</max>"
                              f"<gain>1</gain></layer>")
        parts.append(f"<instrument><id>{i}</id><name>{name}</name><gain>1</gain><volume>1</volume>"
                     f"<muteGroup>{group}</muteGroup>{''.join(xml_layers)}</instrument>")
    (folder / "drumkit.xml").write_text(
        '<?xml version="1.0"?><drumkit_info xmlns="http://www.hydrogen-music.org/drumkit"><name>Test</name>'
        f"<license>CC0</license><instrumentList>{''.join(parts)}</instrumentList></drumkit_info>")


def test_a_kit_plays_the_velocity_layer_and_the_open_hat_is_choked_by_the_closed_one(tmp_path):
    write_kit(tmp_path / "kit", [("Kick", [(0, 0.5, 100.0), (0.5, 1, 200.0)], -1),
                                 ("Closed HH", [(0, 1, 300.0)], -1), ("Open HH", [(0, 1, 400.0)], -1)])
    kit = drumkit.load_kit(tmp_path / "kit")
    assert kit.licence == "CC0" and {36, 42, 44, 46} <= set(kit.keymap())
    soft = drumkit.render_kit(kit, [Note(0, 1, 36, 40)], SPB, SR, SR)
    hard = drumkit.render_kit(kit, [Note(0, 1, 36, 120)], SPB, SR, SR)
    assert abs(pitch_hz(soft[:4000]) - 100) < 2 and abs(pitch_hz(hard[:4000]) - 200) < 3
    assert db(hard) > db(soft) + 6, "velocity scales the gain"
    late_start = drumkit.render_kit(kit, [Note(1, 1, 36, 100)], SPB, SR, SR)
    assert abs(onsets(late_start)[0] - 0.5) < 0.002, "a sample's leading silence delays the hit"
    choked = drumkit.render_kit(kit, [Note(0, 1, 46, 100), Note(0.5, 0.5, 42, 100)], SPB, SR, SR)
    late = choked[int(0.3 * SR):]
    assert abs(pitch_hz(late[:3000], high=800) - 300) < 4, "the open hat rings on under the closed one"
    assert db(choked[SR // 4 - 200: SR // 4 - 60]) > -20  # the open hat rang until the closed one


@needs_kits
def test_every_installed_kit_has_its_licence_and_a_timbre_describes_its_source():
    assert set(KITS) <= set(sources.KIT_LICENCES), "a kit without a licence entry (see its package's copyright)"
    kit = sources.describe(Timbre("drumkit", KITS[0]))
    assert kit["package"] == "hydrogen-drumkits" and kit["licence"] == sources.KIT_LICENCES[KITS[0]]
    assert kit["version"] is None or kit["version"][0].isdigit()
    font = sources.describe(Timbre("soundfont", "TimGM6mb.sf2", program=33))
    assert (font["package"], font["licence"], font["program"], font["bank"]) == ("timgm6mb-soundfont", "GPL-2", 33, 0)
    assert sources.describe(Timbre("synth", "acid", params={"cutoff": 300.0}))["params"] == {"cutoff": 300.0}


def test_missing_sources_are_errors_that_say_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(CorpusError, match="known: FluidR3_GM.sf2"):
        sources.soundfont_path("Nope.sf2")
    monkeypatch.setattr(sources, "SOUNDFONTS", (sources.Soundfont("X.sf2", "x-soundfont", (str(tmp_path / "X"),),
                                                                  "MIT"),))
    with pytest.raises(CorpusError, match="apt-get install x-soundfont"):
        sources.soundfont_path("X.sf2")
    with pytest.raises(CorpusError, match="apt-get install hydrogen-drumkits"):
        sources.drumkit_folder("Kit", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs the fluidsynth program (apt-get install "
                    "fluidsynth)")
@pytest.mark.parametrize("soundfont", sources.SOUNDFONTS, ids=lambda sf: sf.name)
def test_each_debian_soundfont_renders_a_note_and_a_drum_kit(soundfont):
    if soundfont.path() is None:
        pytest.skip(f"{soundfont.name} is not installed (apt-get install {soundfont.package})")
    piano = Part("keys", "chords", ("keys", "piano"), Timbre("soundfont", soundfont.name, program=0),
                 [Note(2, 2, 60, 100)])
    kit = Part("drums", "drums", ("drums", "drum kit"), Timbre("soundfont", soundfont.name, program=25, bank=128),
               DRUM_NOTES)
    song = song_of([piano, kit], bars=3)
    audio = dry(piano, song, SR, np.random.default_rng(0))
    assert db(audio[: SR - 100]) < -60 and rms_db(audio[int(1.05 * SR): 2 * SR]) > -50
    assert abs(semitones(pitch_hz(audio[int(1.1 * SR): int(1.5 * SR)], high=1000), 60)) < 0.3
    # FluidSynth starts notes on 64-sample blocks (4 ms at 16 kHz), on top of a sample's own attack
    assert_onsets_at_written_times(dry(kit, song, SR, np.random.default_rng(0)), tolerance=0.012)


def tone_song(genre: str = "house") -> tuple[Song, Part, Part]:
    kick = Part("kick", "drums", ("drums", "kick"), Timbre("synth", "kick808"), [Note(b, 0.25, 36, 110)
                                                                                for b in range(0, 16, 2)])
    pad = Part("pad", "chords", ("keys", "pad"), Timbre("synth", "pad", params={"attack": 0.01}),
               [Note(0, 16, 57, 90)])
    return song_of([kick, pad], bars=4, genre=genre), kick, pad


def test_sidechain_ducks_the_pad_under_every_kick_and_only_there():
    song, _, pad = tone_song()
    audio = dry(pad, song, SR, np.random.default_rng(0))
    chain = [{"name": "sidechain", "depth_db": 9.0, "attack_ms": 3.0, "release_ms": 120.0}]
    ducked = production.apply_chain(audio, chain, SR, production.kick_times(song))
    for beat in range(2, 16, 2):
        at = int(beat * SPB * SR)
        under = rms_db(ducked[at + 160: at + 800]) - rms_db(audio[at + 160: at + 800])
        between = rms_db(ducked[at + 6000: at + 7800]) - rms_db(audio[at + 6000: at + 7800])
        assert under < -6, f"no ducking under the kick at beat {beat}"
        assert between > -1, f"still ducked half a beat after the kick at beat {beat}"


def test_every_drawn_chain_applies_and_keeps_the_audio_finite():
    song, kick, pad = tone_song()
    audio = dry(pad, song, SR, np.random.default_rng(0))[: 2 * SR]
    names = set()
    rng = np.random.default_rng(3)
    for role in ("drums", "bass", "chords", "arp", "lead", "fx", "vocal"):
        part = Part("x", role, (role,), pad.timbre)
        for _ in range(25):
            chain = production.draw_chain(part, song, rng)
            names |= {e["name"] for e in chain}
            out = production.apply_chain(audio, chain, SR, production.kick_times(song))
            assert out.shape == audio.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert names == {"highpass", "low_shelf", "peak", "compressor", "distortion", "chorus", "delay", "reverb",
                     "sidechain"}


def test_a_delay_is_synced_to_the_tempo():
    song, _, _ = tone_song()
    chains = [production.draw_chain(Part("l", "lead", ("lead",), Timbre("synth", "acid")), song,
                                    np.random.default_rng(s)) for s in range(60)]
    delays = [e for chain in chains for e in chain if e["name"] == "delay"]
    assert delays and all(abs(e["delay_s"] - e["beats"] * SPB) < 1e-3 for e in delays)


def test_render_part_is_reproducible_and_records_its_chain_in_the_part():
    song, _, pad = tone_song()
    a, chain_a = render_part(pad, song, SR, np.random.default_rng(5))
    b, chain_b = render_part(pad, song, SR, np.random.default_rng(5))
    assert np.array_equal(a, b) and chain_a == chain_b == pad.effects
    assert len(a) == round(song.seconds * SR)
    with pytest.raises(ValueError, match="unknown timbre kind 'sampler'"):
        render_part(Part("p", "fx", ("fx",), Timbre("sampler", "x")), song, SR, np.random.default_rng(0))


def test_the_mix_does_not_clip_and_its_stems_sum_to_it():
    song, kick, pad = tone_song()
    silent = Part("rest", "fx", ("fx",), Timbre("synth", "riser"))
    song.parts.append(silent)
    rng = np.random.default_rng(0)
    stems = {p.name: dry(p, song, SR, rng) * 8.0 for p in song.parts}  # far too loud on purpose
    mix, out, record = mix_song(song, stems, rng)
    assert db(mix) <= PEAK_DB + 1e-3 and all(db(a) <= PEAK_DB + 1e-3 for a in out.values())
    assert np.abs(sum(out.values()) - mix).max() < 1e-6
    assert db(out["rest"]) < -200, "a silent stem stays silent"
    assert active_rms_db(out["kick"]) > active_rms_db(out["pad"]) + 2, "the kick sits above the pad"
    assert set(record["stems"]) == {"kick", "pad", "rest"} and record["master_gain_db"] < 0


def test_a_noise_bed_sits_far_under_the_mix_and_under_a_riser():
    bars = 4
    kick = Part("kick", "drums", ("drums", "kick drum"), Timbre("synth", "kick808"),
                [Note(b, 0.5, 36, 110) for b in range(bars * 4)])
    noise = Part("noise", "fx", ("sound effects", "noise"), Timbre("synth", "noise"), [Note(0, bars * 4, 60, 100)])
    riser = Part("riser", "fx", ("sound effects", "riser"), Timbre("synth", "riser"), [Note(8, 8, 60, 100)])
    song = song_of([kick, noise, riser], bars=bars)
    rng = np.random.default_rng(1)
    mix, out, record = mix_song(song, {p.name: dry(p, song, SR, rng) for p in song.parts}, rng)
    # drawn within +-2 dB of their targets: a bed that plays throughout stays 15 dB or more under the mix
    assert active_rms_db(mix) - active_rms_db(out["noise"]) > 15
    assert record["stems"]["noise"]["target_db"] < record["stems"]["riser"]["target_db"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None or not sources.installed_soundfonts(),
                    reason="needs fluidsynth and a GM soundfont (apt-get install fluidsynth fluid-soundfont-gm)")
def test_a_songs_soundfont_parts_render_in_one_run_as_each_alone(monkeypatch):
    from stemserver_training.corpus import render as classical
    from stemserver_training.corpus.popular import soundfont

    name = sources.installed_soundfonts()[0].name
    parts = [Part("piano", "chords", ("keys", "piano"), Timbre("soundfont", name, program=0),
                  [Note(b, 0.9, 60 + b % 5, 90) for b in range(1, 9)]),
             Part("kit", "drums", ("drums", "drum kit"), Timbre("soundfont", name, program=25, bank=128), DRUM_NOTES),
             Part("bass", "bass", ("bass", "electric bass"), Timbre("soundfont", name, program=33),
                  [Note(b, 1.9, 36, 100) for b in range(1, 12, 2)]),
             Part("kit2", "drums", ("drums", "drum kit"), Timbre("soundfont", name, bank=128), DRUM_NOTES)]
    song = song_of(parts, bars=3)
    runs = []
    monkeypatch.setattr(soundfont, "render_midi", lambda *a, **k: runs.append(a) or classical.render_midi(*a, **k))
    together = {p.name: dry(p, song, SR, np.random.default_rng(0)) for p in parts}
    assert len(runs) == 1
    n = round(song.seconds * SR)
    for part in parts:
        alone = soundfont.render_soundfont_parts([part], SPB, SR, n)[part.name]
        assert rms_db(alone) > -60
        assert db(together[part.name][: SR // 2 - 100]) < -60, f"{part.name}: the part before bleeds into it"
        # FluidSynth's reused voices colour a few hits a little (a part's first ones mostly): the same
        # stem otherwise, and at the same times
        difference = rms_db(together[part.name] - alone) - rms_db(alone)
        assert difference < -30, part.name
