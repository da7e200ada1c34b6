"""The two-phase Stem-JEPA trainer, top to bottom.

    python -m training train training/configs/tiny.yaml data.root=/path/to/multitracks
    torchrun --nproc_per_node 8 -m training train training/configs/paper.yaml --out runs/paper

1. Data: open the prepared cache (building it first when the config names a dataset), measure the
   log-mel mean/std on a sample of training chunks, embed every label once.
2. Phase 1, contrastive: the encoder alone; InfoNCE between the patch-averaged embeddings of a
   context mix and of its target stem, against the other targets of the batch.
3. Phase 2, JEPA: the encoder (from phase 1), a target encoder that is its EMA (initialised as a
   copy, no gradients) and the FiLM-conditioned predictor; loss 2 - 2 cos(pred, layer_norm(target))
   per patch; tau rises linearly from tau_start to tau_end.
Both phases: AdamW, lr = base_lr * batch / 256 with linear warm-up and cosine decay, gradient
clipping, mixed precision on GPUs, gradient accumulation, DDP under torchrun. Every
`checkpoint_every` steps and at the end of a phase, rank 0 writes the servable bundle
(stemserver.checkpoint) and, beside it, the training state that makes `--resume` continue exactly
where the run stopped. See docs/training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import math
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import TextSettings
from stemserver.device import set_threads
from stemserver.errors import ConfigError, StemserverError
from stemserver.features import LOG_OFFSET, FrontEndConfig, LogMel
from stemserver.files import atomic_path
from stemserver.model import StemJEPA
from stemserver.text import ClapText, LabelEmbedder, MiniLMText, TextBackend
from stemserver.vocabulary import normalize_label, standard_vocabulary
from training.cache import PreparedDataset, build_cache, open_cache
from training.config import PHASES, TrainConfig, load_config
from training.datasets import read_dataset
from training.distributed import (
    Distributed,
    all_reduce_mean,
    any_rank,
    barrier,
    gather_with_grad,
    init_distributed,
    shard,
    shutdown,
)
from training.ema import ema_rate, ema_update
from training.losses import InfoNCE, jepa_loss
from training.optim import build_optimizer, scaled_lr
from training.sampler import Batch, ContextTargetDataset, SamplerConfig, collate_examples
from training.schedule import learning_rate

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"
METRICS = ("phase", "step", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s",
           "temperature", "accuracy", "tau", "target_std")
_CHECKPOINT_NAME = re.compile(r"^(contrastive|jepa)-(\d+)\.state\.pt$")


# ---------------------------------------------------------------------------------------------
# The two objectives. Each takes standardised log-mels (B, n_mels, frames) and returns the loss
# and a few detached figures for the log.


class ContrastiveObjective(nn.Module):
    """Phase 1: InfoNCE between pooled context and target embeddings.

    `pooling="mean"` (the papers): one embedding per example, the mean over all patches.
    `pooling="columns"`: one embedding per time column (the mean over its frequency rows), for
    `columns` randomly chosen columns of each example; a mix column's positive is the stem's
    column at the same time, and every other sampled column of the batch, the same example's
    other moments included, is a negative. `pooling="both"` averages the two losses (its logged
    accuracy is the mean-pooled one). See docs/training.md, "Phase 1 pooling", for why.

    Under DDP the embeddings of every rank are gathered first, so the negatives are the whole
    global (micro-)batch, as in a single process, and every rank computes the same loss."""

    def __init__(self, encoder: nn.Module, loss: InfoNCE, ddp: Distributed, pooling: str = "mean",
                 columns: int = 8):
        super().__init__()
        self.encoder, self.loss, self.ddp = encoder, loss, ddp
        self.pooling, self.columns = pooling, columns

    def forward(self, context: torch.Tensor, target: torch.Tensor,
                text: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = self.encoder(torch.cat([context, target]))  # one pass for both halves
        pairs = []
        if self.pooling in ("mean", "both"):
            pairs.append(z.mean(dim=(1, 2)).chunk(2))  # mean over patches -> (B, d) each
        if self.pooling in ("columns", "both"):
            columns = z.mean(dim=1)  # (2B, cols, d)
            picked = torch.randperm(columns.shape[1], device=z.device)[: self.columns]
            pairs.append(columns[:, picked].flatten(0, 1).chunk(2))  # (B x picked, d) each, aligned
        pairs = [(gather_with_grad(s, self.ddp), gather_with_grad(s_bar, self.ddp)) for s, s_bar in pairs]
        loss = sum(self.loss(s, s_bar) for s, s_bar in pairs) / len(pairs)
        with torch.no_grad():
            s, s_bar = pairs[0]
            hits = self.loss.logits(s, s_bar).argmax(dim=1) == torch.arange(len(s), device=s.device)
        return loss, {"temperature": self.loss.temperature.detach(), "accuracy": hits.float().mean()}


class JEPAObjective(nn.Module):
    """Phase 2: predict each patch of the target encoder's view of the stem from the context
    encoder's view of the mix, given the instrument's text embedding."""

    def __init__(self, model: StemJEPA):
        super().__init__()
        self.encoder, self.target_encoder, self.predictor = model.encoder, model.target_encoder, model.predictor

    def forward(self, context: torch.Tensor, target: torch.Tensor,
                text: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            z_bar = self.target_encoder(target)
        prediction = self.predictor(self.encoder(context), text)
        loss = jepa_loss(prediction, z_bar)
        with torch.no_grad():  # spread of the targets across the batch: near 0 means collapse
            pooled = F.layer_norm(z_bar.float(), z_bar.shape[-1:]).mean(dim=(1, 2))
            target_std = pooled.std(dim=0).mean() if len(pooled) > 1 else torch.zeros((), device=pooled.device)
        return loss, {"target_std": target_std}


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class PhaseSummary:
    phase: str
    steps: int  # optimiser steps run in this invocation
    seconds: float
    final_loss: float  # mean loss of the last logged interval
    samples_per_s: float
    checkpoint: Path  # the phase's final bundle
    history: list[dict] = field(default_factory=list)  # the logged rows (also in metrics.csv)


@dataclass
class TrainResult:
    out: Path
    model_path: Path  # the bundle to serve: the last phase's final checkpoint
    model: StemJEPA  # the trained model itself (identical on every rank)
    labels: LabelEmbedder
    phases: list[PhaseSummary]
    interrupted: bool = False


# ---------------------------------------------------------------------------------------------
# The run


def train(config: TrainConfig, *, resume: bool = False, text_backend: TextBackend | None = None) -> TrainResult:
    """Train the phases of `config`; with `resume`, continue from the latest checkpoint in
    `config.out` (a fresh start when there is none). `text_backend` replaces the one the config
    names (tests pass a small one). Under torchrun every process calls this."""
    ddp, device = init_distributed(config.runtime.device)
    try:
        return _train(config, ddp, device, resume, text_backend)
    finally:
        shutdown(ddp)


def _train(config: TrainConfig, ddp: Distributed, device: torch.device, resume: bool,
           text_backend: TextBackend | None) -> TrainResult:
    set_threads(config.runtime.threads)
    seed_everything(config.seed)
    out = config.out
    if config.optim.batch_size % (config.optim.accumulation * ddp.world_size):
        raise ConfigError(f"optim.batch_size {config.optim.batch_size} is not divisible by accumulation x "
                          f"processes ({config.optim.accumulation} x {ddp.world_size})")
    latest = latest_checkpoint(out)
    if latest is not None and not resume:
        raise ConfigError(f"{out} already holds checkpoints ({latest.name}); pass --resume to continue that run, "
                          "or choose another --out")
    if ddp.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    cache = prepare_data(config, ddp)
    train_data = cache.split(config.data.split).without_labels(holdout_labels(config))
    if not train_data.tracks:
        raise ConfigError(f"{config.data.cache}: no {config.data.split} track has two stems outside "
                          f"data.holdout_labels {config.data.holdout_labels}")
    sampler_config = SamplerConfig(chunk_seconds=config.data.chunk_seconds, min_peak=config.data.min_peak,
                                   min_rms=config.data.min_rms)
    dataset_labels = sorted({label for track in cache.tracks for stem in track.stems for label in stem.label_path})
    state = None
    if latest is not None:  # resume: the bundle holds the weights, normalisation and label cache
        model, labels = model_from_bundle(latest.with_name(latest.name.replace(".state.pt", ".safetensors")),
                                          config, device)
        state = torch.load(latest, map_location="cpu", weights_only=True)
        say(ddp, f"resuming from {latest} ({state['phase']} step {state['step']})")
        _warn_config_changes(ddp, state["config"], config)
    elif "contrastive" not in config.phases and config.jepa.init == "contrastive":
        model, labels = model_from_bundle(config.jepa.init_checkpoint, config, device)
    else:
        labels = build_label_embedder(config, dataset_labels, text_backend)
        front_end = FrontEndConfig(sample_rate=cache.sample_rate)
        if config.data.norm_chunks:
            front_end = measure_normalisation(train_data, sampler_config, front_end, config.data.norm_chunks,
                                              example_seed(config, "contrastive"))
            say(ddp, f"log-mel statistics over {config.data.norm_chunks} chunks: mean {front_end.mean:.3f}, "
                     f"std {front_end.std:.3f}")
        torch.manual_seed(config.seed)
        model = StemJEPA(config.model_config(text_dim=labels.dim, front_end=front_end)).to(device)
    if cache.sample_rate != model.config.front_end.sample_rate:
        raise ConfigError(f"data.cache holds {cache.sample_rate} Hz audio but the model expects "
                          f"{model.config.front_end.sample_rate} Hz")
    labels.embed(dataset_labels)  # every label the sampler can draw is in the cache from here on
    label_table = labels.embeddings.to(device)
    if ddp.enabled:  # rank 0's embeddings everywhere, so that every rank conditions identically
        torch.distributed.broadcast(label_table, 0)
    label_rows = {label: i for i, label in enumerate(labels.known_labels)}

    run = Run(config, ddp, device, model, labels, label_table, label_rows, train_data, sampler_config)
    summaries, interrupted = [], False
    with stop_on_signals() as stop:
        for phase in config.phases:
            if state is not None and PHASES.index(phase) < PHASES.index(state["phase"]):
                continue  # finished before the interruption
            phase_state = state if state is not None and state["phase"] == phase else None
            summary = run.phase(phase, phase_state, stop)
            summaries.append(summary)
            if stop.is_set():
                interrupted = True
                break
    model_path = summaries[-1].checkpoint if summaries else out / f"{config.phases[-1]}.safetensors"
    if ddp.is_main:
        print_summary(summaries, model_path, interrupted)
    return TrainResult(out, model_path, model, labels, summaries, interrupted)


@dataclass
class Run:
    """What both phases share: the model, its label table, the data and where to write."""

    config: TrainConfig
    ddp: Distributed
    device: torch.device
    model: StemJEPA
    labels: LabelEmbedder
    label_table: torch.Tensor  # (labels, text_dim) on the device
    label_rows: dict[str, int]
    data: PreparedDataset
    sampler_config: SamplerConfig

    def phase(self, phase: str, state: dict | None, stop: threading.Event) -> PhaseSummary:
        config, ddp, device, model = self.config, self.ddp, self.device, self.model
        settings = config.contrastive if phase == "contrastive" else config.jepa
        batch_size, accumulation = config.optim.batch_size, config.optim.accumulation
        peak_lr = scaled_lr(config.optim.base_lr, batch_size)
        start = state["step"] if state is not None else 0

        if phase == "contrastive":
            loss = InfoNCE(settings.temperature, settings.min_temperature, settings.max_temperature,
                           settings.symmetric, settings.center)
            objective = ContrastiveObjective(model.encoder, loss, ddp, settings.pooling, settings.columns).to(device)
        else:
            if state is None:  # I-JEPA: the target encoder starts as a copy of the context encoder
                model.target_encoder.load_state_dict(model.encoder.state_dict())
            objective = JEPAObjective(model)
        optimizer = build_optimizer(objective.parameters(), peak_lr, config.optim.weight_decay,
                                    (config.optim.beta1, config.optim.beta2), fused=device.type == "cuda")
        dtype = autocast_dtype(config.runtime.precision, device)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            if phase == "contrastive":
                objective.loss.load_state_dict(state["info_nce"])
            set_rng_state(state["rng"])

        step_fn: nn.Module = objective
        if config.runtime.compile:
            step_fn = torch.compile(step_fn)
        if ddp.enabled:
            step_fn = DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda" else None)

        batches = iter(self.loader(phase, settings.steps, start))
        logger = MetricsLogger(config, ddp, phase, settings.steps, start, state["loss"] if state else math.nan)
        checkpoint = self.checkpoint_stem(phase, start).with_suffix(".safetensors")
        t0 = time.perf_counter()
        for step in range(start, settings.steps):
            lr = learning_rate(step, peak_lr, settings.warmup_steps, settings.steps, config.optim.final_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            for micro in range(accumulation):
                batch: Batch = next(batches)
                context = model.front_end(batch.context.to(device, non_blocking=True))  # fp32 log-mel
                target = model.front_end(batch.target.to(device, non_blocking=True))
                text = self.label_table[[self.label_rows[label] for label in batch.labels]] if phase == "jepa" else None
                if ddp.enabled:  # all-reduce the gradients only with the last micro-batch
                    step_fn.require_backward_grad_sync = micro == accumulation - 1
                with autocast(device, dtype):
                    loss, figures = step_fn(context, target, text)
                scaler.scale(loss / accumulation).backward()
                logger.add({"loss": loss, **figures})
            scaler.unscale_(optimizer)
            grad_norm = nn.utils.clip_grad_norm_(objective.parameters(), config.optim.grad_clip or math.inf)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            tau = None
            if phase == "jepa":
                tau = ema_rate(step, settings.steps, settings.tau_start, settings.tau_end)
                ema_update(model.target_encoder, model.encoder, tau)

            done = step + 1
            stopping = any_rank(stop.is_set(), ddp, device)
            logger.step(done, lr, grad_norm, tau, force=stopping or done == settings.steps)
            if stopping or done % config.runtime.checkpoint_every == 0 or done == settings.steps:
                checkpoint = self.save(phase, done, settings.steps, objective, optimizer, scaler, logger.last_loss)
            if stopping:
                stop.set()
                break
        seconds = time.perf_counter() - t0
        logger.close()
        if not stop.is_set():  # the phase is complete: its final bundle
            checkpoint = config.out / f"{phase}.safetensors"
            if ddp.is_main:
                self.bundle(phase, settings.steps, settings.steps, logger.last_loss).save(checkpoint)
            barrier(ddp)
        ran = logger.steps_run
        return PhaseSummary(phase, ran, seconds, logger.last_loss, ran * batch_size / max(seconds, 1e-9),
                            checkpoint, logger.history)

    def loader(self, phase: str, steps: int, start: int) -> DataLoader:
        """Batches from step `start` on. Example i is a pure function of (seed, i), step s takes the
        global indices [s * B, (s + 1) * B), cut into micro-batches and then into this rank's slice."""
        config, ddp = self.config, self.ddp
        batch_size, accumulation = config.optim.batch_size, config.optim.accumulation
        dataset = ContextTargetDataset(self.data, steps * batch_size, seed=example_seed(config, phase),
                                       config=self.sampler_config)
        micro = batch_size // accumulation
        micro_batches = (list(shard(range(first, first + micro), ddp))
                         for first in range(start * batch_size, steps * batch_size, micro))
        return DataLoader(dataset, batch_sampler=micro_batches, collate_fn=collate_examples,
                          num_workers=config.data.workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(config.seed))

    def checkpoint_stem(self, phase: str, step: int) -> Path:
        return self.config.out / CHECKPOINT_DIR / f"{phase}-{step:07d}"

    def bundle(self, phase: str, step: int, steps: int, loss: float) -> Checkpoint:
        """The servable snapshot. A phase-1 model has one encoder: its target encoder (which the
        server embeds library stems with) is written as a copy of it."""
        if phase == "contrastive":
            self.model.target_encoder.load_state_dict(self.model.encoder.state_dict())
        info = {"phase": phase, "step": step, "steps": steps, "loss": loss,
                "samples": step * self.config.optim.batch_size, "world_size": self.ddp.world_size,
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__, "config": self.config.to_dict(),
                "data": {"cache": str(self.data.cache_dir), "split": self.config.data.split,
                         "tracks": len(self.data.tracks), "stems": sum(len(t.stems) for t in self.data.tracks)}}
        return Checkpoint.from_model(self.model, self.labels, info)

    def save(self, phase: str, step: int, steps: int, objective: nn.Module, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, loss: float) -> Path:
        """Rank 0 writes the bundle, then the training state beside it, then prunes old ones."""
        stem = self.checkpoint_stem(phase, step)
        if self.ddp.is_main:
            self.bundle(phase, step, steps, loss).save(stem.with_suffix(".safetensors"))
            state = {"phase": phase, "step": step, "loss": loss, "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict(), "rng": rng_state(), "config": self.config.to_dict(),
                     "info_nce": objective.loss.state_dict() if phase == "contrastive" else None}
            with atomic_path(stem.with_name(stem.name + ".state.pt")) as tmp:
                torch.save(state, tmp)
            prune_checkpoints(self.config.out, phase, self.config.runtime.keep_checkpoints)
        barrier(self.ddp)
        return stem.with_suffix(".safetensors")


