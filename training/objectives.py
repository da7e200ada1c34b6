"""The two phases' objectives. Each takes standardised log-mels (B, n_mels, frames) of the context mixes and
the target stems (and, in phase 2, the labels' text embeddings) and returns the loss and a few
detached figures for the log."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stemserver.model import StemJEPA
from stemserver_training.config import ContrastiveConfig, JEPAConfig
from stemserver_training.distributed import Distributed, gather_with_grad
from stemserver_training.losses import InfoNCE, column_shift_loss, jepa_loss


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
    encoder's view of the mix, given the instrument's text embedding.

    With `shift.shift_weight` > 0, plus that weight times the column shift consistency of the
    context encoder on the target stem (stemserver_training.losses.column_shift_loss): the stem's
    log-mel cut into two views 1..shift_max_columns columns apart (one shift per batch)."""

    def __init__(self, model: StemJEPA, shift: JEPAConfig = JEPAConfig()):
        super().__init__()
        self.encoder, self.target_encoder, self.predictor = model.encoder, model.target_encoder, model.predictor
        self.shift, self.patch = shift, model.config.patch_size

    def forward(self, context: torch.Tensor, target: torch.Tensor,
                text: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            z_bar = self.target_encoder(target)
        prediction = self.predictor(self.encoder(context), text)
        loss = jepa_loss(prediction, z_bar)
        with torch.no_grad():  # spread of the targets across the batch: near 0 means collapse
            pooled = F.layer_norm(z_bar.float(), z_bar.shape[-1:]).mean(dim=(1, 2))
            target_std = pooled.std(dim=0).mean() if len(pooled) > 1 else torch.zeros((), device=pooled.device)
        figures = {"target_std": target_std}
        if self.shift.shift_weight > 0:
            shift_loss, picked = self._shift_consistency(target)
            loss = loss + self.shift.shift_weight * shift_loss
            figures |= {"shift_loss": shift_loss.detach(), "shift_accuracy": picked}
        return loss, figures

    def _shift_consistency(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.patch
        frames = mel.shape[-1] - mel.shape[-1] % p
        columns = frames // p
        shift = int(torch.randint(1, min(self.shift.shift_max_columns, (columns - 1) // 2) + 1, ()))
        first = self.encoder(mel[..., : frames - shift * p])
        second = self.encoder(mel[..., shift * p : frames])
        return column_shift_loss(first, second, shift, self.shift.shift_columns, self.shift.shift_temperature)


def build_objective(phase: str, model: StemJEPA, ddp: Distributed, device: torch.device,
                    contrastive: ContrastiveConfig = ContrastiveConfig(), jepa: JEPAConfig = JEPAConfig()) -> nn.Module:
    """The objective of `phase` over `model`; phase 1's loss and pooling as `contrastive` sets
    them, phase 2's shift consistency as `jepa` does."""
    if phase == "jepa":
        return JEPAObjective(model, jepa)
    loss = InfoNCE(contrastive.temperature, contrastive.min_temperature, contrastive.max_temperature,
                   contrastive.symmetric, contrastive.center)
    return ContrastiveObjective(model.encoder, loss, ddp, contrastive.pooling, contrastive.columns).to(device)
