"""The preview: real click tracks and tones in real WAV files, stretched and shifted by Rubber Band,
checked by where their onsets land and which pitch comes out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import tone

from stemserver.errors import AudioError, StemserverError
from stemserver.preview import preview_file, prune_previews, render_preview

ENV = {**os.environ, "STEMSERVER_CONFIG": ""}
TOLERANCE_S = 0.020


def clicks(times: list[float], seconds: float, rate: int, amplitude: float = 0.4) -> np.ndarray:
    """Short decaying 1 kHz bursts starting at `times`: sharp onsets, as a metronome's."""
    out = np.zeros(int(round(seconds * rate)), np.float32)
    t = np.arange(int(0.03 * rate)) / rate
    burst = (amplitude * np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.006)).astype(np.float32)
    for start in times:
        i = int(round(start * rate))
        piece = burst[: max(0, len(out) - i)]
        out[i : i + len(piece)] += piece
    return out


def beats(bpm: float, seconds: float, phase_s: float = 0.0) -> list[float]:
    period = 60.0 / bpm
    return list(np.arange(phase_s, seconds - 1e-9, period))


def onsets(samples: np.ndarray, rate: int, refractory_s: float = 0.15) -> np.ndarray:
    """Times where the envelope first rises past a quarter of its peak, at most one per `refractory_s`."""
    envelope = np.abs(samples if samples.ndim == 1 else samples).reshape(len(samples), -1).max(axis=1)
    above = envelope > 0.25 * envelope.max()
    found, last = [], -np.inf
    for i in np.flatnonzero(above[1:] & ~above[:-1]) + 1:
        if (i - last) / rate >= refractory_s:
            found.append(i / rate)
            last = i
    return np.asarray(found)


