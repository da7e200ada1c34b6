"""The training objectives.

Phase 1, InfoNCE (SimCLR/CLIP): the patch-averaged embeddings of a context mix and of its target
stem are a positive pair, every other target of the batch a negative. Similarity is cosine over a
learnable temperature, kept as its log (so it stays positive and its steps are relative) and
clamped to a range (so the logits can neither vanish nor explode). Optionally each side is first
centred on its batch mean: see InfoNCE.

Phase 2, JEPA (Stem-JEPA eq. 3 with I-JEPA's target normalisation): per patch,
2 - 2 cos(prediction, layer_norm(target)), averaged over patches and batch. 2 - 2 cos is the squared
distance between the two vectors once both are scaled to unit length.

Column shift consistency (ours, optional in phase 2): the same stem encoded from two windows a few
columns apart must give the same column for the same moment. Without it every pair the papers
train on is aligned to the window, and the encoder's columns learn where in the window they sit:
with the first default model a stem's own 8 s window, cut at a random moment, found its place in
the stored stem within one column 2 times in 71 (the peak sat on the stored 8 s chunk boundaries).
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


def column_shift_loss(first: torch.Tensor, second: torch.Tensor, shift: int, columns: int,
                      temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE between the columns of two encodings of the same stems, the second cut `shift`
    columns later than the first: (B, rows, C, d) each, so that second[..., i, :] and
    first[..., i + shift, :] are the same moment encoded at two positions of the window.

    `columns` moments of the overlap are drawn per batch; each column (its rows' patches
    layer-normalised and concatenated, as the offset search compares them) must pick its own
    moment among every drawn column of the batch, the same stem's other moments included. Returns
    the loss and the share of columns that picked their own moment."""
    overlap = first.shape[2] - 2 * shift
    if overlap < 1:
        raise ValueError(f"a shift of {shift} columns leaves no overlap in {first.shape[2]} columns")
    picked = torch.randperm(overlap, device=first.device)[:columns]
    a = F.layer_norm(first[:, :, picked + shift].float(), first.shape[-1:]).permute(0, 2, 1, 3).flatten(2).flatten(0, 1)
    b = F.layer_norm(second[:, :, picked].float(), second.shape[-1:]).permute(0, 2, 1, 3).flatten(2).flatten(0, 1)
    a, b = a - a.mean(dim=0), b - b.mean(dim=0)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(logits), device=logits.device)
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return loss, (logits.argmax(dim=1) == labels).float().mean().detach()


def jepa_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over patches of 2 - 2 cos(prediction, layer_norm(target)); (..., d) each, in float32.

    The target is standardised over its features without affine parameters (I-JEPA), which
    removes its mean direction before the cosine; the prediction is compared as it is.
    """
    target = F.layer_norm(target.float(), target.shape[-1:])
    return (2 - 2 * F.cosine_similarity(prediction.float(), target, dim=-1)).mean()
