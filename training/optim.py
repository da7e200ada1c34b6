"""AdamW as in I-JEPA / Stem-JEPA: betas (0.9, 0.95), weight decay on weight matrices only.

Weight decay pulls weights towards zero. That regularises matrices (linear and convolution
kernels) but only hurts scale-like parameters: LayerNorm gains and biases (1-d) and the contrastive
temperature (0-d), whose "right" value is not small. The rule is by shape: decay iff ndim >= 2.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

REFERENCE_BATCH = 256  # the batch the base learning rates are quoted for


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule: lr = base_lr * batch / 256 (Goyal et al.; the papers' setting)."""
    return base_lr * batch_size / REFERENCE_BATCH


def parameter_groups(parameters: Iterable[nn.Parameter], weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weight matrices, and undecayed norms, biases and scalars."""
    decay, no_decay = [], []
    for parameter in parameters:
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(parameters: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.05,
                    betas: tuple[float, float] = (0.9, 0.95), fused: bool = False) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; `fused` uses the single-kernel CUDA implementation."""
    return torch.optim.AdamW(parameter_groups(parameters, weight_decay), lr=lr, betas=betas, fused=fused)
