"""Device choice and the inference context."""

from __future__ import annotations

import pytest
import torch

from stemserver.device import autocast_dtype, inference, select_device, set_threads
from stemserver.errors import ConfigError


def test_auto_falls_back_to_what_exists():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        select_device("cuda")


def test_nonsense_device_names_are_refused():
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        select_device("gpu0")


def test_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError):
        set_threads(0)


def test_inference_context_has_no_autograd_and_full_precision_on_cpu():
    layer = torch.nn.Linear(4, 4)
    with inference(torch.device("cpu")):
        out = layer(torch.randn(2, 4))
    assert not out.requires_grad and out.dtype == torch.float32
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("mps")) == torch.float16
