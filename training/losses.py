"""The two training objectives.

Phase 1, InfoNCE (SimCLR/CLIP): the patch-averaged embeddings of a context mix and of its target
stem are a positive pair, every other target of the batch a negative. Similarity is cosine over a
learnable temperature, kept as its log (so it stays positive and its steps are relative) and
clamped to a range (so the logits can neither vanish nor explode). Optionally each side is first
centred on its batch mean: see InfoNCE.

Phase 2, JEPA (Stem-JEPA eq. 3 with I-JEPA's target normalisation): per patch,
2 - 2 cos(prediction, layer_norm(target)), averaged over patches and batch. 2 - 2 cos is the squared
distance between the two vectors once both are scaled to unit length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCE(nn.Module):
    """Contrastive loss over a batch of (context, target) embedding pairs, (B, d) each.

    Row i of the (B, B) cosine-similarity matrix should pick column i. `symmetric` averages the
    context->target and target->context directions (CLIP); otherwise only context->target counts
    (the context picks its stem among the batch's stems, the retrieval direction).

    `center` subtracts each side's batch mean before the cosine. From a random initialisation the
    pooled embeddings of all chunks share a large common direction, with "hub" stems close to
    every mix; the quickest way down from that loss is to make every embedding the same, where
    the loss sits at ln(B) with no gradient left (observed within 5 steps, even on one fixed
    batch). Centring removes the common direction from the loss, so only what tells chunks apart
    counts, and that collapse is no longer a solution.
    """

    def __init__(self, temperature: float = 0.1, min_temperature: float = 0.01, max_temperature: float = 1.0,
                 symmetric: bool = True, center: bool = True):
        super().__init__()
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise ValueError(f"need 0 < min_temperature <= temperature <= max_temperature, got "
                             f"{min_temperature}, {temperature}, {max_temperature}")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.log_bounds = (math.log(min_temperature), math.log(max_temperature))
        self.symmetric = symmetric
        self.center = center

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.clamp(*self.log_bounds).exp()

    def logits(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, B) cosine similarities over the temperature, in float32."""
        context, target = context.float(), target.float()
        if self.center:
            context, target = context - context.mean(dim=0), target - target.mean(dim=0)
        similarity = F.normalize(context, dim=-1) @ F.normalize(target, dim=-1).T
        return similarity / self.temperature

    def forward(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.logits(context, target)
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = F.cross_entropy(logits, labels)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, labels)) / 2
        return loss


def jepa_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over patches of 2 - 2 cos(prediction, layer_norm(target)); (..., d) each, in float32.

    The target is standardised over its features without affine parameters (I-JEPA), which
    removes its mean direction before the cosine; the prediction is compared as it is.
    """
    target = F.layer_norm(target.float(), target.shape[-1:])
    return (2 - 2 * F.cosine_similarity(prediction.float(), target, dim=-1)).mean()
