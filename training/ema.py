"""The target encoder as an exponential moving average of the context encoder (BYOL, I-JEPA).

After each optimiser step, every target weight moves a fraction 1 - tau towards its context twin:
    target <- tau * target + (1 - tau) * context
and tau rises linearly from tau_start to tau_end over the phase, so the target follows the
context encoder closely early on and freezes towards the end.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_rate(step: int, total_steps: int, tau_start: float, tau_end: float) -> float:
    """tau at `step` (0-based) of `total_steps`: tau_start at step 0, tau_end at the last step."""
    if total_steps <= 1:
        return tau_end
    return tau_start + (tau_end - tau_start) * min(step, total_steps - 1) / (total_steps - 1)


@torch.no_grad()
def ema_update(target: nn.Module, context: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * context, parameter by parameter (same architecture)."""
    target_params, context_params = list(target.parameters()), list(context.parameters())
    if len(target_params) != len(context_params):
        raise ValueError(f"the target has {len(target_params)} parameters, the context encoder {len(context_params)}")
    for t, c in zip(target_params, context_params):
        t.mul_(tau).add_(c.detach(), alpha=1.0 - tau)
