"""The two-phase Stem-JEPA trainer, top to bottom.

    stemserver train tiny data.root=/path/to/multitracks
    torchrun --nproc_per_node 8 -m stemserver_training train paper --out runs/paper

1. Data: open the prepared cache (building it first when the config names a dataset), measure the
   log-mel mean/std on a sample of training chunks, embed every label once (data.py, labels.py).
2. Phase 1, contrastive: the encoder alone; InfoNCE between the patch-averaged embeddings of a
   context mix and of its target stem, against the other targets of the batch (objectives.py).
3. Phase 2, JEPA: the encoder (from phase 1), a target encoder that is its EMA (initialised as a
   copy, no gradients) and the FiLM-conditioned predictor; loss 2 - 2 cos(pred, layer_norm(target))
   per patch; tau rises linearly from tau_start to tau_end.
Both phases (loop.py, step.py): AdamW, lr = base_lr * batch / 256 with linear warm-up and cosine
decay, gradient clipping, mixed precision on GPUs, gradient accumulation, DDP under torchrun. Every
`checkpoint_every` steps and at the end of a phase, rank 0 writes the servable bundle
(stemserver.checkpoint) and, beside it, the training state that makes `--resume` continue exactly
where the run stopped (state.py). See docs/training.md.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from stemserver.device import set_threads
from stemserver.errors import ConfigError
from stemserver.features import FrontEndConfig
from stemserver.model import StemJEPA
from stemserver.text import LabelEmbedder, TextBackend
from stemserver_training.config import PHASES, TrainConfig
from stemserver_training.data import example_seed, measure_normalisation, prepare_data, sampler_config, training_split
from stemserver_training.distributed import Distributed, init_distributed, shutdown
from stemserver_training.labels import LabelTable, build_label_embedder, dataset_labels
from stemserver_training.loop import PhaseSummary, Run
from stemserver_training.metrics import say
from stemserver_training.signals import stop_on_signals
from stemserver_training.state import (
    Checkpoints,
    bundle_of,
    latest_checkpoint,
    model_from_bundle,
    read_state,
    seed_everything,
    warn_config_changes,
)


@dataclass
class TrainResult:
    out: Path
    model_path: Path  # the bundle to serve: the last phase's final checkpoint
    model: StemJEPA  # the trained model itself (identical on every rank)
    labels: LabelEmbedder
    phases: list[PhaseSummary]
    interrupted: bool = False


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
    train_data = training_split(config, cache)
    sampler = sampler_config(config)
    labels_of_data = dataset_labels(cache)
    state = None
    if latest is not None:  # resume: the bundle holds the weights, normalisation and label cache
        model, labels = model_from_bundle(bundle_of(latest), config, device)
        state = read_state(latest)
        say(ddp, f"resuming from {latest} ({state['phase']} step {state['step']})")
        warn_config_changes(ddp, state["config"], config)
    elif "contrastive" not in config.phases and config.jepa.init == "contrastive":
        model, labels = model_from_bundle(config.jepa.init_checkpoint, config, device)
    else:
        labels = build_label_embedder(config, labels_of_data, text_backend)
        front_end = FrontEndConfig(sample_rate=cache.sample_rate)
        if config.data.norm_chunks:
            front_end = measure_normalisation(train_data, sampler, front_end, config.data.norm_chunks,
                                              example_seed(config, "contrastive"))
            say(ddp, f"log-mel statistics over {config.data.norm_chunks} chunks: mean {front_end.mean:.3f}, "
                     f"std {front_end.std:.3f}")
        torch.manual_seed(config.seed)
        model = StemJEPA(config.model_config(text_dim=labels.dim, front_end=front_end)).to(device)
    if cache.sample_rate != model.config.front_end.sample_rate:
        raise ConfigError(f"data.cache holds {cache.sample_rate} Hz audio but the model expects "
                          f"{model.config.front_end.sample_rate} Hz")
    table = LabelTable(labels, labels_of_data, device, ddp)  # every label the sampler can draw, embedded

    run = Run(config, ddp, device, model, table, train_data, sampler,
              Checkpoints(config, ddp, model, labels, train_data))
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
