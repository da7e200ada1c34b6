"""Context/target examples for training (Stem-JEPA section 3.2) and the retrieval evaluation view.

Training example: pick a track and a chunk; the stems active in the chunk (peak above a threshold,
optionally RMS too) are the candidates; the target is one of them, the context the sum of k others
with k uniform in 1..n_active-1, so the model sees both dense mixes and single stems as context
(single stems matter: they are also what it embeds as targets). A chunk with fewer than two active
stems is redrawn (up to `chunk_tries` times, then another track), so neither side is ever silent.
The conditioning label is drawn uniformly from the target's label path, coarse to fine, so the
predictor learns "guitar" and "clean electric guitar" alike; "music" when the stem has none.

Example i is a pure function of (seed, i): `ContextTargetDataset[i]` seeds its own generator from
the pair. Batches are therefore the same with any number of DataLoader workers, and resuming at
step s needs only s (iterate indices from s * batch_size).

Evaluation view (the retrieval protocol of both papers): for each track, a fixed set of evenly
spaced chunks; in each, every active stem is paired with the mix of the other active stems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from stemserver.errors import StemserverError
from stemserver.vocabulary import FALLBACK_LABEL
from stemserver_training.cache import PreparedDataset, PreparedTrack


class SamplingError(StemserverError):
    """No usable example can be drawn (empty dataset, or thresholds no chunk passes)."""


@dataclass(frozen=True)
class SamplerConfig:
    chunk_seconds: float = 8.0
    min_peak: float = 0.01
    """A stem is active in a chunk when its peak |x| exceeds this (0.01 = -40 dBFS)."""
    min_rms: float = 0.0
    """...and its RMS exceeds this; 0 turns the RMS criterion off. RMS ignores isolated clicks
    and bleed that a peak criterion counts as activity."""
    chunk_tries: int = 10
    """Chunks drawn from a track before moving on to another track."""
    track_tries: int = 100
    """Tracks tried before giving up with a SamplingError (thresholds no chunk passes)."""

    def __post_init__(self):
        if not self.chunk_seconds > 0:
            raise ValueError(f"chunk_seconds must be > 0, got {self.chunk_seconds}")
        if self.min_peak < 0 or self.min_rms < 0:
            raise ValueError(f"activity thresholds must be >= 0, got min_peak={self.min_peak}, min_rms={self.min_rms}")
        if self.chunk_tries < 1 or self.track_tries < 1:
            raise ValueError(f"chunk_tries and track_tries must be >= 1, got {self.chunk_tries}, {self.track_tries}")


@dataclass(frozen=True)
class Example:
    """One (context, target) pair, with where it came from for debugging."""

    context: np.ndarray  # float32 (chunk,), the sum of the context stems
    target: np.ndarray  # float32 (chunk,), the target stem
    label: str  # the conditioning label
    label_path: tuple[str, ...]  # the target's whole label path (() when unlabelled)
    track: str
    stem: str  # the target stem's name
    start: int  # the chunk's first sample in the track
    context_stems: tuple[str, ...]  # the names of the stems summed into the context


class Batch(NamedTuple):
    """Examples stacked for the model. A NamedTuple, so DataLoader's pin_memory keeps its shape."""

    context: torch.Tensor  # (B, chunk) float32
    target: torch.Tensor  # (B, chunk) float32
    labels: list[str]
    label_paths: list[tuple[str, ...]]
    tracks: list[str]
    stems: list[str]
    starts: torch.Tensor  # (B,) int64
    context_stems: list[tuple[str, ...]]


def collate_examples(examples: Sequence[Example]) -> Batch:
    """DataLoader collate_fn: stack audio into tensors, keep labels and ids as lists."""
    return Batch(
        context=torch.from_numpy(np.stack([e.context for e in examples])),
        target=torch.from_numpy(np.stack([e.target for e in examples])),
        labels=[e.label for e in examples],
        label_paths=[e.label_path for e in examples],
        tracks=[e.track for e in examples],
        stems=[e.stem for e in examples],
        starts=torch.tensor([e.start for e in examples], dtype=torch.int64),
        context_stems=[e.context_stems for e in examples],
    )


def active_stems(chunk: np.ndarray, config: SamplerConfig) -> np.ndarray:
    """Indices of the rows of `chunk` (stems x samples) that count as active."""
    active = np.abs(chunk).max(axis=1) > config.min_peak
    if config.min_rms > 0:
        active &= np.sqrt(np.mean(np.square(chunk, dtype=np.float64), axis=1)) > config.min_rms
    return np.flatnonzero(active)


def read_chunk(track: PreparedTrack, start: int, length: int) -> np.ndarray:
    """All stems of `track` over [start, start + length), float32 (stems, length), zero-padded."""
    return np.stack([stem.read(start, start + length) for stem in track.stems])


