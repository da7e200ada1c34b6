"""The command line, run as a user runs it: a real subprocess, real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from conftest import tone

ENV = {**os.environ, "STEMSERVER_CONFIG": ""}  # never read the developer's own config


def stemserver(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemserver", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=ENV)


def test_help_lists_every_verb_and_each_verb_has_help():
    result = stemserver("--help")
    assert result.returncode == 0
    for verb in ("doctor", "embed", "config"):
        assert verb in result.stdout
        assert stemserver(verb, "--help").returncode == 0


@pytest.mark.parametrize("argv", [
    ["query", "mix.wav", "-i", "warm pad", "-k", "3", "--server", "osc://127.0.0.1:9000", "--exclude", "/a.wav"],
    ["serve", "--osc-port", "0", "--allow-origin", "http://localhost:3000", "--queue", "4", "--json"],
    ["index", "/samples", "--hop", "2", "--follow-symlinks"],
    ["library", "remove", "/a.wav", "/b.wav"],
])
def test_a_verbs_own_parser_reads_its_arguments_as_the_whole_command_line_does(argv):
    from stemserver.cli import build_parser

    whole, alone = vars(build_parser().parse_args(argv)), vars(build_parser(argv[0]).parse_args(argv))
    assert whole == alone and whole["verb"] == argv[0]


def test_no_verb_prints_usage_and_exits_2():
    result = stemserver()
    assert result.returncode == 2 and "usage" in result.stdout


def test_unknown_flag_exits_2():
    assert stemserver("embed", "--bogus").returncode == 2


def test_version():
    from stemserver import __version__

    assert stemserver("--version").stdout.strip() == f"stemserver {__version__}"


@pytest.mark.slow
def test_doctor_json_reports_versions_and_device():
    result = stemserver("doctor", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["required"]["torch"]["version"].startswith("2.")
    assert report["device"]["selected"] == "cpu"
    assert set(report["optional"]) >= {"sentence-transformers", "laion-clap", "sounddevice"}


@pytest.mark.slow
def test_doctor_text_mentions_how_to_install_what_is_missing():
    result = stemserver("doctor")
    assert result.returncode == 0
    assert "required:" in result.stdout and "device: " in result.stdout
    for line in result.stdout.splitlines():
        if line.strip().startswith("missing"):
            assert "install" in line


@pytest.mark.slow
def test_doctor_reports_a_broken_checkpoint_without_crashing(tmp_path: Path):
    broken = tmp_path / "broken.safetensors"
    broken.write_text("garbage")
    config = tmp_path / "config.yaml"
    config.write_text(f"checkpoint: {broken}\n")
    result = stemserver("doctor", "--json", "--config", str(config))
    assert result.returncode == 0
    assert "not a readable checkpoint" in json.loads(result.stdout)["checkpoint"]["error"]


@pytest.mark.slow
def test_embed_prints_the_grid_shape_and_saves_it(tmp_path: Path, checkpoint_path: Path):
    stereo = np.stack([tone(220.0, 8.0, 44_100), tone(330.0, 8.0, 44_100)], axis=1)
    soundfile.write(tmp_path / "mix.flac", stereo, 44_100)
    result = stemserver("embed", str(tmp_path / "mix.flac"), "--checkpoint", str(checkpoint_path), "--json",
                        "--save", str(tmp_path / "grid.npy"), "--threads", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["shape"] == [5, 50, 64]
    assert (summary["source_sample_rate"], summary["source_channels"]) == (44_100, 2)
    assert summary["seconds_per_column"] == 0.16
    assert np.load(tmp_path / "grid.npy").shape == (5, 50, 64)

    human = stemserver("embed", str(tmp_path / "mix.flac"), "--checkpoint", str(checkpoint_path), "--target")
    assert human.returncode == 0
    assert "5 frequency rows x 50 columns" in human.stdout and "target encoder" in human.stdout


@pytest.mark.slow
def test_embed_errors_are_one_clear_line_and_exit_1(tmp_path: Path, checkpoint_path: Path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("hello")
    cases = [
        (["embed", str(not_audio), "--checkpoint", str(checkpoint_path)], "not an audio file"),
        (["embed", str(tmp_path / "missing.wav"), "--checkpoint", str(checkpoint_path)], "no such file"),
        (["embed", str(not_audio), "--checkpoint", str(not_audio)], "not a readable checkpoint"),
        (["embed", str(not_audio), "--checkpoint", str(checkpoint_path), "--device", "cuda:7"], "cuda"),
    ]
    for args, message in cases:
        result = stemserver(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("stemserver: error:") and message in result.stderr
        assert "Traceback" not in result.stderr


def test_config_prints_yaml_that_loads_back(tmp_path: Path):
    result = stemserver("config", "--device", "cpu", "--threads", "2")
    assert result.returncode == 0
    printed = yaml.safe_load(result.stdout)
    assert printed["device"] == "cpu" and printed["threads"] == 2
    (tmp_path / "c.yaml").write_text(result.stdout)
    again = stemserver("config", "--json", "--config", str(tmp_path / "c.yaml"))
    assert json.loads(again.stdout)["threads"] == 2


def test_a_bad_config_file_exits_1_naming_the_key(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("thread: 2\n")
    result = stemserver("doctor", "--config", str(tmp_path / "c.yaml"))
    assert result.returncode == 1 and "unknown key 'thread'" in result.stderr


@pytest.mark.slow
def test_embed_with_an_instrument_runs_the_predictor(tmp_path: Path, checkpoint_path: Path):
    soundfile.write(tmp_path / "mix.wav", tone(220.0, 3.0, 16_000), 16_000)
    result = stemserver("embed", str(tmp_path / "mix.wav"), "--checkpoint", str(checkpoint_path),
                        "--instrument", "Bass", "--json")
    assert result.returncode == 0, result.stderr
    prediction = json.loads(result.stdout)["prediction"]
    assert prediction["shape"] == [5, 18, 64] and -1.0 <= prediction["cosine_to_mix"] <= 1.0

    unknown = stemserver("embed", str(tmp_path / "mix.wav"), "--checkpoint", str(checkpoint_path),
                         "--instrument", "drumz")
    assert unknown.returncode == 1
    assert "unknown instrument label 'drumz'" in unknown.stderr and "'drums'" in unknown.stderr