# ---------------------------------------------------------------------------------------------
# Data, labels, normalisation


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


def example_seed(config: TrainConfig, phase: str) -> int:
    """Each (seed, phase) draws its own stream of examples."""
    return config.seed * len(PHASES) + PHASES.index(phase)


def build_label_embedder(config: TrainConfig, dataset_labels: list[str],
                         backend: TextBackend | None = None) -> LabelEmbedder:
    """Embed the standard vocabulary and every label of the dataset, once, with the text backend."""
    if config.text.labels_from is not None:
        labels = load_checkpoint(config.text.labels_from).label_embedder()
        if labels.backend_identity.get("backend") != config.text.backend:
            raise ConfigError(f"text.labels_from {config.text.labels_from}: its labels were embedded with "
                              f"{labels.backend_identity.get('backend')}, not text.backend {config.text.backend}")
        return labels
    if backend is None:
        backend = MiniLMText() if config.text.backend == "minilm" else ClapText(config.text.clap_checkpoint)
    return LabelEmbedder.build(backend, standard_vocabulary() + dataset_labels)


def holdout_labels(config: TrainConfig) -> list[str]:
    """data.holdout_labels as the label paths spell them."""
    return [normalize_label(label) for label in config.data.holdout_labels]


def model_from_bundle(path: Path, config: TrainConfig, device: torch.device) -> tuple[StemJEPA, LabelEmbedder]:
    """A model and its label cache from a checkpoint bundle (to resume, or to start phase 2 from a
    phase-1 run); the text backend is loaded only if the data has labels the cache lacks."""
    checkpoint = load_checkpoint(path)
    expected = config.model_config(text_dim=checkpoint.config.text_dim, front_end=checkpoint.config.front_end)
    if checkpoint.config != expected:
        raise ConfigError(f"{path} is a different model ({checkpoint.config}) from the config's model section "
                          f"({expected})")
    if checkpoint.text_backend.get("backend") != config.text.backend:
        raise ConfigError(f"{path} was trained with the text backend {checkpoint.text_backend.get('backend')!r}, "
                          f"the config says text.backend: {config.text.backend}")
    settings = TextSettings(backend="auto", clap_checkpoint=config.text.clap_checkpoint)
    return checkpoint.build_model(device).train(), checkpoint.label_embedder(settings)


