"""Make the bundled default model (stemserver/assets/default-model.safetensors) from a trained bundle.

    python tools/ship_default_model.py runs/demo/jepa.safetensors

The weights are stored as float16 (half the file; the server rebuilds the model in float32 from
them), the source bundle's sha256 is recorded in the info, and the result must fit the repository's
25 MB budget. docs/model-card.md says how the shipped model was trained and how well it retrieves.
Exit codes: 0 written, 1 an error the message explains, 2 wrong usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from stemserver.checkpoint import load_checkpoint
from stemserver.defaults import BUNDLED_MODEL
from stemserver.errors import StemserverError
from stemserver.files import sha256_file

BUDGET_MB = 25.0


def ship(source: Path, out: Path, budget_mb: float = BUDGET_MB) -> int:
    """Write the float16 copy of `source` to `out`; returns its size in bytes."""
    checkpoint = load_checkpoint(source).with_dtype(torch.float16)
    checkpoint.info["source_sha256"] = sha256_file(source)
    staged = out.with_name(out.name + ".new")
    checkpoint.save(staged)
    size = staged.stat().st_size
    if size > budget_mb * 1e6:
        staged.unlink()
        raise StemserverError(f"{source} in float16 takes {size / 1e6:.1f} MB, over the {budget_mb:g} MB budget; "
                              "train a smaller model (model.predictor_hidden, model.size)")
    load_checkpoint(staged).build_model()  # it must load and build before it replaces anything
    staged.replace(out)
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="trained bundle (.safetensors)")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL, help=f"default: {BUNDLED_MODEL}")
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB)
    args = parser.parse_args(argv)
    try:
        size = ship(args.bundle, args.out, args.budget_mb)
    except StemserverError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
