"""The demo library: stems and mixes of a few held-out songs and works that ship with stemserver.

On the first start of `serve` with the default model and the default library, the demo folder
(stemserver.defaults.demo_assets_dir(): stems/, mixes/, demo.json, built by
tools/make_demo_library.py) is copied to the user's data folder and its stems are indexed into the
library, so a first query works out of the box. The mixes are copied too: each is its track without
one part (demo.json's `missing`), and the printed first query sends the first mix and asks for that
part, which is in the library. A library that holds nothing but an earlier version's demo is brought
up to this version's on the next start; a library with any other file is never touched.
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
    """True when the library is missing or empty, or holds only demo stems and either no search index
    yet (a first start that was interrupted) or the stems of another version's demo (an untouched demo
    is replaced by this version's). A library with any other file is never touched."""
    if not (library_dir / DATABASE).is_file():
        return True
    with Library(library_dir) as library:
        files = library.files()
    stems = f"{(user_demo_dir() / STEMS).absolute()}{os.sep}"
    if not files:
        return True
    if not all(f.path.startswith(stems) for f in files):
        return False
    return read_current(library_dir / "index") is None or _outdated()


def install(library_dir: Path, checkpoint_path: Path, settings: Settings) -> dict | None:
    """Copy the demo to the user's data folder (replacing the files of an earlier version's demo there)
    and index its stems into the library, reporting on stderr; returns the index summary, or None when
    this installation has no demo."""
    source = demo_assets_dir()
    if not (source / MANIFEST).is_file():
        _say(f"no demo library in this installation ({source / MANIFEST} is missing): index your own samples with "
             "`stemserver index FOLDER`")
        return None
    target = user_demo_dir()
    if _outdated() and (target / MANIFEST).is_file():
        _say(f"a new demo library: replacing the earlier version's at {target} and indexing it into {library_dir}")
        _remove_earlier(target, _listed(target) - _listed(source))
    else:
        _say(f"first start: copying the demo library to {target} and indexing it into {library_dir}")
    shutil.copytree(source, target, dirs_exist_ok=True)  # copy2 keeps mtimes: copying again embeds nothing again
    summary = index_folders([target / STEMS], library_dir, checkpoint_path, settings)
    _say(f"indexed {summary['added'] + summary['updated']} demo stems ({summary['audio_seconds']:.0f} s of audio) "
         f"in {summary['elapsed_s']:.1f} s")
    return summary


def _outdated() -> bool:
    """True when the user's copy of the demo is not this installation's (an earlier version's, or none)."""
    try:
        bundled = (demo_assets_dir() / MANIFEST).read_bytes()
    except OSError:
        return False
    try:
        return (user_demo_dir() / MANIFEST).read_bytes() != bundled
    except OSError:
        return True


def _listed(demo: Path) -> set[str]:
    """The paths a demo folder's manifest lists (none when it is unreadable)."""
    try:
        return {f["path"] for f in json.loads((demo / MANIFEST).read_text())["files"] if isinstance(f.get("path"), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _remove_earlier(demo: Path, paths: set[str]) -> None:
    """Delete the listed files of an earlier demo (only files inside its stems/ and mixes/), and the
    folders that leaves empty, so that they are not indexed beside the new demo."""
    root = demo.resolve()
    folders = {root / STEMS, root / MIXES}
    for relative in paths:
        path = (root / relative).resolve()
        if path.is_file() and any(folder in path.parents for folder in folders):
            path.unlink()
            parent = path.parent
            while parent not in folders and parent != root and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


def first_query_hint(osc_url: str, ws_url: str, page_url: str, token: str | None) -> str:
    """How to send a first query to this server (in the browser, or with a demo mix when the user has
    one: it asks for the part that mix leaves out, and names the stem that part is)."""
    mix, instrument, left_out = _example() or (Path("MIX.wav"), "bass", None)
    command = [*_stemserver_command(), "query", str(mix), "-i", instrument, "--server", osc_url]
    if token:
        command += ["--token", "YOUR_TOKEN"]
    page = f"{page_url}?token=YOUR_TOKEN" if token else page_url
    answer = f"\n  (that mix leaves out its {instrument}: the stem it left out, {left_out}, is in the library)" \
        if left_out else ""
    return (f"stemserver: listening on OSC {osc_url} and WebSocket {ws_url}; the page is {page} (open it in a "
            f"browser: drop a mix, name an instrument, listen). A first query, from another terminal:\n"
            f"  {shlex.join(command)}{answer}")


def _example() -> tuple[Path, str, Path | None] | None:
    """The first demo mix the user has, the instrument to ask for and the stem that is the answer: the
    part left out of that mix. An earlier version's demo.json names none (its mixes held every stem):
    then an instrument of the mix's track, bass when it has one, and no stem."""
    demo = user_demo_dir()
    try:
        files = json.loads((demo / MANIFEST).read_text())["files"]
        for mix in (f for f in files if f.get("kind") == "mix" and (demo / f["path"]).is_file()):
            missing = mix.get("missing")
            if missing:
                labels = missing.get("labels")
                instrument = labels[0] if labels else missing["family"].replace("-", " ")
                return demo / mix["path"], instrument, demo / missing["path"]
            labels = [f["labels"][0] for f in files if f.get("kind") == "stem" and f.get("track") == mix["track"]
                      and f.get("labels")]
            if labels:
                return demo / mix["path"], "bass" if "bass" in labels else labels[0], None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    return None


def _stemserver_command() -> list[str]:
    """The `stemserver` of this installation, as the user can type it."""
    script = Path(sys.executable).parent / "stemserver"
    if not script.is_file():
        return [sys.executable, "-m", "stemserver"]
    return ["stemserver"] if shutil.which("stemserver") == str(script) else [str(script)]


def _say(message: str) -> None:
    print(f"stemserver: {message}", file=sys.stderr, flush=True)
