"""Disk space: checked before the sweep against what it will write; checkpoints' digests.

Estimate per trial checkpoint: 4-byte floats for every parameter (model and adversary) and up
to two optimizer moments each (Adam; RMSprop keeps one), plus a fixed allowance for the
sample grids, history and Tune's per-trial files. The storage path holds one checkpoint per
trial at the end and, while a trial runs, its previous one until Tune's next snapshot
(pipeline.sweep.atomic_fs); each running trial also builds its checkpoint in the temporary
directory first. The estimate is multiplied by `sweep.disk_margin`.

Each checkpoint directory carries `checkpoint.digest.json` (size and sha256 of checkpoint.pt,
written with it); best.json copies them, and evaluation verifies the file against them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.infra import atomic
from pipeline.sweep.outcome import mount_point

DIGEST = "checkpoint.digest.json"
PER_TRIAL_FILES = 2 << 20  # images, history, Tune's result.json / progress.csv / params
MOMENTS = 2


class SpaceError(PipelineError):
    pass


def file_digest(path: str | Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


def write_digest(directory: str | Path, filename: str) -> dict[str, Any]:
    d = file_digest(Path(directory) / filename)
    atomic.write_json(Path(directory) / DIGEST, {"file": filename, **d})
    return d


def checkpoint_digest(directory: str | None) -> dict[str, Any]:
    """checkpoint_bytes / checkpoint_sha256 recorded when the checkpoint was written (None: none)."""
    try:
        text = (Path(directory) / DIGEST).read_text() if directory else None
    except OSError:
        text = None
    return parse_digest(text)


def parse_digest(text: str | None) -> dict[str, Any]:
    """The columns of a DIGEST file's text (None or damaged: unknown)."""
    try:
        d = json.loads(text) if text else {}
    except ValueError:
        d = {}
    return {"checkpoint_bytes": d.get("bytes"), "checkpoint_sha256": d.get("sha256")}


def checkpoint_bytes(spec) -> int:
    """The estimated size of one checkpoint of a trial (see the module docstring)."""
    from pipeline.model.objective import InfoVAE

    model = InfoVAE.build(spec.model, spec.objective)
    n = sum(p.numel() for p in model.parameters())
    return 4 * n * (1 + MOMENTS)


def _free(path: Path) -> tuple[int, str]:
    where = mount_point(path)
    return shutil.disk_usage(where).free, where


def _ended(exp_dir: Path) -> int:
    """Trials of an earlier run of this sweep that ended (their checkpoints are on disk already)."""
    n = 0
    for f in (exp_dir / "starts").glob("*.jsonl"):
        lines = f.read_text().splitlines()
        n += bool(lines) and '"end"' in lines[-1]
    return n


def estimate(params, cells, data_dir: str = "") -> dict[str, int]:
    from pipeline.sweep.search import trial_spec

    sizes = [checkpoint_bytes(trial_spec(params, c, {}, data_dir)) for c in cells]
    per_trial = [s + PER_TRIAL_FILES for s in sizes for _ in range(params.sweep.trials_per_cell)]
    running = max(1, params.sweep.max_concurrent_trials or params.cluster.num_cpus or 1)
    return {"per_trial": per_trial, "largest": max(sizes) + PER_TRIAL_FILES, "running": running}


def check_space(params, cells, exp_dir: Path | None) -> None:
    """Refuse to start a sweep whose checkpoints and Ray state would not fit (with the margin).
    exp_dir None: the storage is an object store (pipeline.infra.storage), whose space is not
    this machine's to measure; the temporary directory, where each checkpoint is built, still is."""
    margin = params.sweep.disk_margin
    if margin == 0:
        return
    est = estimate(params, cells)
    todo = sorted(est["per_trial"], reverse=True)[_ended(exp_dir) if exp_dir else 0:]
    need_storage = margin * (sum(todo) + est["running"] * est["largest"])
    need_tmp = margin * est["running"] * est["largest"]
    checks = [(need_tmp, Path(tempfile.gettempdir()), "the temporary directory (TMPDIR)")]
    if exp_dir is not None:
        checks.insert(0, (need_storage, exp_dir, "sweep.storage_path"))
    for need, path, what in checks:
        free, where = _free(path)
        if need > free:
            raise SpaceError(
                f"no space left on {where} for this sweep: {what} needs about {need / 2**20:.0f} MiB "
                f"({len(todo)} trials' checkpoints and Ray state x sweep.disk_margin {margin:g}), "
                f"{free / 2**20:.0f} MiB free; free space, move {what}, or lower sweep.disk_margin")


def verify_checkpoint(base: Path, cell: str, entry: dict[str, Any]) -> None:
    """A finished trial's checkpoint must be the one written (size and sha256 in best.json)."""
    if not entry.get("checkpoint") or not entry.get("checkpoint_sha256"):
        return  # a sweep from before digests were recorded: nothing to compare with
    path = base / entry["checkpoint"] / "checkpoint.pt"
    got = file_digest(path) if path.is_file() else {"bytes": 0, "sha256": "missing"}
    if got["sha256"] != entry["checkpoint_sha256"]:
        raise SpaceError(
            f"cell {cell} ({entry.get('label')}): checkpoint {entry['checkpoint']}/checkpoint.pt is damaged "
            f"({got['bytes']} bytes, sha256 {got['sha256'][:12]}; written as {entry.get('checkpoint_bytes')} "
            f"bytes, sha256 {entry['checkpoint_sha256'][:12]}): retrain just this cell with "
            f"`infovae retrain --cell {cell}`, then `dvc repro`")


def check_complete(sweep_json: Path) -> None:
    """Refuse the outputs of a sweep that did not finish its work (pipeline.sweep.outcome)."""
    try:
        sweep = json.loads(sweep_json.read_text())
    except (OSError, ValueError):
        return  # the reader reports a missing or damaged file itself
    if sweep.get("complete") is False:
        raise SpaceError(f"{sweep_json.name}: the sweep is incomplete: {sweep.get('incomplete')}")
