"""Long audio is encoded window by window on one continuous 160 ms column grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from stemserver.errors import AudioError
from stemserver.inference import encode_audio
from stemserver.model import StemJEPA

CPU = torch.device("cpu")


def test_windows_concatenate_to_the_expected_columns():
    model = StemJEPA(tiny_config()).eval()
    samples = (np.random.default_rng(0).standard_normal(20 * 16000) * 0.1).astype(np.float32)
    grid = encode_audio(model, samples, CPU, window_s=8.0, batch_size=1)
    assert grid.shape == (5, 125, 64) and grid.dtype == np.float32
    with torch.no_grad():
        second_window = model.encode(torch.from_numpy(samples[128000:256000])[None])[0].numpy()
        tail = model.encode(torch.from_numpy(samples[256000:])[None])[0].numpy()
    np.testing.assert_allclose(grid[:, 50:100], second_window, atol=1e-5)
    np.testing.assert_allclose(grid[:, 100:], tail, atol=1e-5)


def test_target_encoder_is_used_when_asked():
    model = StemJEPA(tiny_config()).eval()
    with torch.no_grad():
        model.target_encoder.norm.bias.add_(1.0)
    samples = np.zeros(16000, np.float32)
    assert not np.allclose(encode_audio(model, samples, CPU), encode_audio(model, samples, CPU, target=True))


def test_audio_shorter_than_a_column_is_refused():
    model = StemJEPA(tiny_config())
    with pytest.raises(AudioError, match="at least 0.16 s"):
        encode_audio(model, np.zeros(1000, np.float32), CPU)
