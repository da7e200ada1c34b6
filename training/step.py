"""One optimiser step, as the trainer runs it and benchmarks/train_step.py times it.

A step: the log-mel front end of each micro-batch's context and target audio, forward under
autocast, backward (loss scaled for fp16, gradients all-reduced under DDP with the last
micro-batch only), gradient clipping, AdamW, and in phase 2 the EMA update of the target encoder.

Before the update the step checks its loss (and, without a GradScaler, which skips such steps
itself, the gradient norm): a NaN or Inf would turn every weight into NaN, so such a step changes
nothing and says so (`StepResult.finite`), and the caller stops with the weights intact. The check
costs one device synchronisation per step, as a GradScaler's does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stemserver.errors import ConfigError
from stemserver.model import StemJEPA
from stemserver_training.config import OptimConfig
from stemserver_training.distributed import Distributed, any_rank
from stemserver_training.ema import ema_update
from stemserver_training.optim import build_optimizer

# One micro-batch on the device: context audio (B, samples), target audio (B, samples) and, in
# phase 2, the text embeddings of the targets' labels (B, text_dim).
MicroBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


@dataclass
class Stepper:
    """What a step needs, built once per phase by `build_step`."""

    model: StemJEPA
    objective: nn.Module  # the objective whose parameters are optimised
    forward: nn.Module  # the objective as it runs: compiled and/or wrapped in DDP
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None  # autocast's; None is full float32
    accumulation: int  # micro-batches per step
    grad_clip: float  # 0: off
    ddp: Distributed
    device: torch.device


@dataclass
class StepResult:
    figures: dict[str, torch.Tensor]  # the loss and the objective's figures, means over the micro-batches
    grad_norm: torch.Tensor  # before clipping
    finite: bool  # False: the loss (or the gradient) was NaN or Inf on some rank, and nothing was updated


def build_step(model: StemJEPA, objective: nn.Module, optim: OptimConfig, lr: float, ddp: Distributed,
               device: torch.device, precision: str = "auto", compile: bool = False) -> Stepper:
    """AdamW over `objective`'s parameters, the precision's autocast and GradScaler, the objective
    compiled and wrapped in DDP as asked."""
    optimizer = build_optimizer(objective.parameters(), lr, optim.weight_decay, (optim.beta1, optim.beta2),
                                fused=device.type == "cuda")
    dtype = autocast_dtype(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    forward = torch.compile(objective) if compile else objective
    if ddp.enabled:
        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    return Stepper(model, objective, forward, optimizer, scaler, dtype, optim.accumulation, optim.grad_clip, ddp,
                   device)


def train_step(stepper: Stepper, micro_batches: Iterator[MicroBatch], lr: float,
               tau: float | None = None) -> StepResult:
    """One optimiser step at learning rate `lr` over the next `stepper.accumulation` micro-batches;
    with `tau`, the EMA update of the target encoder after it."""
    s = stepper
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    sums: dict[str, torch.Tensor] = {}
    for micro in range(s.accumulation):
        context, target, text = next(micro_batches)
        context, target = s.model.front_end(context), s.model.front_end(target)  # fp32 log-mel
        if isinstance(s.forward, DistributedDataParallel):  # all-reduce the gradients with the last one only
            s.forward.require_backward_grad_sync = micro == s.accumulation - 1
        with autocast(s.device, s.dtype):
            loss, figures = s.forward(context, target, text)
        s.scaler.scale(loss / s.accumulation).backward()
        for name, value in {"loss": loss, **figures}.items():
            sums[name] = sums.get(name, 0) + value.detach().float() / s.accumulation
    s.scaler.unscale_(s.optimizer)
    grad_norm = nn.utils.clip_grad_norm_(s.objective.parameters(), s.grad_clip or math.inf)
    healthy = torch.isfinite(sums["loss"])
    if not s.scaler.is_enabled():  # with a GradScaler an overflowing gradient is routine: it skips the step
        healthy &= torch.isfinite(grad_norm)
    if any_rank(not bool(healthy), s.ddp, s.device):
        s.optimizer.zero_grad(set_to_none=True)
        return StepResult(sums, grad_norm, finite=False)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.optimizer.zero_grad(set_to_none=True)
    if tau is not None:
        ema_update(s.model.target_encoder, s.model.encoder, tau)
    return StepResult(sums, grad_norm, finite=True)


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
