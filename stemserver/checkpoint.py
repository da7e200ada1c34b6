"""The checkpoint bundle: everything needed to serve a model, in one safetensors file.

Tensors: the context encoder, the EMA target encoder, the predictor (`encoder.*`,
`target_encoder.*`, `predictor.*`), the instrument head when the model has one (`instrument.*`;
`model_config.instrument_hidden` > 0) and the cached text embeddings of known labels
(`label_embeddings`). JSON metadata: the model and front-end config (normalisation statistics
included), the identity of the text backend that made the label embeddings, the labels, and free
training information. safetensors never unpickles, so loading a file cannot run code, and it
stores every tensor with its exact dtype and bytes, so save -> load is bit-exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from stemserver.config import Settings, TextSettings
from stemserver.device import select_device, set_threads
from stemserver.errors import CheckpointError
from stemserver.files import atomic_path
from stemserver.model import ModelConfig, StemJEPA
from stemserver.text import LabelEmbedder, load_text_backend

FORMAT = "stemserver-checkpoint"
FORMAT_VERSION = 1
_MODEL_PREFIXES = ("encoder.", "target_encoder.", "predictor.", "instrument.")


@dataclass
class Checkpoint:
    config: ModelConfig
    state: dict[str, torch.Tensor]  # StemJEPA.state_dict()
    text_backend: dict  # the text backend's identity (see stemserver.text)
    labels: list[str]
    label_embeddings: torch.Tensor  # (len(labels), config.text_dim)
    info: dict = field(default_factory=dict)  # training run facts: steps, data, time...

    @classmethod
    def from_model(cls, model: StemJEPA, labels: LabelEmbedder, info: dict | None = None) -> Checkpoint:
        """Snapshot a model with the label cache it was trained with (every label it has embedded)."""
        if labels.dim != model.config.text_dim:
            raise ValueError(f"the label cache is {labels.dim}-d but the model expects {model.config.text_dim}-d text")
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return cls(model.config, state, labels.backend_identity, labels.known_labels, labels.embeddings, info or {})

    def label_embedder(self, text: TextSettings = TextSettings(), device: str = "cpu") -> LabelEmbedder:
        """The label cache, with the text backend it was made with loaded lazily for unknown labels
        (never, with `text.backend: none`)."""
        loader = None
        if text.backend == "auto":
            def loader():
                return load_text_backend(self.text_backend, device=device, clap_checkpoint=text.clap_checkpoint)
        try:
            return LabelEmbedder(self.labels, self.label_embeddings, self.text_backend, loader)
        except ValueError as e:
            raise CheckpointError(f"the checkpoint's label cache is inconsistent: {e}") from e

    def nearest_labels(self, vectors: np.ndarray) -> list[str]:
        """The label of the label cache nearest (by cosine) to each of the (n, text_dim) instrument vectors:
        a stem's predicted instrument, as `library list` and the server's library view name it."""
        labels = self.label_embeddings.float().numpy()
        labels = labels / np.maximum(np.linalg.norm(labels, axis=1, keepdims=True), 1e-12)
        return [self.labels[i] for i in (np.asarray(vectors, np.float32) @ labels.T).argmax(axis=1)]

    def build_model(self, device: torch.device | str = "cpu") -> StemJEPA:
        """A StemJEPA with these weights, in eval mode, on `device`."""
        model = StemJEPA(self.config)
        try:
            model.load_state_dict(self.state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's weights do not fit its own model config: {e}") from e
        return model.to(device).eval()

    def with_dtype(self, dtype: torch.dtype) -> Checkpoint:
        """A copy whose floating-point weights are stored as `dtype` (float16 halves the file; the
        model is rebuilt in float32 from it). The label cache keeps its precision."""
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in self.state.items()}
        return Checkpoint(self.config, state, self.text_backend, list(self.labels), self.label_embeddings,
                          {**self.info, "weights_dtype": str(dtype).removeprefix("torch.")})

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash mid-save never leaves a half-written checkpoint at `path`."""
        path = Path(path)
        if len(self.labels) != self.label_embeddings.shape[0]:
            raise ValueError(f"{len(self.labels)} labels but {self.label_embeddings.shape[0]} label embeddings")
        tensors = {k: v.contiguous() for k, v in self.state.items()}
        tensors["label_embeddings"] = self.label_embeddings.contiguous()
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "model_config": json.dumps(self.config.to_dict()),
            "text_backend": json.dumps(self.text_backend),
            "labels": json.dumps(self.labels),
            "info": json.dumps(self.info),
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint bundle; any problem is a CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}; pass --checkpoint with the path of a .safetensors bundle")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or not safetensors): {e}") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a stemserver checkpoint (no '{FORMAT}' marker)")
    version = metadata.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this stemserver reads version {FORMAT_VERSION}. "
            "Upgrade stemserver or re-export the checkpoint."
        )
    try:
        config = ModelConfig.from_dict(json.loads(metadata["model_config"]))
        text_backend = json.loads(metadata["text_backend"])
        labels = json.loads(metadata["labels"])
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has damaged metadata: {e}") from e
    if "label_embeddings" not in tensors:
        raise CheckpointError(f"{path} has no label_embeddings tensor")
    label_embeddings = tensors.pop("label_embeddings")
    if label_embeddings.shape != (len(labels), config.text_dim):
        raise CheckpointError(
            f"{path}: label_embeddings has shape {tuple(label_embeddings.shape)}, "
            f"expected ({len(labels)}, {config.text_dim})"
        )
    unexpected = [k for k in tensors if not k.startswith(_MODEL_PREFIXES)]
    if unexpected:
        raise CheckpointError(f"{path} holds tensors that are not part of the model: {', '.join(unexpected[:5])}")
    damaged = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if damaged:
        raise CheckpointError(f"{path} holds NaN or infinite weights in {', '.join(damaged[:5])}; it is corrupt")
    return Checkpoint(config, tensors, text_backend, labels, label_embeddings, info)


def load_model(path: str | Path, settings: Settings) -> tuple[Checkpoint, StemJEPA, torch.device]:
    """The checkpoint at `path` and its model on the configured device, with the configured CPU threads."""
    set_threads(settings.threads)
    device = select_device(settings.device)
    checkpoint = load_checkpoint(path)
    return checkpoint, checkpoint.build_model(device), device
