"""The log-mel front end against independent reference computations (librosa, and a plain numpy DFT)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from stemserver.features import LOG_OFFSET, FrontEndConfig, LogMel, mel_filterbank

CONFIG = FrontEndConfig()


def reference_filterbank() -> np.ndarray:
    """librosa's HTK-scale triangular filters without area normalisation, (n_freqs, n_mels)."""
    return librosa.filters.mel(
        sr=CONFIG.sample_rate, n_fft=CONFIG.n_fft, n_mels=CONFIG.n_mels,
        fmin=CONFIG.f_min, fmax=CONFIG.f_max, htk=True, norm=None,
    ).T


def numpy_power_spectrogram(x: np.ndarray) -> np.ndarray:
    """Direct DFT of reflect-padded, periodic-Hann-windowed frames: (n_freqs, frames)."""
    n_fft, hop = CONFIG.n_fft, CONFIG.hop_length
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[i : i + n_fft] * window for i in range(0, len(padded) - n_fft + 1, hop)])
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)  # the DFT written out, not an FFT library
    return np.abs(dft @ frames.T) ** 2


def test_filterbank_matches_librosa_htk():
    ours = mel_filterbank(CONFIG.sample_rate, CONFIG.n_fft, CONFIG.n_mels, CONFIG.f_min, CONFIG.f_max).numpy()
    assert ours.shape == (201, 80)
    np.testing.assert_allclose(ours, reference_filterbank(), atol=1e-6)
    assert (ours.sum(axis=0) > 0).all(), "every mel band must receive some FFT bin"


def test_log_mel_matches_a_direct_dft():
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    expected = np.log(reference_filterbank().T @ numpy_power_spectrogram(x) + LOG_OFFSET)
    expected = (expected - CONFIG.mean) / CONFIG.std
    ours = LogMel(CONFIG)(torch.from_numpy(x))[0].numpy()
    assert ours.shape == expected.shape == (80, 1 + 8000 // 160)
    np.testing.assert_allclose(ours, expected, atol=2e-4)


def test_mel_power_matches_librosa_melspectrogram():
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3100 * t)).astype(np.float32)
    expected = librosa.feature.melspectrogram(
        y=x, sr=16000, n_fft=400, hop_length=160, win_length=400, window="hann", center=True,
        pad_mode="reflect", power=2.0, n_mels=80, fmin=50, fmax=8000, htk=True, norm=None,
    )
    ours = LogMel(CONFIG).power_mel(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-6 * expected.max())


def test_batched_equals_one_at_a_time_and_silence_is_finite():
    front_end = LogMel(CONFIG)
    batch = torch.randn(3, 12345) * 0.1
    batch[2] = 0.0
    together = front_end(batch)
    for i in range(3):
        torch.testing.assert_close(together[i], front_end(batch[i])[0])
    assert torch.isfinite(together).all()
    silent_value = (np.log(LOG_OFFSET) - CONFIG.mean) / CONFIG.std
    assert together[2].max().item() == pytest.approx(silent_value, abs=1e-4)


def test_normalisation_uses_the_configured_statistics():
    x = torch.randn(1, 4000) * 0.1
    a = LogMel(FrontEndConfig(mean=0.0, std=1.0))(x)
    b = LogMel(FrontEndConfig(mean=-5.0, std=2.0))(x)
    torch.testing.assert_close(b, (a + 5.0) / 2.0)
