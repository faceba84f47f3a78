"""Shared timing helper of the benchmark scripts (run as ``python benchmarks/<script>.py``, so
this folder is on ``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def ms(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """p50 and p95 wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}
