"""Where the model runs: device choice, CPU threads, and the inference context."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from stemserver.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; anything else must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} was asked for but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but this torch build or machine has no MPS; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device type {device.type!r}; use auto, cpu, cuda or mps")
    return device


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU threads; None leaves torch's default (one per core)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Reduced precision for inference on accelerators; full precision on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """No autograd, and bf16/fp16 autocast on GPUs."""
    dtype = autocast_dtype(device)
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield
