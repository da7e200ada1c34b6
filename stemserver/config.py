"""Settings: documented defaults, an optional YAML file over them, command-line flags over that.

The file is found at `--config PATH`, else `$STEMSERVER_CONFIG`, else
`~/.config/stemserver/config.yaml` when it exists. Every key is optional. `stemserver config`
prints the effective settings as YAML with each key's documentation, which is also a valid file
to start from. Unknown keys and wrong types are errors that name the key: a typo must not be
silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stemserver.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("~/.config/stemserver/config.yaml")


def _doc(text: str, choices: tuple[str, ...] | None = None, minimum: float | None = None) -> dict:
    return {"doc": text, "choices": choices, "minimum": minimum}


@dataclass(frozen=True)
class TextSettings:
    backend: str = field(
        default="auto",
        metadata=_doc(
            "How to embed instrument names the checkpoint has not cached: auto (minilm or clap, "
            "whichever the checkpoint was trained with), or none (cached names only)",
            choices=("auto", "none"),
        ),
    )
    clap_checkpoint: Path | None = field(
        default=None,
        metadata=_doc("LAION-CLAP music checkpoint (music_audioset_epoch_15_esc_90.14.pt), for clap-trained models"),
    )


@dataclass(frozen=True)
class Settings:
    device: str = field(default="auto", metadata=_doc("auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"))
    threads: int | None = field(
        default=None, metadata=_doc("CPU threads torch may use; null means one per core", minimum=1)
    )
    checkpoint: Path | None = field(
        default=None,
        metadata=_doc("Model bundle (.safetensors); null means the bundled default model "
                      "(stemserver/assets/default-model.safetensors in the package, or $STEMSERVER_DEFAULT_MODEL)"),
    )
    library: Path | None = field(
        default=None,
        metadata=_doc("Sample library folder (index and embeddings); null means "
                      "$XDG_DATA_HOME/stemserver/library (default ~/.local/share/stemserver/library), where serve "
                      "indexes the demo library on its first start"),
    )
    max_audio_seconds: float = field(
        default=1800.0, metadata=_doc("Longest audio file accepted, in seconds", minimum=1)
    )
    # The three weights were chosen together on the popular corpus's valid split (docs/model-card.md).
    instrument_weight: float = field(
        default=0.5,
        metadata=_doc("How much the instrument asked for decides the ranking, when the model has an instrument head: "
                      "a stem's score is its compatibility cosine plus this times the log-probability that it is "
                      "the instrument asked (the head's classifier over the model's labels; 0: compatibility "
                      "alone)", minimum=0),
    )
    key_weight: float = field(
        default=0.5,
        metadata=_doc("Added to the score of a stem in the mix's key or its relative (the same scale), when both "
                      "keys are known (0: key does not rank)", minimum=0),
    )
    tempo_weight: float = field(
        default=0.5,
        metadata=_doc("Added to the score of a stem within 4 % of the mix's tempo, or at double or half time, when "
                      "both tempi are known (0: tempo does not rank)", minimum=0),
    )
    text: TextSettings = field(default_factory=TextSettings)

    def override(self, **flags: Any) -> Settings:
        """Return a copy with the command-line values that were given (None means not given)."""
        return dataclasses.replace(self, **{k: v for k, v in flags.items() if v is not None})


def config_path(explicit: str | Path | None) -> Path | None:
    """The config file to read, or None when there is none to read."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    if os.environ.get("STEMSERVER_CONFIG"):
        path = Path(os.environ["STEMSERVER_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"STEMSERVER_CONFIG points to {path}, which does not exist")
        return path
    path = DEFAULT_CONFIG_PATH.expanduser()
    return path if path.is_file() else None


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overlaid with the config file if there is one."""
    found = config_path(path)
    if found is None:
        return Settings()
    try:
        data = yaml.safe_load(found.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{found}: cannot read the config file: {e}") from e
    return parse_settings(data, source=str(found))


def parse_settings(data: Any, source: str = "config") -> Settings:
    return parse_dataclass(Settings, data, source)


def parse_dataclass(cls: type, data: Any, source: str, prefix: str = "") -> Any:
    """Build the (nested, frozen) dataclass `cls` from a mapping read from YAML, checking every key.

    Field types (str, int, float, bool, Path, lists of them, None-able) are enforced; a field's
    metadata may give `choices`, `minimum` and `maximum`. Errors name the file and the dotted key.
    Shared by the product's settings and the trainer's configs."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the file'}: expected a mapping of keys to values, "
                          f"got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")
        values[key] = _parse_value(hints[key], fields[key].metadata, value, source, f"{prefix}{key}")
    return cls(**values)


_TYPE_NAMES = {Path: "a file path", int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _parse_value(hint: Any, meta: typing.Mapping, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return parse_dataclass(hint, value, source, f"{key}.")
    if typing.get_origin(hint) is list:
        if not isinstance(value, list) or not (value or meta.get("may_be_empty")):
            raise ConfigError(f"{source}: {key}: expected a {'' if meta.get('may_be_empty') else 'non-empty '}list, "
                              f"got {value!r}")
        (item,) = typing.get_args(hint)
        return [_parse_value(item, meta, v, source, key) for v in value]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{source}: {key}: a value is required")
    kind = next(t for t in options if t is not type(None))
    if kind is Path and isinstance(value, str):
        value = Path(value).expanduser()
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif kind is float and isinstance(value, str) and _is_number(value):  # YAML 1.1 reads 1e-3 as a string
        value = float(value)
    elif not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{source}: {key}: expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{source}: {key}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(f"{source}: {key}: must be at least {meta['minimum']}, got {value!r}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"{source}: {key}: must be at most {meta['maximum']}, got {value!r}")
    return value


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def settings_to_yaml(settings: Settings) -> str:
    """The settings as a commented YAML file that `load_settings` reads back unchanged."""
    return "\n".join(_yaml_lines(settings, indent="")) + "\n"


def _yaml_lines(section: Any, indent: str) -> list[str]:
    lines = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            lines += [f"{indent}{f.name}:", *_yaml_lines(value, indent + "  ")]
            continue
        if f.metadata.get("doc"):
            lines.append(f"{indent}# {f.metadata['doc']}")
        plain = str(value) if isinstance(value, Path) else value
        lines.append(f"{indent}{yaml.safe_dump({f.name: plain}, default_flow_style=True)[1:-2]}")
    return lines
