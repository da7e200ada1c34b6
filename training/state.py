"""Checkpoint files and everything `--resume` needs to continue a run exactly.

Every `runtime.checkpoint_every` steps, at a stop and at the end of a phase, rank 0 writes the
servable bundle (stemserver.checkpoint) and beside it the training state: phase, step, the
optimizer, the GradScaler, the contrastive temperature and every random generator. The lr
schedule and the EMA rate are functions of the step, and the sampler needs only the step, so a
resumed run is the uninterrupted one, bit for bit (docs/training.md, "Resume").
"""

from __future__ import annotations

import datetime
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import TextSettings
from stemserver.errors import ConfigError
from stemserver.files import atomic_path
from stemserver.model import StemJEPA
from stemserver.text import LabelEmbedder
from stemserver_training.cache import PreparedDataset
from stemserver_training.config import PHASES, TrainConfig
from stemserver_training.distributed import Distributed, barrier
from stemserver_training.metrics import say
from stemserver_training.step import Stepper

CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^(contrastive|jepa)-(\d+)\.state\.pt$")
_STATE, _BUNDLE = ".state.pt", ".safetensors"


def checkpoint_path(out: Path, phase: str, step: int, suffix: str = _BUNDLE) -> Path:
    """`out/checkpoints/PHASE-STEP.safetensors`, the bundle after `step` steps (or its `.state.pt`)."""
    return out / CHECKPOINT_DIR / f"{phase}-{step:07d}{suffix}"


def bundle_of(state_path: Path) -> Path:
    """The bundle written beside a training-state file."""
    return state_path.with_name(state_path.name.removesuffix(_STATE) + _BUNDLE)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest training-state file in `out` whose bundle exists (phase order, then step)."""
    found = []
    for path in (out / CHECKPOINT_DIR).glob(f"*{_STATE}"):
        match = _CHECKPOINT_NAME.match(path.name)
        if match and bundle_of(path).is_file():
            found.append(((PHASES.index(match[1]), int(match[2])), path))
    return max(found)[1] if found else None


def prune_checkpoints(out: Path, phase: str, keep: int) -> None:
    """Delete all but the `keep` newest step checkpoints of `phase`."""
    steps = sorted(int(m[2]) for p in (out / CHECKPOINT_DIR).glob(f"{phase}-*{_STATE}")
                   if (m := _CHECKPOINT_NAME.match(p.name)))
    for step in steps[:-keep]:
        for suffix in (_STATE, _BUNDLE):
            checkpoint_path(out, phase, step, suffix).unlink(missing_ok=True)


@dataclass
class Checkpoints:
    """Writes a run's bundles and training states (rank 0 writes, every rank waits)."""

    config: TrainConfig
    ddp: Distributed
    model: StemJEPA
    labels: LabelEmbedder
    data: PreparedDataset

    def bundle(self, phase: str, step: int, steps: int, loss: float) -> Checkpoint:
        """The servable snapshot. A phase-1 model has one encoder: its target encoder (which the
        server embeds library stems with) is written as a copy of it."""
        if phase == "contrastive":
            self.model.target_encoder.load_state_dict(self.model.encoder.state_dict())
        info = {"phase": phase, "step": step, "steps": steps, "loss": loss,
                "samples": step * self.config.optim.batch_size, "world_size": self.ddp.world_size,
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__, "config": self.config.to_dict(),
                "data": {"cache": str(self.data.cache_dir), "split": self.config.data.split,
                         "tracks": len(self.data.tracks), "stems": sum(len(t.stems) for t in self.data.tracks)}}
        return Checkpoint.from_model(self.model, self.labels, info)

    def save(self, phase: str, step: int, steps: int, stepper: Stepper, loss: float) -> Path:
        """The bundle after `step` steps, then the training state beside it, then prune old ones;
        returns the bundle's path."""
        path = checkpoint_path(self.config.out, phase, step)
        if self.ddp.is_main:
            self.bundle(phase, step, steps, loss).save(path)
            state = {"phase": phase, "step": step, "loss": loss, "optimizer": stepper.optimizer.state_dict(),
                     "scaler": stepper.scaler.state_dict(), "rng": rng_state(), "config": self.config.to_dict(),
                     "info_nce": stepper.objective.loss.state_dict() if phase == "contrastive" else None}
            with atomic_path(checkpoint_path(self.config.out, phase, step, _STATE)) as tmp:
                torch.save(state, tmp)
            prune_checkpoints(self.config.out, phase, self.config.runtime.keep_checkpoints)
        barrier(self.ddp)
        return path

    def save_final(self, phase: str, steps: int, loss: float) -> Path:
        """`out/PHASE.safetensors`, the bundle of a completed phase."""
        path = self.config.out / f"{phase}{_BUNDLE}"
        if self.ddp.is_main:
            self.bundle(phase, steps, steps, loss).save(path)
        barrier(self.ddp)
        return path


def read_state(path: Path) -> dict:
    """A training-state file (weights_only: loading it cannot run code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def restore(state: dict, stepper: Stepper, phase: str) -> None:
    """Put the optimizer, the GradScaler, the temperature and the generators back as they were."""
    stepper.optimizer.load_state_dict(state["optimizer"])
    stepper.scaler.load_state_dict(state["scaler"])
    if phase == "contrastive":
        stepper.objective.loss.load_state_dict(state["info_nce"])
    set_rng_state(state["rng"])


def model_from_bundle(path: Path, config: TrainConfig, device: torch.device) -> tuple[StemJEPA, LabelEmbedder]:
    """A model and its label cache from a checkpoint bundle (to resume, or to start phase 2 from a
    phase-1 run); the text backend is loaded only if the data has labels the cache lacks."""
    checkpoint = load_checkpoint(path)
    expected = config.model_config(text_dim=checkpoint.config.text_dim, front_end=checkpoint.config.front_end)
    if checkpoint.config != expected:
        raise ConfigError(f"{path} is a different model ({checkpoint.config}) from the config's model section "
                          f"({expected})")
    if checkpoint.text_backend.get("backend") != config.text.backend:
        raise ConfigError(f"{path} was trained with the text backend {checkpoint.text_backend.get('backend')!r}, "
                          f"the config says text.backend: {config.text.backend}")
    settings = TextSettings(backend="auto", clap_checkpoint=config.text.clap_checkpoint)
    return checkpoint.build_model(device).train(), checkpoint.label_embedder(settings)


def warn_config_changes(ddp: Distributed, stored: dict, config: TrainConfig) -> None:
    """A note listing the keys in which `config` differs from the interrupted run's."""
    def flatten(d: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in d.items():
            flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return flat
    before, after = flatten(stored), flatten(config.to_dict())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        say(ddp, f"note: the config differs from the interrupted run's in {', '.join(changed)}; the result will "
                 "not be identical to an uninterrupted run")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global generator, as tensors and plain values (loadable with weights_only=True)."""
    numpy_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]]}


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
