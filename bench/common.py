"""Helpers shared by the benchmarks: locating and preparing ../shared data, study copies, timing
with repeats, and the CPU cores a measured piece of work obtained on a shared machine."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
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


def row(name: str, value: str, goal: str = "", verdict: str = "", width: int = 14) -> None:
    print(f"  {name:<48} {value:>{width}}  {goal:<{width}} {verdict}")


def prepared_mnist(directory: str | Path) -> Path:
    """Full MNIST from ../shared prepared (default data params) into `directory`/data."""
    from pipeline.data.prepare import prepare
    from pipeline.params.data import DataParams

    directory = Path(directory)
    raw = directory / "raw" / "mnist"
    raw.mkdir(parents=True, exist_ok=True)
    for f in need_mnist().iterdir():
        if not (raw / f.name).exists():
            (raw / f.name).symlink_to(f)
    prepare(DataParams(raw_dir=str(raw.parent), out_dir=str(directory / "data"),
                       summary=str(directory / "summary.json"), download=False))
    return directory / "data"


def study_copy(dest: str | Path, profile: str | None = "smoke", overrides: list[str] | None = None) -> Path:
    """A scratch copy of this repository with `profile` and `overrides` composed
    (pipeline.infra.workspace)."""
    from pipeline.infra.workspace import study_copy as copy

    given = ([f"profile={profile}"] if profile else []) + list(overrides or [])
    return copy(ROOT, dest, need_mnist(), given or None)


def run_timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call; CPU / wall = the CPU cores the process obtained."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


class CpuSampler:
    """Reads /proc every `interval` seconds in a background thread: the cumulative CPU seconds
    of this process and of every process descended from it (a Ray driver's raylet and workers,
    DVC's stage scripts) and the busy time of the whole machine. Afterwards, the CPU seconds of
    one process, of the whole tree or of the machine between two wall-clock times (time.time(),
    interpolated between samples), so a wall figure can be shown beside the CPU cores it got:
    ours / the machine's busy cores tells code cost from other work on a shared machine.

    Linux only. A process counts from its start time, and ends at its last sample (a process
    shorter than `interval` may be missed). The sampler's own CPU (its thread, in this process)
    is `overhead` seconds."""

    def __init__(self, interval: float = 0.5, root: int | None = None):
        import threading

        self.interval, self.root = interval, root or os.getpid()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
        self.series: dict[tuple[int, int], list[tuple[float, float]]] = {}  # (pid, start) -> (t, cpu)
        self.cmdline: dict[tuple[int, int], str] = {}
        self.machine: list[tuple[float, float]] = []
        self.overhead = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="cpu-sampler")

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            cpu = time.thread_time()
            self._sample()
            self.overhead += time.thread_time() - cpu

    def _sample(self) -> None:
        now = time.time()
        stats: dict[int, tuple[int, int, float]] = {}  # pid -> (ppid, start ticks, cpu seconds)
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(entry.path, "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            f = text[text.rindex(")") + 2:].split()  # fields from 3 (state) on; comm may hold spaces
            stats[int(entry.name)] = (int(f[1]), int(f[19]), (int(f[11]) + int(f[12])) / self.tick)
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        todo = [self.root]
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            if pid not in stats:
                continue
            key = (pid, stats[pid][1])
            if key not in self.series:
                self.series[key] = []
                try:
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    self.cmdline[key] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    self.cmdline[key] = ""
            self.series[key].append((now, stats[pid][2]))
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = fields[3] + fields[4]  # idle + iowait; the rest (user ... steal) is busy
        self.machine.append((now, (sum(fields) - idle) / self.tick))

    @staticmethod
    def _at(points: list[tuple[float, float]], t: float) -> float:
        import bisect

        i = bisect.bisect_left(points, (t, float("-inf")))
        if i == 0:
            return points[0][1]
        if i == len(points):
            return points[-1][1]
        (t0, c0), (t1, c1) = points[i - 1], points[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0)

    def _points(self, key: tuple[int, int]) -> list[tuple[float, float]]:
        return [(self.boot + key[1] / self.tick, 0.0)] + self.series[key]  # from its start, at 0

    def cpu(self, pid: int, t0: float, t1: float) -> float:
        """CPU seconds process `pid` used between t0 and t1 (every process that held the pid)."""
        return sum(self._at(self._points(k), t1) - self._at(self._points(k), t0)
                   for k in self.series if k[0] == pid)

    def tree_cpu(self, t0: float, t1: float) -> float:
        """CPU seconds of this process and all its descendants between t0 and t1."""
        return sum(self._at(self._points(k), t1) - self._at(self._points(k), t0) for k in self.series)

    def machine_cores(self, t0: float, t1: float) -> float:
        """Busy CPU cores of the whole machine (every process, ours included) between t0 and t1."""
        return (self._at(self.machine, t1) - self._at(self.machine, t0)) / max(t1 - t0, 1e-9)

    def last_seen(self, contains: str) -> float | None:
        """The last sample time of the processes whose command line contains `contains`."""
        times = [self.series[k][-1][0] for k, c in self.cmdline.items() if contains in c and self.series[k]]
        return max(times) if times else None


@contextlib.contextmanager
def output_to(path: str | Path) -> Iterator[None]:
    """Send this process's file descriptors 1 and 2 (print, Ray's and Tune's console output,
    forwarded worker logs) to `path` while inside: print figures outside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def median_range(values: list[float], fmt: str = "{:.2f}") -> str:
    """'median (min-max)' of a list of figures: the median and the noise around it."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"