def distance_to_nearest(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.abs(times[:, None] - grid[None, :]).min(axis=1)


def pitch_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency, refined between FFT bins by a parabola through the log magnitudes."""
    window = samples * np.hanning(len(samples))
    spectrum = np.log(np.abs(np.fft.rfft(window, 8 * len(window))) + 1e-12)
    k = int(np.argmax(spectrum))
    a, b, c = spectrum[k - 1 : k + 2]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / (8 * len(window))


@pytest.fixture
def click_tracks(tmp_path: Path) -> tuple[Path, Path]:
    """A 12.2 s stereo mix at 44.1 kHz, clicking at 120 BPM from 0 s, and a 20 s mono stem at
    22.05 kHz clicking at 100 BPM: stretch 1.2 brings the stem to the mix's tempo."""
    mix = clicks(beats(120, 12.2), 12.2, 44_100)
    soundfile.write(tmp_path / "mix.wav", np.stack([mix, 0.5 * mix], axis=1), 44_100)
    soundfile.write(tmp_path / "stem.wav", clicks(beats(100, 20.0), 20.0, 22_050), 22_050)
    return tmp_path / "mix.wav", tmp_path / "stem.wav"


def test_the_stretched_stems_onsets_fall_on_the_mixs_beats(click_tracks, tmp_path: Path):
    # The query window is the mix's last 8 s: it starts at 4.2 s, 0.3 s before the beat at 4.5 s. A
    # result's offset_s is the stem position at the window start: 1.44 s puts the stem's beat at
    # 1.8 s (its fourth) on 4.5 s, once played 1.2 times as fast.
    mix_path, stem_path = click_tracks
    summary = preview_file(mix_path, stem_path, tmp_path / "out.wav", offset_s=1.44, stretch=1.2, seconds=8.0)
    rendered, rate = soundfile.read(summary["path"], dtype="float32", always_2d=True)
    mix, _ = soundfile.read(mix_path, dtype="float32", always_2d=True)
    assert (rate, rendered.shape, summary["sample_rate"], summary["channels"]) == (44_100, mix.shape, 44_100, 2)
    assert summary["window_start_s"] == pytest.approx(4.2) and summary["loop"] is False
    assert summary["gain_db"] == 0.0 and summary["duration_s"] == pytest.approx(12.2)

    mix_beats = onsets(mix, rate)
    assert len(mix_beats) == 25
    stem_onsets = onsets(rendered - mix, rate)  # what the preview added: the stem alone
    assert distance_to_nearest(stem_onsets, mix_beats).max() < TOLERANCE_S
    # Every beat from the stem's start on: it starts at 4.2 - 1.44 / 1.2 = 3.0 s, before the window.
    assert len(stem_onsets) == 19 and stem_onsets[0] == pytest.approx(3.0, abs=TOLERANCE_S)
    assert np.abs(rendered[: int(2.9 * rate)] - mix[: int(2.9 * rate)]).max() == 0.0


@pytest.mark.parametrize("stretch, offset_s", [(1.0, 1.44), (1.2, 0.0), (1 / 1.2, 1.44)])
def test_the_onset_check_fails_for_a_stretch_or_offset_that_does_not_fit(click_tracks, tmp_path: Path, stretch,
                                                                         offset_s):
    mix_path, stem_path = click_tracks
    summary = preview_file(mix_path, stem_path, tmp_path / "out.wav", offset_s=offset_s, stretch=stretch)
    rendered, rate = soundfile.read(summary["path"], dtype="float32", always_2d=True)
    mix, _ = soundfile.read(mix_path, dtype="float32", always_2d=True)
    assert distance_to_nearest(onsets(rendered - mix, rate), onsets(mix, rate)).max() > 0.1


def test_a_long_mix_stays_in_time_to_its_end():
    # 40 s at 126 BPM against a stem at 120: stretch 1.05, where Rubber Band's R3 engine drifts 1.7 ms
    # per second (70 ms off by the end); the preview's engine must not drift. The window starts at 32.2 s;
    # offset 34.31 s puts the stem's position 0.5 s (a beat) at the mix's start, on its first beat.
    rate = 16_000
    mix = clicks(beats(126, 40.2), 40.2, rate)
    stem = clicks(beats(120, 48.0), 48.0, rate)
    layer = render_preview(np.zeros_like(mix), stem, rate, offset_s=34.31, stretch=1.05, seconds=8.0)
    found, mix_beats = onsets(layer, rate), onsets(mix, rate)
    assert len(found) == len(mix_beats) == 85
    assert distance_to_nearest(found, mix_beats).max() < TOLERANCE_S


def test_a_loop_repeats_over_the_whole_mix_in_phase_with_the_window():
    # A 1.2 s loop (shorter than the 8 s window) with one click 0.3 s in; at stretch 1.2 it lasts 1 s.
    # Offset 0 puts the loop's start on the window start (4 s), so its click sounds at 4.25 s, and
    # every second before and after it.
    rate = 16_000
    loop = clicks([0.3], 1.2, rate)
    layer = render_preview(np.zeros(12 * rate, np.float32), loop, rate, offset_s=0.0, stretch=1.2, seconds=8.0)
    found = onsets(layer, rate)
    assert len(found) == 12
    np.testing.assert_allclose(found, 0.25 + np.arange(12), atol=TOLERANCE_S)
    # An offset one loop later is the same position of the repeating loop.
    again = render_preview(np.zeros(12 * rate, np.float32), loop, rate, offset_s=1.2 + 0.6, stretch=1.2)
    np.testing.assert_allclose(onsets(again, rate), 0.25 - 0.5 + np.arange(1, 13), atol=TOLERANCE_S)


@pytest.mark.parametrize("stem_s, loop", [(4.95, True), (4.97, False)])
def test_a_stem_is_a_loop_exactly_when_the_query_calls_it_one(stem_s, loop, tmp_path: Path):
    # A 5 s window is 31 whole 160 ms columns, 4.96 s: the engine's `loop` is duration_s < 4.96.
    rate = 16_000
    soundfile.write(tmp_path / "mix.wav", tone(220.0, 6.0, rate), rate)
    soundfile.write(tmp_path / "stem.wav", tone(330.0, stem_s, rate), rate)
    summary = preview_file(tmp_path / "mix.wav", tmp_path / "stem.wav", tmp_path / "out.wav", seconds=5.0)
    assert summary["loop"] is loop


@pytest.mark.parametrize("transpose", [3, -5, 7])
def test_transpose_moves_a_tones_pitch_by_its_semitones_and_stretch_keeps_it(transpose):
    rate = 22_050
    stem = tone(440.0, 6.0, rate)
    silence = np.zeros(4 * rate, np.float32)
    shifted = render_preview(silence, stem, rate, offset_s=0.5, stretch=1.2, transpose=transpose, seconds=4.0)
    middle = shifted[rate : 3 * rate, 0]
    assert pitch_hz(middle, rate) == pytest.approx(440.0 * 2 ** (transpose / 12), rel=0.003)
    stretched = render_preview(silence, stem, rate, offset_s=0.5, stretch=1.2, seconds=4.0)
    assert pitch_hz(stretched[rate : 3 * rate, 0], rate) == pytest.approx(440.0, rel=0.003)


def test_without_stretch_the_stem_is_added_sample_exact_from_its_offset():
    rate = 16_000
    rng = np.random.default_rng(0)
    mix = (0.1 * rng.standard_normal((10 * rate, 2))).astype(np.float32)
    stem = (0.1 * rng.standard_normal(20 * rate)).astype(np.float32)
    out = render_preview(mix, stem, rate, offset_s=3.0, seconds=8.0)  # the window starts at 2 s: stem 1 s at 0
    expected = mix + stem[1 * rate : 11 * rate, None]
    np.testing.assert_array_equal(out, expected)


def test_the_sum_is_scaled_down_only_when_it_would_clip():
    rate = 16_000
    mix, stem = tone(220.0, 8.0, rate, amplitude=0.9), tone(220.0, 8.0, rate, amplitude=0.9)
    loud = render_preview(mix, stem, rate)
    assert np.abs(loud).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(loud[:, 0], (mix + stem) / np.abs(mix + stem).max(), atol=1e-6)
    quiet = render_preview(mix, stem, rate, stem_gain_db=-20.0)
    np.testing.assert_allclose(quiet[:, 0], mix + 0.1 * stem, atol=1e-6)


@pytest.mark.parametrize("mix_channels, stem_channels", [(1, 2), (2, 1), (3, 2), (2, 2)])
def test_the_render_keeps_the_mixs_channels(mix_channels, stem_channels):
    rate = 16_000
    mix = np.zeros((8 * rate, mix_channels), np.float32)
    stem = np.stack([tone(330.0, 9.0, rate)] * stem_channels, axis=1) * np.arange(1, stem_channels + 1) / 4
    out = render_preview(mix, stem.astype(np.float32), rate)
    assert out.shape == (8 * rate, mix_channels)
    if stem_channels == mix_channels:
        np.testing.assert_allclose(out, stem[: 8 * rate], atol=1e-6)  # each channel where it was
    else:
        np.testing.assert_allclose(out, np.repeat(stem[: 8 * rate].mean(axis=1, keepdims=True), mix_channels, 1),
                                   atol=1e-6)


@pytest.mark.parametrize("settings, says", [
    ({"stretch": 5.0}, "from 0.25 to 4"), ({"stretch": 0.1}, "from 0.25 to 4"),
    ({"stretch": float("nan")}, "stretch"), ({"transpose": 13}, "-12 to 12"), ({"transpose": 2.5}, "whole"),
    ({"offset_s": -1.0}, "offset_s"), ({"offset_s": 25.0}, "beyond the stem's end"),
    ({"seconds": 0.0}, "query window"), ({"stem_gain_db": float("inf")}, "dB"),
])
def test_bad_settings_are_refused_saying_what_fits(settings, says):
    rate = 16_000
    with pytest.raises(StemserverError, match=says):
        render_preview(np.zeros(10 * rate, np.float32), tone(440.0, 20.0, rate), rate, **settings)


def test_bad_audio_is_refused_naming_it(tmp_path: Path):
    rate = 16_000
    broken = tone(440.0, 10.0, rate)
    broken[100] = np.nan
    with pytest.raises(AudioError, match="stem: contains 1 NaN"):
        render_preview(np.zeros(8 * rate, np.float32), broken, rate)
    soundfile.write(tmp_path / "mix.wav", tone(440.0, 10.0, rate), rate)
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(AudioError, match="notes.wav"):
        preview_file(tmp_path / "mix.wav", tmp_path / "notes.wav", tmp_path / "out.wav")
    with pytest.raises(StemserverError, match="NAME.wav"):
        preview_file(tmp_path / "mix.wav", tmp_path / "mix.wav", tmp_path / "out.mp3")
    assert not (tmp_path / "out.wav").exists()


def test_without_pedalboard_a_stretch_says_what_to_install_and_an_unstretched_preview_still_renders(monkeypatch):
    monkeypatch.setitem(sys.modules, "pedalboard", None)  # what `import pedalboard` finds: ImportError
    rate = 16_000
    mix, stem = np.zeros(8 * rate, np.float32), tone(440.0, 10.0, rate)
    with pytest.raises(StemserverError, match=r"pip install 'stemserver\[preview\]'"):
        render_preview(mix, stem, rate, stretch=1.2)
    np.testing.assert_array_equal(render_preview(mix, stem, rate)[:, 0], stem[: 8 * rate])


def test_pruning_keeps_the_newest_previews_and_nothing_else(tmp_path: Path):
    for i in range(5):
        (tmp_path / f"preview-{i}.wav").write_bytes(b"")
        os.utime(tmp_path / f"preview-{i}.wav", ns=(i * 10**9, i * 10**9))
    (tmp_path / "mine.wav").write_bytes(b"")
    prune_previews(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.wav", "preview-3.wav", "preview-4.wav"]


@pytest.mark.slow
def test_the_command_line_renders_a_preview_and_explains_bad_values(click_tracks, tmp_path: Path):
    mix_path, stem_path = click_tracks
    out = tmp_path / "preview.wav"
    command = [sys.executable, "-m", "stemserver", "preview", str(mix_path), str(stem_path)]
    done = subprocess.run([*command, "--offset", "1.44", "--stretch", "1.2", "--transpose", "-2", "-o", str(out),
                           "--json"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["path"] == str(out) and soundfile.info(out).frames == soundfile.info(mix_path).frames
    refused = subprocess.run([*command, "--stretch", "9", "-o", str(out)], capture_output=True, text=True, env=ENV,
                             timeout=300)
    assert refused.returncode == 1 and refused.stderr.startswith("stemserver: error: stretch must be")
    helped = subprocess.run([*command[:4], "--help"], capture_output=True, text=True, env=ENV, timeout=300)
    assert helped.returncode == 0 and all(word in helped.stdout for word in ("offset_s", "stretch", "transpose"))
