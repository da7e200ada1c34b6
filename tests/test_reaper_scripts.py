"""The REAPER scripts (reaper_scripts/): they compile, their Lua tests pass with a mock REAPER, their
ReaPack header and index agree, and the command line they build works against the real server.

REAPER itself cannot run here. What stands in for it: `reaper_scripts/tests/mock_reaper.lua` (the
API the scripts call, over plain tables), and for everything outside REAPER the real thing: the
real `/bin/sh`, the real `stemserver query` client and a real `stemserver serve`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile
from test_server import RATE, Server, library, write_mix  # noqa: F401  (library is a fixture)

SCRIPTS = Path(__file__).parent.parent / "reaper_scripts"
RUNNER = SCRIPTS / "tests" / "run_tests.lua"
MAIN = "stemserver_Find stem for time selection.lua"
ACTIONS = ["stemserver_Next result.lua", "stemserver_Previous result.lua", "stemserver_Settings.lua"]
LIBRARY = "stemserver_lib.lua"


def find_lua_5_4(*names: str) -> str | None:
    """The first of `names` on PATH that is Lua 5.4 (Debian names it lua5.4, Homebrew lua)."""
    for name in names:
        path = shutil.which(name)
        if not path:
            continue
        version = subprocess.run([path, "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        if "Lua 5.4" in version:
            return path
    return None


LUA, LUAC = find_lua_5_4("lua5.4", "lua"), find_lua_5_4("luac5.4", "luac")

needs_lua = pytest.mark.skipif(LUA is None or LUAC is None,
                               reason="Lua 5.4 is not installed (apt-get install lua5.4, brew install lua)")


def run_lua(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LUA, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def lua_tests() -> list[str]:
    if LUA is None:
        return []
    return run_lua(str(RUNNER), "--list").stdout.split()


def run_lua_test(name: str, tmp_path: Path, env: dict | None = None) -> None:
    """Runs one test of run_tests.lua; fails with its output unless it passed (not skipped)."""
    result = run_lua(str(RUNNER), name, env={"TMPDIR": str(tmp_path), "STEMSERVER_TEST_TMP": str(tmp_path),
                                             **(env or {})})
    assert result.returncode == 0 and f"ok   {name}" in result.stdout, result.stdout + result.stderr


# -- syntax, headers, index -----------------------------------------------------------------------


@needs_lua
@pytest.mark.parametrize("path", sorted(SCRIPTS.rglob("*.lua")), ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_every_lua_file_compiles(path: Path):
    result = subprocess.run([LUAC, "-p", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def header(path: Path) -> dict[str, list[str]]:
    """The ReaPack tags at the top of a script: tag -> its value and continuation lines."""
    tags: dict[str, list[str]] = {}
    last = None
    for line in path.read_text().splitlines():
        if match := re.match(r"-- @(\w+)\s*(.*)", line):
            last = match.group(1)
            tags[last] = [match.group(2)]
        elif last and (re.match(r"--\s{2,}\S", line) or line.strip() == "--"):  # an indented continuation
            tags[last].append(line[2:].strip())
        else:
            break
    return {tag: lines[: max(i + 1 for i, text in enumerate(lines) if text or i == 0)] for tag, lines in tags.items()}


def test_every_script_has_a_reapack_header_with_one_version():
    main = header(SCRIPTS / MAIN)
    for tag in ("description", "author", "version", "changelog", "provides", "about"):
        assert main.get(tag), f"{MAIN} has no @{tag}"
    provided = [re.sub(r"^\[main\]\s*", "", line) for line in main["provides"] if line]
    assert sorted(provided) == sorted([*ACTIONS, LIBRARY])
    for line in main["provides"]:
        if line:
            assert line.startswith("[main]") == (line != LIBRARY), f"only the actions are [main]: {line}"
    for name in [*ACTIONS, LIBRARY]:
        tags = header(SCRIPTS / name)
        assert "noindex" in tags, f"{name}: installed by the main package, so @noindex"
        assert tags["version"] == main["version"], f"{name}: version {tags['version']} != {main['version']}"
        assert tags.get("description"), name
    assert f'M.VERSION = "{main["version"][0]}"' in (SCRIPTS / LIBRARY).read_text()


@needs_lua
def test_reapack_index_lists_the_package_as_the_headers_say():
    index_path = SCRIPTS / "index.xml"
    generated = run_lua(str(SCRIPTS / "tools" / "make_index.lua"))
    assert generated.returncode == 0, generated.stderr
    assert index_path.read_text() == generated.stdout, "index.xml is stale: run tools/make_index.lua"

    index = ElementTree.parse(index_path).getroot()
    (package,) = index.iter("reapack")
    assert package.get("name") == MAIN and package.get("type") == "script"
    (version,) = package.iter("version")
    assert version.get("name") == header(SCRIPTS / MAIN)["version"][0]
    sources = {source.get("file") or MAIN: source for source in version.iter("source")}
    assert sorted(sources) == sorted([MAIN, *ACTIONS, LIBRARY])
    for name, source in sources.items():
        assert (SCRIPTS / name).is_file()
        assert unquote(source.text.rsplit("/", 1)[1]) == name
        assert (source.get("main") == "main") == (name != LIBRARY), name


# -- the Lua unit tests ----------------------------------------------------------------------------

NEEDS_SERVER = {name for name in lua_tests() if name.startswith("end_to_end_") or name == "json_decodes_real_reply"}


@needs_lua
@pytest.mark.parametrize("name", [name for name in lua_tests() if name not in NEEDS_SERVER])
def test_lua(name: str, tmp_path: Path):
    run_lua_test(name, tmp_path)


# -- against the real server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_server(identity_checkpoint: Path, library: Path):  # noqa: F811
    server = Server(identity_checkpoint, library)
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def executable(tmp_path_factory) -> Path:
    """The stemserver command, reached through a path with spaces and quotes in it, as a user's may be."""
    folder = tmp_path_factory.mktemp("tools") / "stem server's \"bin\""
    folder.mkdir()
    path = folder / "stemserver"
    path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m stemserver \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_url(server: Server, scheme: str) -> str:
    return f"osc://{server.osc[0]}:{server.osc[1]}" if scheme == "osc" else server.ws


