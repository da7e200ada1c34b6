"""What every benchmark here shares: timing on any device, and printing a table or JSON."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of `fn()` over `repeats` runs, after `warmup` runs (lazy init, allocator, compile)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def emit(result: dict, as_json: bool, print_table: Callable[[dict], None]) -> None:
    """Print the result for scripts (JSON) or for people (the benchmark's table)."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
