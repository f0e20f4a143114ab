"""Arithmetic of projected time shared by the sweep's and the evaluation's plans."""

from __future__ import annotations

import heapq
import math


def schedule(durations: list[float], slots: int) -> float:
    """Makespan of a greedy longest-first assignment of jobs to `slots` parallel slots."""
    load = [0.0] * max(1, slots)
    for d in sorted(durations, reverse=True):
        heapq.heappush(load, heapq.heappop(load) + d)
    return max(load)


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
