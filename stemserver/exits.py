"""The exit codes of every command line in the project, and the one place that maps errors to them.

0 success, 1 an error the message explains, 2 wrong usage (argparse exits with it itself), 130
interrupted (128 + SIGINT, what shells report for Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from stemserver.errors import StemserverError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run_main(function: Callable[[argparse.Namespace], int], args: argparse.Namespace, program: str, *,
             errors: tuple[type[BaseException], ...] = (StemserverError,), interrupted: str = "interrupted") -> int:
    """`function(args)`'s exit code; an error of `errors` becomes `PROGRAM: error: MESSAGE` on stderr
    and exit 1, Ctrl-C becomes `PROGRAM: INTERRUPTED` and exit 130. Anything else is a bug and keeps
    its traceback."""
    try:
        return function(args)
    except errors as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{program}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
