"""Timing shared by the benchmarks: each method against its peer, measured in the same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def interleaved_median_times(methods: dict[str, Callable[[], Any]], repeat: int,
                             device: torch.device) -> tuple[dict[str, float], dict[str, Any]]:
    """The median of ``repeat`` runs of each method, in seconds, after one warm-up run each.

    Runs alternate between the methods (round robin), so that a change in the machine's load during
    the benchmark affects them all alike; the median ignores the runs that another process slowed down.

    Returns:
        ``({name: median seconds}, {name: the last output})``.
    """
    outputs = {name: fn() for name, fn in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeat):
        for name, fn in methods.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            outputs[name] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outputs
