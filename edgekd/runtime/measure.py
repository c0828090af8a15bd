"""Latency and memory of one artifact in one runtime. Run it in a fresh process per
artifact (`python -m edgekd.runtime`) so that peak memory belongs to that artifact alone."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

from edgekd.runtime.base import open_session


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. Linux's VmHWM, since ru_maxrss keeps the
    high-water mark of the parent process across exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(
    runtime: str, path: str, threads: int, warmup: int, runs: int, seed: int = 0, batch: int = 1, **options
) -> dict:
    """Latency per batch of `batch` images; `options` go to the runtime's session (e.g. precision)."""
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    session = open_session(runtime, path, threads, **options)
    load_ms = (time.perf_counter() - start) * 1000
    shape = [batch] + session.input_shape()[1:]
    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    start = time.perf_counter()
    session.run(x)
    first_ms = (time.perf_counter() - start) * 1000
    for _ in range(warmup):
        session.run(x)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        session.run(x)
        times[i] = (time.perf_counter() - start) * 1000
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {
        "runtime": runtime,
        "threads": threads,
        "batch": batch,
        "runs": runs,
        "load_ms": round(load_ms, 3),
        "first_ms": round(first_ms, 3),
        "p50_ms": round(float(p50), 4),
        "p90_ms": round(float(p90), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(float(times.mean()), 4),
        "fps": round(batch * 1000.0 / float(times.mean()), 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "runtime_rss_mb": round(_peak_rss_mb() - rss_before, 1),
        "executed": session.executed_precision(),
    } | ({"options": options} if options else {})