def measure_normalisation(data: PreparedDataset, sampler_config: SamplerConfig, front_end: FrontEndConfig,
                          chunks: int, seed: int, batch: int = 32) -> FrontEndConfig:
    """`front_end` with the mean and std of log(mel + eps) over `chunks` training examples (their
    context mixes and target stems alike, as the encoder sees both)."""
    examples = ContextTargetDataset(data, chunks, seed=seed, config=sampler_config)
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


# ---------------------------------------------------------------------------------------------
# Checkpoint files, RNG, precision


def latest_checkpoint(out: Path) -> Path | None:
    """The newest training-state file in `out` whose bundle exists (phase order, then step)."""
    found = []
    for path in (out / CHECKPOINT_DIR).glob("*.state.pt"):
        match = _CHECKPOINT_NAME.match(path.name)
        if match and path.with_name(path.name.replace(".state.pt", ".safetensors")).is_file():
            found.append(((PHASES.index(match[1]), int(match[2])), path))
    return max(found)[1] if found else None


def prune_checkpoints(out: Path, phase: str, keep: int) -> None:
    """Delete all but the `keep` newest step checkpoints of `phase`."""
    steps = sorted(int(m[2]) for p in (out / CHECKPOINT_DIR).glob(f"{phase}-*.state.pt")
                   if (m := _CHECKPOINT_NAME.match(p.name)))
    for step in steps[:-keep]:
        for suffix in (".state.pt", ".safetensors"):
            (out / CHECKPOINT_DIR / f"{phase}-{step:07d}{suffix}").unlink(missing_ok=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global generator, as tensors and plain values (loadable with weights_only=True)."""
    numpy_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]]}


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None means full float32. auto: bf16 on GPUs that have it, else fp16; fp32 elsewhere."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"runtime.precision fp16 needs a CUDA GPU (it runs with a GradScaler); on {device.type} "
                          "use bf16 or fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _warn_config_changes(ddp: Distributed, stored: dict, config: TrainConfig) -> None:
    def flatten(d: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in d.items():
            flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return flat
    before, after = flatten(stored), flatten(config.to_dict())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        say(ddp, f"note: the config differs from the interrupted run's in {', '.join(changed)}; the result will "
                 "not be identical to an uninterrupted run")


# ---------------------------------------------------------------------------------------------
# Stopping on a signal


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT / SIGTERM finish the current step, write a checkpoint, and stop the run; a second
    SIGINT interrupts at once."""
    flag = threading.Event()

    def handler(signum, frame):
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.set()

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no handlers, no graceful stop
        previous = {}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------
# Logging


class MetricsLogger:
    """Accumulates the figures of each step on the device and, every `log_every` steps, averages
    them over the interval and over ranks; rank 0 shows them on the progress bar and appends them
    to metrics.csv (and TensorBoard when installed)."""

    def __init__(self, config: TrainConfig, ddp: Distributed, phase: str, steps: int, start: int, last_loss: float):
        self.config, self.ddp, self.phase = config, ddp, phase
        self.batch_size, self.accumulation = config.optim.batch_size, config.optim.accumulation
        self.every = config.runtime.log_every
        self.history: list[dict] = []
        self.last_loss = last_loss
        self.steps_run = 0
        self._sums: dict[str, torch.Tensor] = {}
        self._steps, self._since = 0, time.perf_counter()
        self._t0 = self._since
        self._bar = self._csv = self._tensorboard = None
        if ddp.is_main:
            path = config.out / METRICS_FILE
            _truncate_metrics(path, phase, start)
            new = not path.exists()
            self._file = open(path, "a", newline="")
            self._csv = csv.DictWriter(self._file, fieldnames=METRICS)
            if new:
                self._csv.writeheader()
            if config.runtime.tensorboard:
                with contextlib.suppress(ImportError):
                    from torch.utils.tensorboard import SummaryWriter

                    self._tensorboard = SummaryWriter(str(config.out / "tensorboard"))
            self._bar = tqdm(total=steps, initial=start, desc=phase, unit="step", dynamic_ncols=True,
                             disable=not config.runtime.progress)

    def add(self, figures: dict[str, torch.Tensor]) -> None:
        """One micro-batch's loss and figures (the step's value is the mean over its micro-batches)."""
        for name, value in figures.items():
            self._sums[name] = self._sums.get(name, 0) + value.detach().float() / self.accumulation

    def step(self, step: int, lr: float, grad_norm: torch.Tensor, tau: float | None, force: bool) -> None:
        self._sums["grad_norm"] = self._sums.get("grad_norm", 0) + grad_norm.detach().float()
        self._steps += 1
        self.steps_run += 1
        if self._bar is not None:
            self._bar.update(1)
        if step % self.every and not force:
            return
        names = sorted(self._sums)
        means = all_reduce_mean(torch.stack([self._sums[n] for n in names]) / self._steps, self.ddp).tolist()
        now = time.perf_counter()
        row = {"phase": self.phase, "step": step, "lr": lr, "tau": tau, **dict(zip(names, means)),
               "samples_per_s": self._steps * self.batch_size / max(now - self._since, 1e-9),
               "elapsed_s": now - self._t0}
        self.history.append(row)
        self.last_loss = row["loss"]
        self._sums, self._steps, self._since = {}, 0, now
        if self.ddp.is_main:
            self._csv.writerow({k: row.get(k) for k in METRICS})
            self._file.flush()
            if self._tensorboard is not None:
                for name, value in row.items():
                    if name not in ("phase", "step") and value is not None:
                        self._tensorboard.add_scalar(f"{self.phase}/{name}", value, step)
            shown = {"loss": f"{row['loss']:.4f}", "lr": f"{lr:.2e}", "samples/s": f"{row['samples_per_s']:.1f}"}
            if tau is not None:
                shown["tau"] = f"{tau:.5f}"
            self._bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        if self.ddp.is_main:
            self._bar.close()
            self._file.close()
            if self._tensorboard is not None:
                self._tensorboard.close()


def _truncate_metrics(path: Path, phase: str, start: int) -> None:
    """On resume, drop the rows logged after the checkpoint (they are about to be run again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    order = PHASES.index(phase)
    kept = [r for r in rows if (PHASES.index(r["phase"]), int(r["step"])) <= (order, start)]
    if len(kept) != len(rows):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRICS)
            writer.writeheader()
            writer.writerows(kept)


def say(ddp: Distributed, message: str) -> None:
    if ddp.is_main:
        print(f"train: {message}", file=sys.stderr, flush=True)


def print_summary(summaries: list[PhaseSummary], model_path: Path, interrupted: bool) -> None:
    print(f"{'phase':12} {'steps':>8} {'time':>10} {'final loss':>11} {'samples/s':>10}")
    for s in summaries:
        if not s.steps:
            continue
        print(f"{s.phase:12} {s.steps:8d} {datetime.timedelta(seconds=round(s.seconds))!s:>10} "
              f"{s.final_loss:11.4f} {s.samples_per_s:10.1f}")
    if interrupted:
        print(f"stopped early; the checkpoint is {model_path}: run the same command with --resume to continue")
    else:
        print(f"model: {model_path}")


# ---------------------------------------------------------------------------------------------
# Command line: `python -m training train` and `python -m training prepare`


def _override(text: str) -> str:
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. optim.batch_size=64)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` verb's arguments (shared by `python -m training train` and `stemserver train`)."""
    parser.add_argument("train_config", type=Path, metavar="CONFIG", help="training config (YAML), e.g. "
                        "training/configs/tiny.yaml")
    parser.add_argument("overrides", nargs="*", type=_override, metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.batch_size=64 jepa.steps=1000 runtime.device=cuda")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output "
                        "folder (starts afresh when it has none)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: the config's `out`)")


def run(args: argparse.Namespace) -> int:
    """Run the `train` verb; exit code 0 done, 1 error (message on stderr), 130 stopped by a signal
    after writing a checkpoint. Honours --device / --threads when the caller's parser defines them."""
    overrides = list(args.overrides)
    for flag, key in (("out", "out"), ("device", "runtime.device"), ("threads", "runtime.threads")):
        if getattr(args, flag, None) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    try:
        result = train(load_config(args.train_config, overrides), resume=args.resume)
    except StemserverError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layout", choices=["musdb18", "moisesdb", "folder"], help="the dataset's layout")
    parser.add_argument("root", type=Path, help="the dataset's folder")
    parser.add_argument("cache", type=Path, help="the cache folder to build or update (data.cache in the config)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the track splits (default 0)")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="tracks drawn for valid (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="tracks drawn for test (default 0.1)")


def run_prepare(args: argparse.Namespace) -> int:
    """Decode a dataset into the cache the trainer reads; prints the split sizes."""
    try:
        prepared = build_cache(read_dataset(args.layout, args.root), args.cache, seed=args.split_seed,
                               valid_fraction=args.valid_fraction, test_fraction=args.test_fraction)
    except (StemserverError, ValueError) as e:
        print(f"prepare: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    for split in ("train", "valid", "test"):
        part = prepared.split(split)
        seconds = sum(t.num_samples for t in part.tracks) / prepared.sample_rate
        print(f"{split:5}: {len(part.tracks):5d} tracks, {sum(len(t.stems) for t in part.tracks):6d} stems, "
              f"{seconds / 3600:7.2f} h")
    print(f"cache: {prepared.cache_dir}")
    return EXIT_OK
