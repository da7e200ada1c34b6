"""scripts/_setup.sh (sourced by run.sh and test.sh) waits for another package manager's lock instead
of failing at once. A real lock, held by `flock` on a temporary file the script is pointed at
(STEMSERVER_APT_LOCKS); apt-get and sudo are stand-ins that only record their arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "_setup.sh"

pytestmark = pytest.mark.skipif(shutil.which("flock") is None or not os.access("/proc/locks", os.R_OK),
                                reason="needs flock(1) and a readable /proc/locks (Linux)")


@pytest.fixture
def setup(tmp_path: Path):
    """Start the install of one missing package with stand-in apt-get and sudo; returns (start, log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {log}\n')
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    lock = tmp_path / "lock-frontend"
    lock.touch()

    def start(timeout_s: int) -> subprocess.Popen:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STEMSERVER_APT_LOCKS": f"{lock}",
               "STEMSERVER_APT_LOCK_TIMEOUT": str(timeout_s)}
        return subprocess.Popen(["bash", "-c", f'source "{SETUP}" && install_system_packages '
                                 "stemserver-test-package:stemserver-no-such-command"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    return start, log, lock


@pytest.fixture
def holder(setup):
    """Another process holding the lock until its stdin closes."""
    _, _, lock = setup
    process = subprocess.Popen(["flock", str(lock), "-c", "echo held; exec cat"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    yield process
    process.stdin.close()
    process.wait(timeout=60)


def test_the_install_waits_for_a_held_lock_says_for_what_then_proceeds(setup, holder):
    start, log, lock = setup
    script = start(timeout_s=300)
    first = script.stdout.readline()
    assert first == "installing system packages: stemserver-test-package\n"
    waiting = script.stdout.readline()
    assert f"waiting up to 300 s for {lock}, held by process {holder.pid} (flock)" in waiting
    assert not log.exists()  # apt-get has not run while the lock is held
    holder.stdin.close()
    rest, _ = script.communicate(timeout=120)
    assert script.returncode == 0, rest
    assert "waiting" not in rest  # said once
    calls = log.read_text().splitlines()
    assert calls == ["apt-get -o DPkg::Lock::Timeout=300 update -qq",
                     "apt-get -o DPkg::Lock::Timeout=300 install -y -qq stemserver-test-package"]


def test_the_install_gives_up_with_a_clear_message_when_the_lock_stays_held(setup, holder):
    start, log, lock = setup
    script = start(timeout_s=1)
    output, _ = script.communicate(timeout=120)
    assert script.returncode == 1
    assert f"error: {lock} is still held by process {holder.pid} after 1 s" in output
    assert "run this script again" in output
    assert not log.exists()


def test_the_install_does_not_wait_for_a_free_lock(setup):
    start, log, _ = setup
    output, _ = start(timeout_s=300).communicate(timeout=120)
    assert "waiting" not in output
    assert len(log.read_text().splitlines()) == 2
