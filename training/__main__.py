"""`python -m stemserver_training train|prepare ...`: the trainer's command line (cli.py)."""

import sys

from stemserver_training.cli import main

if __name__ == "__main__":
    sys.exit(main())
