"""One phase of training, step after step: each step's learning rate and EMA rate, the step itself
(step.py), the log, the checkpoints, and the two ways a phase ends early: a stop signal (a
checkpoint, then the run returns as interrupted) and a non-finite loss (a checkpoint of the weights
before that step, then NonFiniteLossError)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stemserver.errors import StemserverError
from stemserver.model import StemJEPA
from stemserver_training.cache import PreparedDataset
from stemserver_training.config import TrainConfig
from stemserver_training.data import batch_loader
from stemserver_training.distributed import Distributed, any_rank
from stemserver_training.ema import ema_rate
from stemserver_training.labels import LabelTable
from stemserver_training.metrics import MetricsLogger
from stemserver_training.objectives import build_objective
from stemserver_training.optim import scaled_lr
from stemserver_training.sampler import SamplerConfig
from stemserver_training.schedule import learning_rate
from stemserver_training.state import Checkpoints, checkpoint_path, restore
from stemserver_training.step import MicroBatch, StepResult, build_step, train_step


class NonFiniteLossError(StemserverError):
    """The loss or the gradient became NaN or Inf; the weights before that step were saved."""


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
class Run:
    """What both phases share: the model, its label table, the data and where to write."""

    config: TrainConfig
    ddp: Distributed
    device: torch.device
    model: StemJEPA
    labels: LabelTable
    data: PreparedDataset
    sampler: SamplerConfig
    checkpoints: Checkpoints

    def phase(self, phase: str, state: dict | None, stop: threading.Event) -> PhaseSummary:
        """Train `phase` from the start or from the training `state` of its checkpoint, until its
        last step or until `stop` is set (then it checkpoints and returns with `stop` still set)."""
        config, ddp, device, model = self.config, self.ddp, self.device, self.model
        settings = config.contrastive if phase == "contrastive" else config.jepa
        peak_lr = scaled_lr(config.optim.base_lr, config.optim.batch_size)
        start = state["step"] if state is not None else 0
        if phase == "jepa" and state is None:  # I-JEPA: the target encoder starts as a copy of the context encoder
            model.target_encoder.load_state_dict(model.encoder.state_dict())
        objective = build_objective(phase, model, ddp, device, config.contrastive, config.jepa)
        stepper = build_step(model, objective, config.optim, peak_lr, ddp, device, config.runtime.precision,
                             config.runtime.compile)
        if state is not None:
            restore(state, stepper, phase)

        micro_batches = self.micro_batches(phase, settings.steps, start)
        logger = MetricsLogger(config, ddp, phase, settings.steps, start, state["loss"] if state else math.nan)
        checkpoint = checkpoint_path(config.out, phase, start)
        t0 = time.perf_counter()
        try:
            for step in range(start, settings.steps):
                lr = learning_rate(step, peak_lr, settings.warmup_steps, settings.steps, config.optim.final_lr)
                tau = ema_rate(step, settings.steps, settings.tau_start, settings.tau_end) if phase == "jepa" else None
                result = train_step(stepper, micro_batches, lr, tau)
                if not result.finite:  # the weights are still those after `step` steps: keep them
                    saved = self.checkpoints.save(phase, step, settings.steps, stepper, logger.last_loss)
                    raise _non_finite(config, phase, step, settings.steps, lr, result, saved)
                done = step + 1
                stopping = any_rank(stop.is_set(), ddp, device)
                logger.step(done, result.figures, lr, result.grad_norm, tau,
                            force=stopping or done == settings.steps)
                if stopping or done % config.runtime.checkpoint_every == 0 or done == settings.steps:
                    checkpoint = self.checkpoints.save(phase, done, settings.steps, stepper, logger.last_loss)
                if stopping:
                    stop.set()
                    break
        finally:
            logger.close()
        seconds = time.perf_counter() - t0
        if not stop.is_set():  # the phase is complete: its final bundle
            checkpoint = self.checkpoints.save_final(phase, settings.steps, logger.last_loss)
        ran = logger.steps_run
        return PhaseSummary(phase, ran, seconds, logger.last_loss, ran * config.optim.batch_size / max(seconds, 1e-9),
                            checkpoint, logger.history)

    def micro_batches(self, phase: str, steps: int, start: int) -> Iterator[MicroBatch]:
        """The phase's micro-batches from step `start` on, on the device, with their labels'
        text embeddings in phase 2."""
        batches = iter(batch_loader(self.config, self.ddp, self.device, self.data, self.sampler, phase, steps, start))
        return ((batch.context.to(self.device, non_blocking=True), batch.target.to(self.device, non_blocking=True),
                 self.labels.lookup(batch.labels) if phase == "jepa" else None) for batch in batches)


def _non_finite(config: TrainConfig, phase: str, step: int, steps: int, lr: float, result: StepResult,
                saved: Path) -> NonFiniteLossError:
    loss, grad_norm = result.figures["loss"].item(), result.grad_norm.item()
    what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {grad_norm}"
    return NonFiniteLossError(
        f"the {phase} {what} at step {step + 1} of {steps} (lr {lr:.3g}); that step was not applied and the "
        f"weights before it are saved in {saved}. To continue from there, run the same train command with "
        f"--resume and a lower learning rate, e.g. optim.base_lr={config.optim.base_lr / 4:.3g} (now "
        f"{config.optim.base_lr:.3g}); if it stops again at the same step, check the data for NaN or Inf audio "
        f"(and, with runtime.precision fp16, try bf16 or fp32)")
