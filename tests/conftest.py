"""Shared fixtures: small models and real audio files the tests write themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stemserver.checkpoint import Checkpoint
from stemserver.model import ModelConfig, StemJEPA
from stemserver.text import LabelEmbedder

TEXT_DIM = 384


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tiny_config(**overrides) -> ModelConfig:
    values = dict(embed_dim=64, depth=2, num_heads=2, predictor_hidden=128, text_dim=TEXT_DIM)
    values.update(overrides)
    return ModelConfig(**values)


def make_checkpoint(path: Path, config: ModelConfig | None = None, seed: int = 0) -> Checkpoint:
    torch.manual_seed(seed)
    config = config or tiny_config()
    model = StemJEPA(config)
    labels = ["bass", "drums", "vocals"]
    embeddings = torch.nn.functional.normalize(torch.randn(len(labels), config.text_dim), dim=-1)
    cache = LabelEmbedder(labels, embeddings, {"backend": "test", "dim": config.text_dim})
    checkpoint = Checkpoint.from_model(model, cache, info={"steps": 0})
    checkpoint.save(path)
    return checkpoint


@pytest.fixture
def checkpoint_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.safetensors"
    make_checkpoint(path)
    return path
