"""What a run reports: metrics.csv (and TensorBoard when installed), the progress bar and its
messages on stderr. The columns are described in docs/training.md, "Logs"."""

from __future__ import annotations

import contextlib
import csv
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from stemserver.files import atomic_path
from stemserver_training.config import PHASES, TrainConfig
from stemserver_training.distributed import Distributed, all_reduce_mean

METRICS_FILE = "metrics.csv"
METRICS = ("phase", "step", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s",
           "temperature", "accuracy", "tau", "target_std", "shift_loss", "shift_accuracy")


class MetricsLogger:
    """Accumulates the figures of each step on the device and, every `log_every` steps, averages
    them over the interval and over ranks; rank 0 shows them on the progress bar and appends them
    to metrics.csv (and TensorBoard when installed)."""

    def __init__(self, config: TrainConfig, ddp: Distributed, phase: str, steps: int, start: int, last_loss: float):
        self.config, self.ddp, self.phase = config, ddp, phase
        self.batch_size = config.optim.batch_size
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

    def step(self, step: int, figures: dict[str, torch.Tensor], lr: float, grad_norm: torch.Tensor,
             tau: float | None, force: bool) -> None:
        """A step's figures (`step` steps done); every `log_every` steps, or when `force`d, a row."""
        for name, value in {**figures, "grad_norm": grad_norm}.items():
            self._sums[name] = self._sums.get(name, 0) + value.detach().float()
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
    """A message on rank 0's stderr."""
    if ddp.is_main:
        print(f"train: {message}", file=sys.stderr, flush=True)
