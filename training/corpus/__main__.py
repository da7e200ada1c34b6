"""`python -m stemserver_training.corpus build|loops ...`: the corpus builder's command line."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from stemserver.arguments import positive_int
from stemserver.exits import EXIT_OK, run_main
from stemserver_training.corpus.build import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stemserver_training.corpus",
                                     description="Build the open multitrack corpus (see docs/corpus.md).")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    build = verbs.add_parser("build", help="render a MoisesDB-layout multitrack corpus (classical or popular)",
                             description="--style classical (the default): render every eligible multi-part "
                             "work of the music21 corpus, part by part, with FluidSynth, plus a drum and a bass "
                             "stem, in several seeded variants. --style popular: arrange, render, produce and mix "
                             "generated songs of a dozen genres, with their ground truth (genre, tempo, key, "
                             "chords, sections, roles, timbres, effects). Resumes when run again on the same folder.")
    add_arguments(build)
    build.set_defaults(handler=run)
    loops = verbs.add_parser("loops", help="cut a popular corpus into sample-pack loops and one-shots",
                             description="Cut every stem of a popular corpus into 1-, 2- and 4-bar loops on the "
                             "song's bar grid and its separate drum pieces and impacts into one-shots, named like "
                             "a sample pack's (Bass_124_Fmin_03.wav, Kick_07.wav), listed in OUT/loops.jsonl.")
    loops.add_argument("corpus", type=Path, metavar="CORPUS", help="a folder built with --style popular")
    loops.add_argument("out", type=Path, metavar="OUT", help="a new (or empty) folder for the loops")
    loops.add_argument("--bars", type=positive_int, nargs="+", default=[1, 2, 4], metavar="N",
                       help="loop lengths in bars (default: 1 2 4)")
    loops.add_argument("--per-stem", type=positive_int, default=2, metavar="N",
                       help="loops of each length per stem, spread over the song (default: 2)")
    loops.add_argument("--one-shots", type=positive_int, default=2, metavar="N",
                       help="one-shots per drum-piece or impact stem (default: 2)")
    loops.add_argument("--json", action="store_true", help="print the summary as JSON")
    loops.set_defaults(handler=_loops)
    args = parser.parse_args(argv)
    interrupted = ("interrupted; run the same command again to resume" if args.verb == "build"
                   else "interrupted; delete the partial export and run the command again")
    return run_main(args.handler, args, "corpus", interrupted=interrupted)


def _loops(args: argparse.Namespace) -> int:
    from stemserver_training.corpus.popular.loops import describe, export_loops

    summary = export_loops(args.corpus, args.out, bars=args.bars, per_stem=args.per_stem, one_shots=args.one_shots)
    print(json.dumps(dataclasses.asdict(summary), indent=2) if args.json else describe(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
