"""Settings: documented defaults, the YAML file, validation that names the bad key, flags on top."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stemserver.config import Settings, load_settings, parse_settings, settings_to_yaml
from stemserver.errors import ConfigError


def test_defaults_without_any_file(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("STEMSERVER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings() == Settings()


def test_a_file_overrides_defaults_and_flags_override_the_file(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("device: cpu\nthreads: 3\ntext:\n  backend: none\n  clap_checkpoint: ~/clap.pt\n")
    settings = load_settings(path)
    assert (settings.device, settings.threads, settings.text.backend) == ("cpu", 3, "none")
    assert settings.text.clap_checkpoint == Path("~/clap.pt").expanduser()
    overridden = settings.override(threads=1, device=None)
    assert (overridden.device, overridden.threads) == ("cpu", 1)


def test_the_environment_variable_points_at_the_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "elsewhere.yaml"
    path.write_text("max_audio_seconds: 60\n")
    monkeypatch.setenv("STEMSERVER_CONFIG", str(path))
    assert load_settings().max_audio_seconds == 60.0
    monkeypatch.setenv("STEMSERVER_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match="STEMSERVER_CONFIG"):
        load_settings()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"devcie": "cpu"}, "unknown key 'devcie' \\(did you mean 'device'\\?\\)"),
        ({"text": {"backnd": "none"}}, "unknown key 'text.backnd' \\(did you mean 'text.backend'\\?\\)"),
        ({"threads": 0}, "threads: must be at least 1"),
        ({"threads": "two"}, "threads: expected an integer"),
        ({"threads": True}, "threads: expected an integer"),
        ({"max_audio_seconds": None}, "max_audio_seconds: a value is required"),
        ({"text": {"backend": "gpt"}}, "text.backend: must be one of auto, none"),
        ({"text": "minilm"}, "text: expected a mapping"),
        (["device", "cpu"], "expected a mapping"),
    ],
)
def test_invalid_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(data)


def test_broken_yaml_names_the_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("device: [cpu\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_settings(path)


def test_the_printed_config_documents_every_key_and_reads_back_unchanged(tmp_path: Path):
    settings = Settings(device="cpu", threads=2, checkpoint=tmp_path / "m.safetensors")
    text = settings_to_yaml(settings)
    assert parse_settings(yaml.safe_load(text)) == settings
    keys = [line.split(":")[0].strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) == len(keys) - 1  # every key but the 'text:' section header has its comment
