"""Where stemserver finds what ships with it, and where it keeps the user's data.

    stemserver/assets/default-model.safetensors   the bundled default model (package data);
                                                  $STEMSERVER_DEFAULT_MODEL names another file
    stemserver/assets/demo/                       the demo library: stems/, mixes/, demo.json;
                                                  $STEMSERVER_DEMO names another folder
    $XDG_DATA_HOME/stemserver/                    the user's data (default ~/.local/share/stemserver):
        library/                                  the default sample library
        demo/                                     the demo library, copied there on first start

The two variables exist for packagers and tests; users set `checkpoint` and `library` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from stemserver.errors import CheckpointError

ASSETS_DIR = Path(__file__).parent / "assets"
BUNDLED_MODEL = ASSETS_DIR / "default-model.safetensors"
BUNDLED_DEMO = ASSETS_DIR / "demo"
MODEL_VARIABLE = "STEMSERVER_DEFAULT_MODEL"
DEMO_VARIABLE = "STEMSERVER_DEMO"


def default_model_path() -> Path:
    """The model used when no checkpoint is configured (the file may be missing)."""
    return Path(os.environ[MODEL_VARIABLE]).expanduser() if os.environ.get(MODEL_VARIABLE) else BUNDLED_MODEL


def demo_assets_dir() -> Path:
    """The demo library that ships with stemserver (the folder may be missing)."""
    return Path(os.environ[DEMO_VARIABLE]).expanduser() if os.environ.get(DEMO_VARIABLE) else BUNDLED_DEMO


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "stemserver"


def default_library_dir() -> Path:
    return user_data_dir() / "library"


def user_demo_dir() -> Path:
    return user_data_dir() / "demo"


def model_path(configured: Path | None) -> Path:
    """The checkpoint to load: the configured one, else the default model, which must exist."""
    if configured is not None:
        return configured
    path = default_model_path()
    if path.is_file():
        return path
    if os.environ.get(MODEL_VARIABLE):
        raise CheckpointError(f"{MODEL_VARIABLE} points to {path}, which does not exist: fix or unset it, "
                              "or pass --checkpoint PATH")
    raise CheckpointError(f"no model given and the bundled default model is missing ({path} does not exist; "
                          "a source checkout may not include it): pass --checkpoint PATH, set checkpoint in "
                          "the config, or place a model bundle (.safetensors) at that path")
