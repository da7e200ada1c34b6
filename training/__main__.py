"""`python -m training train CONFIG [KEY=VALUE ...] [--resume] [--out DIR]` and
`python -m training prepare LAYOUT ROOT CACHE_DIR`: the trainer's command line (docs/training.md)."""

import argparse
import sys

from training.train import EXIT_USAGE, add_arguments, add_prepare_arguments, run, run_prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description="Train Stem-JEPA models "
                                     "(docs/training.md).")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>")
    train = verbs.add_parser("train", help="train the phases of a config (contrastive, then JEPA)",
                             description="Train from a YAML config; KEY=VALUE arguments override its keys. "
                             "Writes checkpoints, metrics.csv and the final model bundle into the output "
                             "folder. Exit codes: 0 done, 1 error, 2 wrong usage, 130 stopped by a signal "
                             "after writing a checkpoint (continue with --resume).")
    add_arguments(train)
    train.set_defaults(run=run)
    prepare = verbs.add_parser("prepare", help="decode a dataset into the training cache",
                               description="Read a dataset (musdb18, moisesdb or folder layout), decode every "
                               "stem once into CACHE (16 kHz int16, memory-mapped) and assign the splits. "
                               "Incremental: run it again after adding tracks.")
    add_prepare_arguments(prepare)
    prepare.set_defaults(run=run_prepare)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return EXIT_USAGE
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
