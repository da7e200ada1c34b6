"""Long audio is encoded window by window on one continuous 160 ms column grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import melody, tiny_config

from stemserver.errors import AudioError
from stemserver.inference import encode_audio, mean_vector, stem_columns, stem_embedder
from stemserver.model import StemJEPA
from stemserver.window import window_starts

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


def test_search_windows_are_encoded_alone_as_a_query_window_is():
    """A 20 s file: windows at 0, 4, 8 and 12 s (the last one pulled back to end at 20 s). The
    ones at 0 and 8 s are the consecutive chunks the columns were encoded in; those at 4 and 12 s
    straddle two chunks, and must be their own encoding, not a cut of the chunks' columns."""
    torch.manual_seed(0)
    model = StemJEPA(tiny_config()).eval()
    samples = melody(20.0, seed=4)
    embedded = stem_embedder(model, torch.device("cpu"))(samples)
    assert embedded.hop_columns == 25 and len(embedded.columns) == 125
    column, window = 2560, 50
    starts = window_starts(125, window, 25)
    assert starts == [0, 25, 50, 75]
    assert embedded.windows.shape == (4, model.config.embed_dim)
    for i, first in enumerate(starts):
        alone = stem_columns(model, samples[first * column : (first + window) * column], torch.device("cpu"))
        np.testing.assert_allclose(embedded.windows[i], mean_vector(alone), atol=1e-5)
    cut = mean_vector(embedded.columns[25:75])
    assert not np.allclose(embedded.windows[1], cut, atol=1e-3)  # the old way differs: a straddling window
    np.testing.assert_allclose(embedded.windows[0], mean_vector(embedded.columns[:50]), atol=1e-6)


def test_a_file_no_longer_than_a_window_is_one_window_of_its_own_columns():
    torch.manual_seed(0)
    model = StemJEPA(tiny_config()).eval()
    for seconds, tile in ((3.0, False), (1.0, True)):
        embedded = stem_embedder(model, torch.device("cpu"), tile_loops=tile)(melody(seconds, seed=5))
        assert embedded.windows.shape == (1, model.config.embed_dim)
        np.testing.assert_allclose(embedded.windows[0], mean_vector(embedded.columns), atol=1e-6)


def test_a_last_column_from_a_part_filled_patch_still_gets_its_window():
    """20 s and 2,450 samples: the tail's log-mel has a 16th frame for its last patch, so there are 126
    columns, and the last window (columns 76..126) ends 110 samples past the audio. Indexing such a file
    used to fail (`all input arrays must have the same shape`); its window is encoded over the audio
    padded with silence."""
    torch.manual_seed(0)
    model = StemJEPA(tiny_config()).eval()
    samples = np.concatenate([melody(20.0, seed=4), melody(1.0, seed=5)[:2450]])
    embedded = stem_embedder(model, torch.device("cpu"))(samples)
    assert len(embedded.columns) == 126 and window_starts(126, 50, 25)[-1] == 76
    padded = np.pad(samples[76 * 2560 :], (0, 126 * 2560 - len(samples)))
    np.testing.assert_allclose(embedded.windows[-1], mean_vector(stem_columns(model, padded, CPU)), atol=1e-5)
