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


def make_identity_predictor(model: StemJEPA) -> StemJEPA:
    """Make the predictor compute exactly LayerNorm(z): ReLU(z) - ReLU(-z) = z through every layer,
    FiLM off. With the context and target encoders equal (as at initialisation), the "stem that
    fits" a mix is then the stem that sounds like it, which is what offset tests need to know the
    right answer. Needs predictor_hidden >= 2 * embed_dim."""
    d = model.config.embed_dim
    eye = torch.eye(d)
    with torch.no_grad():
        layers = model.predictor.layers
        for i, layer in enumerate(layers):
            layer.weight.zero_()
            layer.bias.zero_()
            if i == 0:
                layer.weight[:d, :d], layer.weight[d : 2 * d, :d] = eye, -eye
            elif i == len(layers) - 1:
                layer.weight[:, :d], layer.weight[:, d : 2 * d] = eye, -eye
            else:
                layer.weight[: 2 * d, : 2 * d] = torch.eye(2 * d)
        for film in model.predictor.film:
            film.gamma.weight.zero_()
            film.beta.weight.zero_()
    return model


def melody(seconds: float, seed: int, rate: int = 16_000) -> np.ndarray:
    """A line of decaying notes of random pitch and length: audio whose every moment differs."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate), np.float32)
    t = 0.0
    while t < seconds:
        length = rng.uniform(0.1, 0.5)
        n = int(length * rate)
        start = int(t * rate)
        time_axis = np.arange(n) / rate
        note = 0.3 * np.sin(2 * np.pi * 110 * 2 ** (rng.integers(0, 36) / 12) * time_axis) * np.exp(-6 * time_axis)
        out[start : start + n] += note[: len(out) - start].astype(np.float32)
        t += length
    return out


@pytest.fixture(scope="session")
def identity_checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint whose predictor is the identity (see make_identity_predictor)."""
    torch.manual_seed(0)
    config = tiny_config(predictor_hidden=128)
    model = make_identity_predictor(StemJEPA(config))
    cache = LabelEmbedder(["bass", "drums"], torch.nn.functional.normalize(torch.randn(2, TEXT_DIM), dim=-1),
                          {"backend": "test", "dim": TEXT_DIM})
    path = tmp_path_factory.mktemp("model") / "identity.safetensors"
    Checkpoint.from_model(model, cache).save(path)
    return path


def build_library(samples: Path, library_dir: Path, checkpoint: Path) -> Path:
    """Index `samples` into a library at `library_dir` with `checkpoint`, as `stemserver index` does."""
    from stemserver.checkpoint import load_checkpoint
    from stemserver.files import sha256_file
    from stemserver.index import build_index
    from stemserver.inference import stem_embedder
    from stemserver.library import Library

    model = load_checkpoint(checkpoint).build_model()
    with Library(library_dir, create=True) as library:
        library.scan([samples], stem_embedder(model, torch.device("cpu")), sha256_file(checkpoint), checkpoint.name,
                     progress=False)
        build_index(library, progress=False)
    return library_dir
