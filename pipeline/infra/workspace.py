"""A scratch copy of the study's repository, ready for `dvc repro`: what the end-to-end tests,
the fault suite and the study benchmark run the pipeline in, so a run never writes into the
checkout it was started from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def study_copy(src: str | Path, dest: str | Path, mnist_dir: str | Path,
               overrides: list[str] | None = None) -> Path:
    """A fresh copy of the repository at `src` (tracked and untracked-not-ignored files: what a
    clone holds plus the working tree's changes) in its own git repository at `dest`, the MNIST
    files of `mnist_dir` linked into data/raw, and params.yaml composed from conf/ with the
    Hydra `overrides` (`["profile=smoke"]`), exactly as `dvc exp run -S` would write it."""
    from pipeline.params.compose import write_params

    src, dest = Path(src), Path(dest)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (src / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "raw" / "mnist").symlink_to(Path(mnist_dir).resolve())
    if overrides:
        write_params(dest, overrides)
    git = ["git", "-c", "user.name=study", "-c", "user.email=study@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "study copy"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)
    return dest


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's bin directory (dvc, python) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env
