"""tools/ship_default_model.py: the float16 copy that the repository ships as the default model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint

from stemserver.checkpoint import load_checkpoint
from stemserver.files import sha256_file

pytestmark = pytest.mark.slow  # the whole file: subprocesses, rendering or training (README: test tiers)

TOOL = Path(__file__).parents[1] / "tools" / "ship_default_model.py"


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)


def test_ships_a_float16_copy_that_loads(tmp_path: Path):
    make_checkpoint(tmp_path / "trained.safetensors")
    out = tmp_path / "default-model.safetensors"
    result = run_tool(str(tmp_path / "trained.safetensors"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    shipped = load_checkpoint(out)
    assert all(v.dtype == torch.float16 for v in shipped.state.values() if v.is_floating_point())
    assert shipped.info["source_sha256"] == sha256_file(tmp_path / "trained.safetensors")
    assert out.stat().st_size < 0.6 * (tmp_path / "trained.safetensors").stat().st_size


def test_over_the_budget_nothing_is_replaced(tmp_path: Path):
    make_checkpoint(tmp_path / "trained.safetensors")
    out = tmp_path / "default-model.safetensors"
    out.write_bytes(b"the previous model")
    result = run_tool(str(tmp_path / "trained.safetensors"), "--out", str(out), "--budget-mb", "0.001")
    assert result.returncode == 1 and "over the 0.001 MB budget" in result.stderr
    assert out.read_bytes() == b"the previous model" and sorted(p.name for p in tmp_path.iterdir()) == [
        "default-model.safetensors", "trained.safetensors"]
    assert run_tool(str(tmp_path / "missing.safetensors"), "--out", str(out)).returncode == 1
