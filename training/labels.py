"""The instrument labels a run conditions on: embedded once by the text backend (the standard
vocabulary and every label of the dataset), then looked up on the device at each step."""

from __future__ import annotations

import torch

from stemserver.checkpoint import load_checkpoint
from stemserver.errors import ConfigError
from stemserver.text import ClapText, LabelEmbedder, MiniLMText, TextBackend
from stemserver.vocabulary import standard_vocabulary
from stemserver_training.cache import PreparedDataset
from stemserver_training.config import TrainConfig
from stemserver_training.distributed import Distributed


def dataset_labels(cache: PreparedDataset) -> list[str]:
    """Every level of every stem's label path, in every split (the evaluation needs no text model)."""
    return sorted({label for track in cache.tracks for stem in track.stems for label in stem.label_path})


def build_label_embedder(config: TrainConfig, labels: list[str], backend: TextBackend | None = None) -> LabelEmbedder:
    """Embed the standard vocabulary and `labels`, once, with the text backend (or reuse the label
    cache of `text.labels_from`)."""
    if config.text.labels_from is not None:
        embedder = load_checkpoint(config.text.labels_from).label_embedder()
        if embedder.backend_identity.get("backend") != config.text.backend:
            raise ConfigError(f"text.labels_from {config.text.labels_from}: its labels were embedded with "
                              f"{embedder.backend_identity.get('backend')}, not text.backend {config.text.backend}")
        return embedder
    if backend is None:
        backend = MiniLMText() if config.text.backend == "minilm" else ClapText(config.text.clap_checkpoint)
    return LabelEmbedder.build(backend, standard_vocabulary() + labels)


class LabelTable:
    """The label cache's embeddings on the device, rank 0's on every rank (so that every rank
    conditions identically), after embedding `labels` (every label the sampler can draw)."""

    def __init__(self, embedder: LabelEmbedder, labels: list[str], device: torch.device, ddp: Distributed):
        embedder.embed(labels)
        self.embeddings = embedder.embeddings.to(device)
        if ddp.enabled:
            torch.distributed.broadcast(self.embeddings, 0)
        self.rows = {label: i for i, label in enumerate(embedder.known_labels)}

    def lookup(self, labels: list[str]) -> torch.Tensor:
        """(len(labels), text_dim) embeddings."""
        return self.embeddings[[self.rows[label] for label in labels]]
