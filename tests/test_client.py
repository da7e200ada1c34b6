"""`stemserver query --server`, the client the REAPER scripts spawn on every "Find": against a real server,
without torch (and, over loopback OSC, without numpy or soundfile), honouring every option on every path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from conftest import build_library, melody
from test_server import RATE, Server

# Packages that raise on import: a client process with these first on its path proves it never imports them.
BLOCKED = ("torch", "numpy", "soundfile")


@pytest.fixture(scope="module")
def server(tmp_path_factory, identity_checkpoint: Path):
    samples = tmp_path_factory.mktemp("samples")
    for seed in range(3):
        soundfile.write(samples / f"line{seed}.wav", melody(20.0, seed), RATE)
    server = Server(identity_checkpoint, build_library(samples, tmp_path_factory.mktemp("library"),
                                                       identity_checkpoint))
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blocked")
    for name in BLOCKED:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('the client imported {name}')\n")
    return root


def run_client(*args: str, blocked: Path | None = None) -> subprocess.CompletedProcess:
    """`stemserver query ARGS` in a fresh process; with `blocked`, importing torch/numpy/soundfile fails."""
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "STEMSERVER_CONFIG": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked) if blocked else "", path]))}
    return subprocess.run([sys.executable, "-m", "stemserver", "query", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def mix_file(folder: Path, seed: int, start_s: float, seconds: float) -> Path:
    path = folder / "mix.wav"
    soundfile.write(path, melody(20.0, seed)[int(start_s * RATE) : int((start_s + seconds) * RATE)], RATE)
    return path


def test_importing_the_client_imports_neither_torch_nor_numpy(blocker: Path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))}
    code = ("import sys, stemserver.server.client, stemserver.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('stemserver.engine', 'stemserver.index', "
            "'stemserver.library', 'stemserver.server.osc', 'asyncio'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_osc_query_over_loopback_needs_no_torch_numpy_or_soundfile(server, blocker: Path, tmp_path: Path):
    mix = mix_file(tmp_path, seed=2, start_s=4.8, seconds=8.0)
    done = run_client(str(mix), "-i", "bass", "-k", "1", "--label", "line2", "--server",
                      f"osc://127.0.0.1:{server.osc[1]}", "--json", blocked=blocker)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    (match,) = result["matches"]
    assert result["type"] == "result" and Path(match["path"]).name == "line2.wav" and match["loop"] is False
    assert match["offset_s"] == pytest.approx(4.8, abs=0.02)


def test_a_websocket_query_needs_no_torch(server, tmp_path: Path):
    blocked = tmp_path / "blocked"
    (blocked / "torch").mkdir(parents=True)
    (blocked / "torch" / "__init__.py").write_text("raise ImportError('the client imported torch')\n")
    mix = mix_file(tmp_path, seed=1, start_s=3.2, seconds=8.0)
    done = run_client(str(mix), "-i", "bass", "-k", "1", "--label", "line1", "--server", server.ws, "--json",
                      blocked=blocked)
    assert done.returncode == 0, done.stderr
    (match,) = json.loads(done.stdout)["matches"]
    assert Path(match["path"]).name == "line1.wav" and match["offset_s"] == pytest.approx(3.2, abs=0.02)


def test_streamed_osc_queries_send_the_query_window(server, tmp_path: Path):
    """The streaming branch (what a remote server gets) used to leave `seconds` out: the server used 8 s."""
    mix = mix_file(tmp_path, seed=0, start_s=2.0, seconds=12.0)  # the last 10 s start 4.0 s into line0
    done = run_client(str(mix), "-i", "bass", "-k", "1", "--label", "line0", "--seconds", "10", "--send-audio",
                      "--server", f"osc://127.0.0.1:{server.osc[1]}", "--json")
    assert done.returncode == 0, done.stderr
    (match,) = json.loads(done.stdout)["matches"]
    assert Path(match["path"]).name == "line0.wav"
    assert match["offset_s"] == pytest.approx(4.0, abs=0.16)
    assert match["offset_at_end_s"] == pytest.approx(14.0, abs=0.16)


@pytest.mark.parametrize("args, message", [
    (["--seconds", "nan"], "--seconds: must be a finite number"),
    (["--seconds", "0"], "--seconds: must be a finite number greater than 0"),
    (["-k", "0"], "-k: must be at least 1"),
    (["-k", "two"], "-k: must be a whole number"),
    (["--timeout", "inf"], "--timeout: must be a finite number"),
    (["--min-duration", "-1"], "--min-duration: must be a finite number of at least 0"),
])
def test_bad_query_options_are_usage_errors(args, message, tmp_path: Path):
    done = run_client(str(tmp_path / "mix.wav"), "-i", "bass", *args, "--server", "osc://127.0.0.1:9")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_an_empty_instrument_is_a_usage_error(tmp_path: Path):
    done = run_client(str(tmp_path / "mix.wav"), "-i", " ", "--server", "osc://127.0.0.1:9")
    assert done.returncode == 2 and "--instrument/-i: must not be empty" in done.stderr, done.stderr


@pytest.mark.parametrize("url, message", [
    ("osc://127.0.0.1:notaport", "the port is not a number"),
    ("osc://127.0.0.1:70000", "the port is not a number"),
    ("osc://127.0.0.1", "use osc://HOST:PORT or ws://HOST:PORT"),
    ("http://127.0.0.1:9000", "use osc://HOST:PORT or ws://HOST:PORT"),
])
def test_a_bad_server_address_is_explained(url, message, tmp_path: Path):
    done = run_client(str(tmp_path / "mix.wav"), "-i", "bass", "--server", url)
    assert done.returncode == 1 and done.stderr.startswith("stemserver: error: server address"), done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
