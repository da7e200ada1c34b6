"""argparse types shared by every command line (the product's and the trainer's): values with a
range, checked at parse time, so a bad flag is a usage error (exit 2) that names it, never a
traceback or a silently accepted nonsense value."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _ranged(parse: Callable[[str], float], accept: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: `parse` the text, then refuse a value that `accept` rejects, saying the `rule`."""

    def check(text: str):
        value = parse(text)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return check


positive_int = _ranged(_int, lambda value: value >= 1, "at least 1")
non_negative_int = _ranged(_int, lambda value: value >= 0, "at least 0")
positive_float = _ranged(_float, lambda value: value > 0, "a finite number greater than 0")
non_negative_float = _ranged(_float, lambda value: value >= 0, "a finite number of at least 0")
port = _ranged(_int, lambda value: 0 <= value <= 65535, "a port from 0 to 65535 (0: any free port)")


def non_empty_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty or only spaces")
    return text.strip()


def tempo_bpm(text: str) -> float:
    from stemserver.music import MAX_STATED_MIX_BPM, MIN_STATED_MIX_BPM

    return _ranged(_float, lambda value: MIN_STATED_MIX_BPM <= value <= MAX_STATED_MIX_BPM,
                   f"a tempo in BPM from {MIN_STATED_MIX_BPM:g} to {MAX_STATED_MIX_BPM:g}")(text)
stretch_limit = _ranged(_float, lambda value: 1 <= value <= 4, "a playback-rate ratio from 1 to 4, e.g. 1.1")


def key_text(text: str) -> str:
    from stemserver.music import key_name, parse_key

    key = parse_key(text, bare_tonic=True)
    if key is None:
        raise argparse.ArgumentTypeError(f"must be a key such as 'A minor', 'F#m' or 'Bb major', got {text!r}")
    return key_name(key)
