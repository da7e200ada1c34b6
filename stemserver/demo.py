"""The demo library: stems and mixes of a few held-out works that ship with stemserver.

On the first start of `serve` with the default model and the default library, the demo folder
(stemserver.defaults.demo_assets_dir(): stems/, mixes/, demo.json, built by
tools/make_demo_library.py) is copied to the user's data folder and its stems are indexed into the
library, so a first query works out of the box. The mixes are copied too: they are what the
printed first query sends.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from stemserver.config import Settings
from stemserver.defaults import demo_assets_dir, user_demo_dir
from stemserver.index import read_current
from stemserver.indexing import index_folders
from stemserver.library import DATABASE, Library

MANIFEST = "demo.json"
STEMS = "stems"
MIXES = "mixes"


def wanted(library_dir: Path) -> bool:
    """True when the library is missing or empty, or holds only demo stems and no search index
    yet (a first start that was interrupted). A library with any other file is never touched."""
    if not (library_dir / DATABASE).is_file():
        return True
    with Library(library_dir) as library:
        files = library.files()
    stems = f"{(user_demo_dir() / STEMS).absolute()}{os.sep}"
    return not files or (all(f.path.startswith(stems) for f in files) and read_current(library_dir / "index") is None)


def install(library_dir: Path, checkpoint_path: Path, settings: Settings) -> dict | None:
    """Copy the demo to the user's data folder and index its stems into the library, reporting on
    stderr; returns the index summary, or None when this installation has no demo."""
    source = demo_assets_dir()
    if not (source / MANIFEST).is_file():
        _say(f"no demo library in this installation ({source / MANIFEST} is missing): index your own samples with "
             "`stemserver index FOLDER`")
        return None
    target = user_demo_dir()
    _say(f"first start: copying the demo library to {target} and indexing it into {library_dir}")
    shutil.copytree(source, target, dirs_exist_ok=True)  # copy2 keeps mtimes: copying again embeds nothing again
    summary = index_folders([target / STEMS], library_dir, checkpoint_path, settings)
    _say(f"indexed {summary['added'] + summary['updated']} demo stems ({summary['audio_seconds']:.0f} s of audio) "
         f"in {summary['elapsed_s']:.1f} s")
    return summary


def first_query_hint(osc_url: str, ws_url: str, page_url: str, token: str | None) -> str:
    """How to send a first query to this server (in the browser, or with a demo mix when the user has one)."""
    mix, instrument = _example() or (Path("MIX.wav"), "bass")
    command = [*_stemserver_command(), "query", str(mix), "-i", instrument, "--server", osc_url]
    if token:
        command += ["--token", "YOUR_TOKEN"]
    page = f"{page_url}?token=YOUR_TOKEN" if token else page_url
    return (f"stemserver: listening on OSC {osc_url} and WebSocket {ws_url}; the page is {page} (open it in a "
            f"browser: drop a mix, name an instrument, listen). A first query, from another terminal:\n"
            f"  {shlex.join(command)}")


def _example() -> tuple[Path, str] | None:
    """The first demo mix the user has, and an instrument of its track (bass when it has one)."""
    demo = user_demo_dir()
    try:
        files = json.loads((demo / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for mix in (f for f in files if f.get("kind") == "mix" and (demo / f["path"]).is_file()):
        labels = [f["labels"][0] for f in files if f.get("kind") == "stem" and f.get("track") == mix["track"]
                  and f.get("labels")]
        if labels:
            return demo / mix["path"], "bass" if "bass" in labels else labels[0]
    return None


def _stemserver_command() -> list[str]:
    """The `stemserver` of this installation, as the user can type it."""
    script = Path(sys.executable).parent / "stemserver"
    if not script.is_file():
        return [sys.executable, "-m", "stemserver"]
    return ["stemserver"] if shutil.which("stemserver") == str(script) else [str(script)]


def _say(message: str) -> None:
    print(f"stemserver: {message}", file=sys.stderr, flush=True)
