"""Stopping a run cleanly: SIGINT / SIGTERM (what schedulers and torchrun send) set a flag that the
loop checks after each step, so it writes a checkpoint and stops; a second SIGINT interrupts at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """The flag SIGINT and SIGTERM set while the block runs; the previous handlers come back after."""
    flag = threading.Event()

    def handler(signum, frame):
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.set()

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: no handlers, no graceful stop
        previous = {}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
