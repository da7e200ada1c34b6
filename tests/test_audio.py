"""Decoding real files of every supported format, and every way a file can be unusable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from conftest import tone

from stemserver import audio
from stemserver.errors import AudioError

RATE = 44_100


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def stereo_tone(seconds: float = 2.0) -> np.ndarray:
    left = tone(440.0, seconds, RATE, amplitude=0.6)
    return np.stack([left, np.zeros_like(left)], axis=1)  # mono down-mix: 0.3 amplitude


def expected_mono(stereo: np.ndarray) -> np.ndarray:
    return soxr.resample(stereo.mean(axis=1), RATE, audio.SAMPLE_RATE, quality="HQ")


@pytest.mark.parametrize(
    "suffix, fmt, subtype",
    [
        (".wav", "WAV", "PCM_24"),
        (".wav", "WAV", "FLOAT"),
        (".aiff", "AIFF", "PCM_16"),
        (".flac", "FLAC", "PCM_24"),
    ],
)
def test_lossless_formats_decode_to_the_exact_resampled_mono(tmp_path: Path, suffix, fmt, subtype):
    stereo = stereo_tone()
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, stereo, RATE, format=fmt, subtype=subtype)
    samples, info = audio.load(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert (info.sample_rate, info.channels) == (RATE, 2)
    assert info.duration_s == pytest.approx(2.0, abs=1e-3)
    np.testing.assert_allclose(samples, expected_mono(stereo), atol=2e-4 if subtype == "PCM_16" else 1e-5)


@pytest.mark.parametrize("suffix, fmt, subtype", [(".ogg", "OGG", "VORBIS"), (".mp3", "MP3", "MPEG_LAYER_III")])
def test_lossy_formats_keep_pitch_level_and_length(tmp_path: Path, suffix, fmt, subtype):
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, stereo_tone(), RATE, format=fmt, subtype=subtype)
    samples, info = audio.load(path)
    assert abs(len(samples) - 2 * audio.SAMPLE_RATE) < 0.1 * audio.SAMPLE_RATE  # mp3 adds encoder padding
    assert dominant_frequency(samples, audio.SAMPLE_RATE) == pytest.approx(440.0, abs=2.0)
    rms = np.sqrt(np.mean(samples[4000:-4000] ** 2))
    assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_formats_libsndfile_cannot_read_go_through_ffmpeg(tmp_path: Path):
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, stereo_tone(), RATE)
    m4a = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.info(m4a)  # proves the fallback, not libsndfile, decoded it
    samples, info = audio.load(m4a)
    assert (info.sample_rate, info.channels) == (RATE, 2)
    assert abs(len(samples) - 2 * audio.SAMPLE_RATE) < 0.1 * audio.SAMPLE_RATE
    assert dominant_frequency(samples, audio.SAMPLE_RATE) == pytest.approx(440.0, abs=2.0)


def test_without_ffmpeg_the_error_says_to_install_it(tmp_path: Path, monkeypatch):
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="install ffmpeg"):
        audio.load(path)


def test_mono_input_at_the_model_rate_passes_through_unchanged(tmp_path: Path):
    samples = tone(1000.0, 1.0, audio.SAMPLE_RATE)
    path = tmp_path / "mono.wav"
    soundfile.write(path, samples, audio.SAMPLE_RATE, subtype="FLOAT")
    decoded, info = audio.load(path)
    np.testing.assert_array_equal(decoded, samples)
    assert info.channels == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"this is a text file, not audio\n" * 20, "not an audio file"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(8), "not an audio file"),  # truncated header
        (np.random.default_rng(0).bytes(4096), "not an audio file"),
    ],
    ids=["empty", "text-renamed-wav", "truncated-header", "random-bytes"],
)
def test_unusable_files_raise_a_clear_error(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as error:
        audio.load(path)
    assert str(path) in str(error.value)


def test_nan_samples_are_rejected(tmp_path: Path):
    samples = tone(440.0, 1.0, RATE)
    samples[100:110] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, samples, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="10 NaN or infinite samples"):
        audio.load(path)


def test_inf_in_a_raw_buffer_is_rejected():
    samples = np.zeros((1000, 2), np.float32)
    samples[5, 1] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        audio.prepare(samples, 48_000, source="stream")


def test_a_file_over_the_duration_limit_is_refused_before_decoding(tmp_path: Path):
    path = tmp_path / "long.wav"
    soundfile.write(path, tone(100.0, 3.0, 8000), 8000)
    with pytest.raises(AudioError, match="longer than"):
        audio.load(path, max_duration_s=2.0)


def test_missing_paths_and_directories(tmp_path: Path):
    with pytest.raises(AudioError, match="no such file"):
        audio.load(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="not a regular file"):
        audio.load(tmp_path)


@pytest.mark.parametrize(
    "samples, rate, message",
    [
        (np.zeros((0,), np.float32), 16000, "no samples"),
        (np.zeros((10, 2, 2), np.float32), 16000, "shaped"),
        (np.zeros(100, np.int16), 16000, "float"),
        (np.zeros(100, np.float32), 0, "sample rate"),
    ],
)
def test_prepare_rejects_bad_buffers(samples, rate, message):
    with pytest.raises(AudioError, match=message):
        audio.prepare(samples, rate)


def test_prepare_resamples_a_48k_stereo_buffer():
    left = tone(440.0, 1.0, 48_000)
    mono = audio.prepare(np.stack([left, left], axis=1), 48_000)
    assert len(mono) == audio.SAMPLE_RATE
    assert dominant_frequency(mono, audio.SAMPLE_RATE) == pytest.approx(440.0, abs=1.0)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_the_down_mix_is_exactly_the_float64_mean_of_the_channels(channels):
    samples = np.random.default_rng(channels).uniform(-1, 1, (48_000, channels)).astype(np.float32)
    mono = audio.prepare(samples, audio.SAMPLE_RATE)  # at the model's rate: the down-mix alone
    assert np.array_equal(mono, samples.mean(axis=1, dtype=np.float64).astype(np.float32))


def test_the_float32_stereo_down_mix_is_the_float64_mean_at_any_magnitude():
    """Stereo float32 is summed in float32 (the fast path): still the float64 mean, rounded once."""
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal((200_000, 2)) * 10.0 ** rng.uniform(-30, 30, (200_000, 2))).astype(np.float32)
    mono = audio.prepare(samples, audio.SAMPLE_RATE)
    assert np.array_equal(mono, samples.mean(axis=1, dtype=np.float64).astype(np.float32))


@pytest.mark.parametrize("bad", [(3, 1, np.nan), (7, 0, np.inf), (9, 2, -np.inf)])
def test_a_bad_sample_in_any_channel_is_counted_and_rejected(bad):
    """Non-finite samples are found through the down-mix; +inf and -inf in one frame make a NaN."""
    samples = np.zeros((1000, 3), np.float32)
    row, channel, value = bad
    samples[row, channel] = value
    samples[500, 0], samples[500, 1] = np.inf, -np.inf
    with pytest.raises(AudioError, match="3 NaN or infinite samples"):
        audio.prepare(samples, audio.SAMPLE_RATE, source="stream")


def test_float64_samples_beyond_the_float32_range_are_rejected():
    samples = np.zeros((1000, 2), np.float64)
    samples[10] = 1e300
    with pytest.raises(AudioError, match="1 NaN or infinite samples"):
        audio.prepare(samples, audio.SAMPLE_RATE)