@needs_lua
@pytest.mark.parametrize("scheme", ["osc", "ws"])
def test_the_scripts_command_line_gets_an_answer_from_the_server(running_server, executable, scheme, tmp_path):
    mix = tmp_path / "my mix's \"take 2\" $HOME.wav"
    write_mix(mix, seed=2, shift_s=4.8)  # 8 s of line2.wav from 4.8 s on

    printed = run_lua(str(SCRIPTS / "tests" / "print_command.lua"), str(executable),
                      server_url(running_server, scheme), str(mix), "bass", "3", env={"TMPDIR": str(tmp_path)})
    assert printed.returncode == 0, printed.stderr
    line, script = printed.stdout.splitlines()
    assert shlex.split(line) == ["/bin/sh", script], "REAPER splits the line into the shell and the script"

    # Exactly what REAPER is given, run the way a shell would (the Lua end-to-end tests run it the
    # way REAPER splits it).
    result = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    reply = json.loads(result.stdout)
    best = reply["matches"][0]
    assert Path(best["path"]).name == "line2.wav"
    assert best["offset_s"] == pytest.approx(4.8, abs=0.02)
    assert len(reply["matches"]) == 3

    # The scripts' own JSON decoder reads the same reply the same way.
    (tmp_path / "reply.json").write_text(result.stdout)
    run_lua_test("json_decodes_real_reply", tmp_path, env={
        "STEMSERVER_TEST_REPLY": str(tmp_path / "reply.json"),
        "STEMSERVER_TEST_DECODED": str(tmp_path / "decoded.json"),
    })
    assert json.loads((tmp_path / "decoded.json").read_text()) == reply


@needs_lua
@pytest.mark.parametrize("name", sorted(name for name in NEEDS_SERVER if name.startswith("end_to_end_")))
def test_lua_end_to_end(name: str, running_server, executable, tmp_path):
    write_mix(tmp_path / "mix.wav", seed=1, shift_s=6.4)  # 8 s of line1.wav from 6.4 s on
    soundfile.write(tmp_path / "silence.wav", np.zeros(8 * RATE, np.float32), RATE)
    run_lua_test(name, tmp_path, env={
        "STEMSERVER_TEST_EXECUTABLE": str(executable),
        "STEMSERVER_TEST_SERVER": server_url(running_server, "osc"),
        "STEMSERVER_TEST_DEAD_SERVER": f"ws://127.0.0.1:{closed_port()}",
        "STEMSERVER_TEST_MIX": str(tmp_path / "mix.wav"),
        "STEMSERVER_TEST_SILENT_MIX": str(tmp_path / "silence.wav"),
        "STEMSERVER_TEST_EXPECT_NAME": "line1.wav",
        "STEMSERVER_TEST_EXPECT_OFFSET": "6.4",
    })
