"""`python -m stemserver_training.corpus build OUT ...`: the corpus builder's command line."""

import argparse
import sys

from stemserver.exits import run_main
from stemserver_training.corpus.build import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stemserver_training.corpus",
                                     description="Build the open multitrack corpus (see docs/corpus.md).")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    build = verbs.add_parser("build", help="render music21 scores into a MoisesDB-layout multitrack corpus",
                             description="Render every eligible multi-part work of the music21 corpus, part "
                             "by part, with FluidSynth, plus a drum and a bass stem, in several seeded "
                             "variants. Resumes when run again on the same folder.")
    add_arguments(build)
    return run_main(run, parser.parse_args(argv), "corpus",
                    interrupted="interrupted; run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
