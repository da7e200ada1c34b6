"""The trainer's command line (docs/training.md):

    python -m stemserver_training train CONFIG [KEY=VALUE ...] [--resume] [--out DIR]
    python -m stemserver_training prepare LAYOUT ROOT CACHE_DIR

`stemserver train` and `stemserver prepare` run this `main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stemserver.errors import StemserverError
from stemserver.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, run_main
from stemserver_training.cache import build_cache
from stemserver_training.config import load_config
from stemserver_training.datasets import read_dataset
from stemserver_training.train import train


def _override(text: str) -> str:
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. optim.batch_size=64)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` verb's arguments."""
    parser.add_argument("train_config", metavar="CONFIG", help="training config: a YAML file, or the name of a "
                        "shipped one (tiny, demo, paper)")
    parser.add_argument("overrides", nargs="*", type=_override, metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.batch_size=64 jepa.steps=1000 runtime.device=cuda")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output "
                        "folder (starts afresh when it has none)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: the config's `out`)")


def run(args: argparse.Namespace) -> int:
    """Run the `train` verb; exit code 0 done, 130 stopped by a signal after writing a checkpoint
    (errors raise). Honours --device / --threads when the caller's parser defines them."""
    overrides = list(args.overrides)
    for flag, key in (("out", "out"), ("device", "runtime.device"), ("threads", "runtime.threads")):
        if getattr(args, flag, None) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    result = train(load_config(args.train_config, overrides), resume=args.resume)
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layout", choices=["musdb18", "moisesdb", "folder"], help="the dataset's layout")
    parser.add_argument("root", type=Path, help="the dataset's folder")
    parser.add_argument("cache", type=Path, help="the cache folder to build or update (data.cache in the config)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the track splits (default 0)")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="tracks drawn for valid (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="tracks drawn for test (default 0.1)")


def run_prepare(args: argparse.Namespace) -> int:
    """Decode a dataset into the cache the trainer reads; prints the split sizes."""
    prepared = build_cache(read_dataset(args.layout, args.root), args.cache, seed=args.split_seed,
                           valid_fraction=args.valid_fraction, test_fraction=args.test_fraction)
    for split in ("train", "valid", "test"):
        part = prepared.split(split)
        seconds = sum(t.num_samples for t in part.tracks) / prepared.sample_rate
        print(f"{split:5}: {len(part.tracks):5d} tracks, {sum(len(t.stems) for t in part.tracks):6d} stems, "
              f"{seconds / 3600:7.2f} h")
    print(f"cache: {prepared.cache_dir}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stemserver_training", description="Train Stem-JEPA models "
                                     "(docs/training.md).")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>")
    train_verb = verbs.add_parser("train", help="train the phases of a config (contrastive, then JEPA)",
                                  description="Train from a YAML config; KEY=VALUE arguments override its keys. "
                                  "Writes checkpoints, metrics.csv and the final model bundle into the output "
                                  "folder. Exit codes: 0 done, 1 error (a loss that became NaN or Inf included, "
                                  "after saving the weights before it), 2 wrong usage, 130 stopped by a signal "
                                  "after writing a checkpoint (continue with --resume).")
    add_arguments(train_verb)
    train_verb.set_defaults(run=run, errors=(StemserverError,))
    prepare = verbs.add_parser("prepare", help="decode a dataset into the training cache",
                               description="Read a dataset (musdb18, moisesdb or folder layout), decode every "
                               "stem once into CACHE (16 kHz int16, memory-mapped) and assign the splits. "
                               "Incremental: run it again after adding tracks.")
    add_prepare_arguments(prepare)
    prepare.set_defaults(run=run_prepare, errors=(StemserverError, ValueError))
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return EXIT_USAGE
    return run_main(args.run, args, args.verb, errors=args.errors)
