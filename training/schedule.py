"""The learning rate at each step: linear warm-up, then cosine annealing (I-JEPA, Stem-JEPA).

A pure function of the step, so resuming needs nothing but the step to continue the schedule.
"""

from __future__ import annotations

import math


def learning_rate(step: int, peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0) -> float:
    """lr of optimiser step `step` (0-based).

    Warm-up: rises linearly to `peak_lr`, reaching it at step `warmup_steps` (step 0 already trains,
    at peak_lr / warmup_steps). Then half a cosine from `peak_lr` down to `final_lr` at the last step.
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - 1 - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return final_lr + 0.5 * (peak_lr - final_lr) * (1 + math.cos(math.pi * progress))
