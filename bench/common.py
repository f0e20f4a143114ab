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


def prepared_mnist(directory: str | Path) -> Path:
    """Full MNIST from ../shared prepared (default data params) into `directory`/data."""
    from pipeline.data import prepare
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


def study_copy(dest: str | Path, profile: str | None = "smoke") -> Path:
    """A fresh copy of this repository (tracked and untracked-not-ignored files, as a clone
    would hold plus the working tree's changes) in its own git repository, with the MNIST
    files of ../shared linked into data/raw and `profile` selected: ready for `dvc repro`."""
    import shutil
    import subprocess

    dest = Path(dest)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "raw" / "mnist").symlink_to(need_mnist())
    if profile:
        params = dest / "params.yaml"
        text = params.read_text()
        if "\nprofile: null\n" not in "\n" + text:
            raise RuntimeError("params.yaml has no top-level 'profile: null' line to select a profile")
        params.write_text(("\n" + text).replace("\nprofile: null\n", f"\nprofile: {profile}\n", 1)[1:])
    git = ["git", "-c", "user.name=study", "-c", "user.email=study@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "study copy"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)
    return dest


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's bin directory (dvc, python) first on PATH."""
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env
