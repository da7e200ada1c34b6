"""Training configuration: dataclasses read from YAML, with command-line overrides.

    config = load_config("tiny", overrides=["optim.batch_size=32"])  # or a path to a YAML file

Every key has a default (the papers' setting, except where a key must be given: `data.cache`).
An unknown key, a wrong type, a value out of range or two settings that contradict each other is a
ConfigError naming the key: a typo must never silently train something else for days.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stemserver.config import parse_dataclass
from stemserver.errors import ConfigError
from stemserver.model import ENCODER_PRESETS, ModelConfig

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PHASES = ("contrastive", "jepa")


def _setting(default: Any, choices: tuple[str, ...] | None = None, minimum: float | None = None,
             maximum: float | None = None) -> Any:
    metadata = {"choices": choices, "minimum": minimum, "maximum": maximum,
                "may_be_empty": isinstance(default, list) and not default}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DataConfig:
    cache: Path | None = None  # the prepared cache (cache.py); required
    layout: str | None = _setting(None, choices=("musdb18", "moisesdb", "folder"))
    root: Path | None = None  # with layout: (re)build the cache from this dataset before training
    split: str = _setting("train", choices=("train", "valid", "test"))
    split_seed: int = 0  # how build_cache draws the splits (must match an existing cache)
    valid_fraction: float = _setting(0.1, minimum=0.0, maximum=1.0)
    test_fraction: float = _setting(0.1, minimum=0.0, maximum=1.0)
    chunk_seconds: float = _setting(8.0, minimum=0.16)
    min_peak: float = _setting(0.01, minimum=0.0)
    min_rms: float = _setting(0.0, minimum=0.0)
    workers: int = _setting(4, minimum=0)  # DataLoader worker processes per rank
    norm_chunks: int = _setting(256, minimum=0)  # chunks to measure log-mel mean/std on; 0 keeps the reference's
    # labels (any level: "brass", "cello") kept out of training for the zero-shot test: a stem with one
    # in its label path is neither a target nor part of a context; the evaluation reports them apart
    holdout_labels: list[str] = _setting([])


@dataclass(frozen=True)
class ModelSection:
    size: str = _setting("base", choices=tuple(ENCODER_PRESETS))
    embed_dim: int | None = _setting(None, minimum=4)  # null: the size's
    depth: int | None = _setting(None, minimum=1)
    num_heads: int | None = _setting(None, minimum=1)
    mlp_ratio: float = _setting(4.0, minimum=0.0)
    predictor_hidden: int = _setting(1024, minimum=1)
    predictor_layers: int = _setting(6, minimum=2)
    conditioning: str = _setting("film", choices=("film", "concat"))


@dataclass(frozen=True)
class TextConfig:
    backend: str = _setting("minilm", choices=("minilm", "clap"))
    clap_checkpoint: Path | None = None  # music_audioset_epoch_15_esc_90.14.pt, for backend clap
    # a bundle whose cached label embeddings to reuse (same backend): trains on a machine without the
    # text model, as long as the bundle has every label of the data
    labels_from: Path | None = None


@dataclass(frozen=True)
class OptimConfig:
    batch_size: int = _setting(256, minimum=1)  # global: over all ranks and accumulation steps
    accumulation: int = _setting(1, minimum=1)  # micro-batches per optimiser step
    base_lr: float = _setting(1e-3, minimum=0.0)  # peak lr = base_lr * batch_size / 256
    final_lr: float = _setting(1e-6, minimum=0.0)  # lr at the last step of the cosine
    weight_decay: float = _setting(0.05, minimum=0.0)
    beta1: float = _setting(0.9, minimum=0.0, maximum=1.0)
    beta2: float = _setting(0.95, minimum=0.0, maximum=1.0)
    grad_clip: float = _setting(3.0, minimum=0.0)  # max global gradient norm; 0 turns clipping off


@dataclass(frozen=True)
class ContrastiveConfig:
    steps: int = _setting(300_000, minimum=1)
    warmup_steps: int = _setting(20_000, minimum=0)
    temperature: float = _setting(0.1, minimum=0.0)  # initial value of the learnable temperature
    min_temperature: float = _setting(0.01, minimum=0.0)
    max_temperature: float = _setting(1.0, minimum=0.0)
    symmetric: bool = True  # InfoNCE in both directions; false: context -> target only
    center: bool = True  # centre each side on its batch mean before the cosine (false: the paper's literal loss)
    pooling: str = _setting("mean", choices=("mean", "columns", "both"))  # mean: the papers'; columns: per column
    columns: int = _setting(8, minimum=1)  # with pooling columns: columns sampled per example


@dataclass(frozen=True)
class JEPAConfig:
    steps: int = _setting(300_000, minimum=1)
    warmup_steps: int = _setting(20_000, minimum=0)
    tau_start: float = _setting(0.99995, minimum=0.0, maximum=1.0)
    tau_end: float = _setting(0.99999, minimum=0.0, maximum=1.0)
    init: str = _setting("contrastive", choices=("contrastive", "scratch"))  # the encoder's starting point
    init_checkpoint: Path | None = None  # phase-1 bundle to start from when this run has no phase 1
    # Column shift consistency (docs/training.md): 0 turns it off, as in the papers.
    shift_weight: float = _setting(0.0, minimum=0.0)
    shift_max_columns: int = _setting(12, minimum=1)  # the two views of a stem differ by 1..this many columns
    shift_columns: int = _setting(8, minimum=1)  # columns of the overlap sampled per example
    shift_temperature: float = _setting(0.1, minimum=0.001)


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps (under torchrun: cuda:LOCAL_RANK)
    precision: str = _setting("auto", choices=("auto", "fp32", "bf16", "fp16"))  # auto: bf16/fp16 on CUDA
    compile: bool = False  # torch.compile the training step
    threads: int | None = _setting(None, minimum=1)  # CPU threads per process; null: torch's default
    checkpoint_every: int = _setting(5000, minimum=1)
    keep_checkpoints: int = _setting(2, minimum=1)  # step checkpoints kept per phase (older ones deleted)
    log_every: int = _setting(50, minimum=1)
    tensorboard: bool = True  # also write TensorBoard scalars when tensorboard is installed
    progress: bool = True  # tqdm progress bar


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    out: Path = Path("runs/default")
    phases: list[str] = _setting(list(PHASES), choices=PHASES)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    text: TextConfig = field(default_factory=TextConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    jepa: JEPAConfig = field(default_factory=JEPAConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def model_config(self, **values: Any) -> ModelConfig:
        """The ModelConfig this describes; `values` adds what training decides (text_dim, front_end)."""
        m = self.model
        embed_dim, depth, num_heads = ENCODER_PRESETS[m.size]
        return ModelConfig(embed_dim=m.embed_dim or embed_dim, depth=m.depth or depth,
                           num_heads=m.num_heads or num_heads, mlp_ratio=m.mlp_ratio,
                           predictor_hidden=m.predictor_hidden, predictor_layers=m.predictor_layers,
                           conditioning=m.conditioning, **values)

    def to_dict(self) -> dict:
        """Plain YAML/JSON values (paths as strings); `parse_config` reads it back unchanged."""
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return str(value) if isinstance(value, Path) else value
        return plain(dataclasses.asdict(self))


def shipped_configs() -> dict[str, Traversable]:
    """The configs that come with the package (configs/*.yaml), by name: demo, paper, tiny."""
    folder = importlib.resources.files(__package__) / "configs"
    return {entry.name.removesuffix(".yaml"): entry for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def config_file(name: str | Path) -> Path | Traversable:
    """`name` itself when it is a file, else the shipped config it names (`demo` or `demo.yaml`),
    else `name` (for the error of reading it)."""
    path = Path(name)
    if path.is_file() or path.parent != Path("."):
        return path
    return shipped_configs().get(path.name.removesuffix(".yaml"), path)


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (a file, or the name of a shipped one) and apply `key.sub=value`
    overrides (values parsed as YAML)."""
    path = config_file(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such training config; give a YAML file or the name of a shipped one "
                          f"({', '.join(sorted(shipped_configs()))})") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the training config: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    for override in overrides:
        apply_override(data, override)
    return parse_config(data, source=str(path))


def apply_override(data: dict, override: str) -> None:
    """Set `a.b.c=value` in the nested dict `data` (value parsed as YAML: 3, 1e-4, true, [a, b])."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r}: expected KEY=VALUE, e.g. optim.batch_size=64")
    *sections, name = key.strip().split(".")
    node = data
    for i, section in enumerate(sections):
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(sections[: i + 1])} is not a section")
    try:
        node[name] = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {override!r}: the value is not valid YAML: {e}") from e


def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Check and convert a nested dict (as read from YAML) into a TrainConfig."""
    config = parse_dataclass(TrainConfig, data, source)
    _check_consistency(config, source)
    return config


def _check_consistency(config: TrainConfig, source: str) -> None:
    """Rules between keys; each error names the key to change."""
    def fail(key: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {key}: {message}")

    data, optim, jepa, contrastive = config.data, config.optim, config.jepa, config.contrastive
    if data.cache is None:
        fail("data.cache", "required: the folder of the prepared cache (built from data.layout + data.root, "
                           "or beforehand with `stemserver prepare`)")
    if (data.layout is None) != (data.root is None):
        fail("data.layout" if data.layout is None else "data.root", "data.layout and data.root go together")
    if data.valid_fraction + data.test_fraction >= 1:
        fail("data.valid_fraction", "valid_fraction + test_fraction must be below 1")
    if len(set(config.phases)) != len(config.phases) or config.phases != sorted(config.phases, key=PHASES.index):
        fail("phases", f"each phase at most once, in order: {list(PHASES)}")
    if optim.batch_size % optim.accumulation:
        fail("optim.batch_size", f"{optim.batch_size} is not divisible by optim.accumulation ({optim.accumulation})")
    if not 0 < contrastive.min_temperature <= contrastive.temperature <= contrastive.max_temperature:
        fail("contrastive.temperature", "need 0 < min_temperature <= temperature <= max_temperature")
    if "jepa" in config.phases and jepa.init == "contrastive":
        if "contrastive" in config.phases and jepa.init_checkpoint is not None:
            fail("jepa.init_checkpoint", "this run trains phase 1 itself; remove init_checkpoint")
        if "contrastive" not in config.phases and jepa.init_checkpoint is None:
            fail("jepa.init_checkpoint", "required when phases has no contrastive phase and jepa.init is "
                                         "contrastive: the phase-1 checkpoint to start from (or jepa.init: scratch)")
    if "contrastive" in config.phases and "jepa" in config.phases and jepa.init == "scratch":
        fail("jepa.init", "scratch would discard this run's phase 1; train phases: [jepa] for the ablation")
    if jepa.init == "scratch" and jepa.init_checkpoint is not None:
        fail("jepa.init_checkpoint", "jepa.init is scratch; remove init_checkpoint or set jepa.init: contrastive")
    if config.text.backend == "clap" and config.text.clap_checkpoint is None:
        fail("text.clap_checkpoint", "required with text.backend clap (music_audioset_epoch_15_esc_90.14.pt)")
    try:
        config.model_config()
    except ValueError as e:
        fail("model", str(e))
