"""Helpers shared by the benchmarks: locating ../shared data and timing with repeats."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INFOVAE_SHARED", ROOT.parent / "shared"))
MNIST_DIR = SHARED / "datasets" / "mnist"


def need_mnist() -> Path:
    if not MNIST_DIR.is_dir():
        sys.exit(f"benchmark needs the MNIST IDX files at {MNIST_DIR} (set INFOVAE_SHARED)")
    return MNIST_DIR


def timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(median, min) wall seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def row(name: str, value: str, goal: str = "", verdict: str = "") -> None:
    print(f"  {name:<48} {value:>14}  {goal:<14} {verdict}")
