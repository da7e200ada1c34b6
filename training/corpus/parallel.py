"""Run a builder's jobs over worker processes, as they finish, with errors as messages; its totals.

Shared by the classical and the popular builders: the main process alone writes the manifest,
so workers only return records (or a failure message, so one bad job never kills the build).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any


@dataclass(kw_only=True)
class Totals:
    """What a build did, and the audio its folder holds: both builders' summaries extend it."""

    out: str
    built: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    stems: int = 0
    track_hours: float = 0.0
    stem_hours: float = 0.0
    bytes: int = 0
    seconds: float = 0.0


def run_jobs(function: Callable[..., Any], tasks: Iterable[tuple[str, tuple]], workers: int) -> Iterator[Any]:
    """Yield `function(*args)` for each (label, args) task, or "label: Error: message" where it
    raised, in the order they finish.

    A multiprocessing pool rather than concurrent.futures: leaving this generator (Ctrl-C, an
    error) terminates the workers at once instead of waiting for the jobs they are running.
    `function` must be importable by name (spawned workers unpickle it).
    """
    jobs = [(function, label, args) for label, args in tasks]
    if workers == 1:
        yield from map(_guarded, jobs)
        return
    with get_context("spawn").Pool(workers, initializer=_ignore_interrupts) as pool:
        yield from pool.imap_unordered(_guarded, jobs)


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which terminates them (no half-reported failures)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _guarded(job: tuple[Callable[..., Any], str, tuple]) -> Any:
    function, label, args = job
    try:
        return function(*args)
    except Exception as e:
        return f"{label}: {type(e).__name__}: {e}"
