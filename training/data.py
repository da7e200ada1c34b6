"""What the loop trains on: the prepared cache, the training split without the held-out labels, the
log-mel statistics measured on it, and the batches of each step."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch.utils.data import DataLoader

from stemserver.errors import ConfigError
from stemserver.features import LOG_OFFSET, FrontEndConfig, LogMel
from stemserver.vocabulary import normalize_label
from stemserver_training.cache import PreparedDataset, build_cache, open_cache
from stemserver_training.config import PHASES, TrainConfig
from stemserver_training.datasets import read_dataset
from stemserver_training.distributed import Distributed, barrier, shard
from stemserver_training.sampler import ContextTargetDataset, SamplerConfig, collate_examples


def prepare_data(config: TrainConfig, ddp: Distributed) -> PreparedDataset:
    """The cache of `data.cache`; with `data.layout` and `data.root`, rank 0 first builds or
    updates it (only what changed is decoded) while the other ranks wait."""
    data = config.data
    if data.layout is not None and ddp.is_main:
        build_cache(read_dataset(data.layout, data.root), data.cache, seed=data.split_seed,
                    valid_fraction=data.valid_fraction, test_fraction=data.test_fraction,
                    progress=config.runtime.progress)
    barrier(ddp)
    return open_cache(data.cache)


def training_split(config: TrainConfig, cache: PreparedDataset) -> PreparedDataset:
    """`data.split` of the cache without the stems of `data.holdout_labels`."""
    held_out = [normalize_label(label) for label in config.data.holdout_labels]  # as label paths spell them
    data = cache.split(config.data.split).without_labels(held_out)
    if not data.tracks:
        raise ConfigError(f"{config.data.cache}: no {config.data.split} track has two stems outside "
                          f"data.holdout_labels {config.data.holdout_labels}")
    return data


def sampler_config(config: TrainConfig) -> SamplerConfig:
    return SamplerConfig(chunk_seconds=config.data.chunk_seconds, min_peak=config.data.min_peak,
                         min_rms=config.data.min_rms)


def example_seed(config: TrainConfig, phase: str) -> int:
    """Each (seed, phase) draws its own stream of examples."""
    return config.seed * len(PHASES) + PHASES.index(phase)


def measure_normalisation(data: PreparedDataset, sampler: SamplerConfig, front_end: FrontEndConfig,
                          chunks: int, seed: int, batch: int = 32) -> FrontEndConfig:
    """`front_end` with the mean and std of log(mel + eps) over `chunks` training examples (their
    context mixes and target stems alike, as the encoder sees both)."""
    examples = ContextTargetDataset(data, chunks, seed=seed, config=sampler)
    log_mel = LogMel(front_end)
    total = total_sq = count = 0.0
    for first in range(0, chunks, batch):
        group = [examples[i] for i in range(first, min(first + batch, chunks))]
        audio = torch.from_numpy(np.stack([x for e in group for x in (e.context, e.target)]))
        with torch.no_grad():
            values = torch.log(log_mel.power_mel(audio) + LOG_OFFSET).double()
        total += values.sum().item()
        total_sq += values.square().sum().item()
        count += values.numel()
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean**2, 1e-12))
    return dataclasses.replace(front_end, mean=mean, std=std)


def batch_loader(config: TrainConfig, ddp: Distributed, device: torch.device, data: PreparedDataset,
                 sampler: SamplerConfig, phase: str, steps: int, start: int) -> DataLoader:
    """This rank's micro-batches from step `start` on. Example i is a pure function of (seed, i),
    step s takes the global indices [s * B, (s + 1) * B), cut into micro-batches and then into
    this rank's slice."""
    batch_size, accumulation = config.optim.batch_size, config.optim.accumulation
    dataset = ContextTargetDataset(data, steps * batch_size, seed=example_seed(config, phase), config=sampler)
    micro = batch_size // accumulation
    micro_batches = (list(shard(range(first, first + micro), ddp))
                     for first in range(start * batch_size, steps * batch_size, micro))
    return DataLoader(dataset, batch_sampler=micro_batches, collate_fn=collate_examples,
                      num_workers=config.data.workers, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(config.seed))