class ContextTargetDataset(Dataset):
    """`num_examples` training examples; example i depends only on (seed, i).

    Tracks are drawn uniformly (each recording counts the same, however long) and chunk starts
    uniformly within the track; a track shorter than a chunk is read from its start and
    zero-padded, so small or short datasets still train. To resume at step s with batch size B,
    give the DataLoader `sampler=range(s * B, len(dataset))`.
    """

    def __init__(self, dataset: PreparedDataset, num_examples: int, seed: int = 0,
                 config: SamplerConfig = SamplerConfig()):
        if not dataset.tracks:
            raise SamplingError(f"{dataset.cache_dir}: no tracks to sample from (is the split empty?)")
        self.tracks = dataset.tracks
        self.num_examples = num_examples
        self.seed = seed
        self.config = config
        self.chunk_samples = round(config.chunk_seconds * dataset.sample_rate)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < self.num_examples:
            raise IndexError(f"example {index} out of range 0..{self.num_examples - 1}")
        rng = np.random.default_rng([self.seed, index])
        for _ in range(self.config.track_tries):
            track = self.tracks[rng.integers(len(self.tracks))]
            last_start = max(track.num_samples - self.chunk_samples, 0)
            for _ in range(self.config.chunk_tries):
                start = int(rng.integers(last_start + 1))
                chunk = read_chunk(track, start, self.chunk_samples)
                active = active_stems(chunk, self.config)
                if len(active) >= 2:
                    return self._example(rng, track, start, chunk, active)
        raise SamplingError(
            f"example {index}: no chunk with two active stems in {self.config.track_tries} tracks x "
            f"{self.config.chunk_tries} chunks; lower min_peak ({self.config.min_peak}) or min_rms "
            f"({self.config.min_rms}), or check that the stems are not silent")

    def _example(self, rng: np.random.Generator, track: PreparedTrack, start: int,
                 chunk: np.ndarray, active: np.ndarray) -> Example:
        target = int(rng.choice(active))
        others = active[active != target]
        k = int(rng.integers(1, len(active)))  # uniform in 1..n_active-1
        context = np.sort(rng.choice(others, size=k, replace=False))
        stem = track.stems[target]
        label = stem.label_path[rng.integers(len(stem.label_path))] if stem.label_path else FALLBACK_LABEL
        return Example(
            context=chunk[context].sum(axis=0), target=chunk[target], label=label,
            label_path=stem.label_path, track=track.name, stem=stem.name, start=start,
            context_stems=tuple(track.stems[i].name for i in context),
        )


def evaluation_chunk_starts(num_samples: int, chunk_samples: int, max_chunks: int) -> list[int]:
    """Evenly spaced, non-overlapping chunk starts: the centres of n equal parts of the track.

    n = min(max_chunks, how many chunks fit); a track shorter than one chunk gives [0] (padded).
    """
    n = min(max_chunks, num_samples // chunk_samples)
    if n < 1:
        return [0]
    part = num_samples / n
    return [round((i + 0.5) * part - chunk_samples / 2) for i in range(n)]


class EvaluationView(Dataset):
    """Every active stem of every evaluation chunk, with the mix of the other active stems.

    An item's `target` is the stem, its `context` the mix without it, `label_path` the stem's
    labels (the evaluator conditions on the fine or the coarse level) and `label` the finest
    level ("music" when unlabelled). Chunks with fewer than two active stems are left out: there
    is no mix to query with. The item list is fixed at construction, so every run scores the same
    queries against the same pool.

    `target_shift` (samples) reads every target that much later than its mix (earlier when
    negative; zeros past either end of the track): the papers' protocol pairs a mix with exactly
    the same moment of its stem, which a library search never gets.
    """

    def __init__(self, dataset: PreparedDataset, config: SamplerConfig = SamplerConfig(),
                 chunks_per_track: int = 4, target_shift: int = 0):
        chunk_samples = round(config.chunk_seconds * dataset.sample_rate)
        self.tracks = dataset.tracks
        self.chunk_samples = chunk_samples
        self.target_shift = target_shift
        self.items: list[tuple[int, int, int, tuple[int, ...]]] = []  # track, start, stem, others
        for t, track in enumerate(self.tracks):
            for start in evaluation_chunk_starts(track.num_samples, chunk_samples, chunks_per_track):
                active = [int(i) for i in active_stems(read_chunk(track, start, chunk_samples), config)]
                if len(active) >= 2:
                    self.items += [(t, start, s, tuple(i for i in active if i != s)) for s in active]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Example:
        t, start, s, others = self.items[index]
        track = self.tracks[t]
        chunk = read_chunk(track, start, self.chunk_samples)
        stem = track.stems[s]
        shifted = start + self.target_shift
        target = chunk[s] if self.target_shift == 0 else np.concatenate([
            np.zeros(max(0, -shifted), dtype=np.float32),
            stem.read(max(0, shifted), shifted + self.chunk_samples)])
        return Example(
            context=chunk[list(others)].sum(axis=0), target=target,
            label=stem.label_path[-1] if stem.label_path else FALLBACK_LABEL,
            label_path=stem.label_path, track=track.name, stem=stem.name, start=start,
            context_stems=tuple(track.stems[i].name for i in others),
        )
