"""What an MLflow run says about itself: source and git commit, a description, dataset inputs,
and (for the sweep's parent) the grid and search that ran rather than the base params.

The tags are MLflow's own (mlflow.source.*, mlflow.note.content), so the UI shows them where
it shows runs started by `mlflow.start_run`; the runs here are created by MlflowClient in the
driver, which sets none of them by itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pipeline.params.load import Params
from pipeline.train.checkpoint import RunSpec

SPLIT_CONTEXT = {"train": "training", "validation": "validation", "test": "test"}
LOADER = "pipeline.train.from_run.load_run"


def _git(base: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=base, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_tags(base: Path, entry: str) -> dict[str, str]:
    """mlflow.source.* for a run started by the DVC stage script `entry`; the git commit when
    `base` is a git checkout, and whether tracked files differed from it (infovae.git_dirty)."""
    tags = {"mlflow.source.name": entry, "mlflow.source.type": "LOCAL"}
    commit = _git(base, "rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["infovae.git_dirty"] = str(bool(_git(base, "status", "--porcelain", "--untracked-files=no")))
        branch = _git(base, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
    return tags


def sweep_params(params: Params) -> dict[str, Any]:
    """The parent run's params: the sweep that ran (grids, search, budget, scheduler)."""
    s = params.sweep
    out: dict[str, Any] = {"profile": getattr(params, "profile", None) or "none", "sweep.name": s.name,
                           "sweep.trials_per_cell": s.trials_per_cell,
                           "sweep.startup_trials": s.startup_trials,
                           "sweep.seed": s.seed, "sweep.metric": s.metric, "sweep.scheduler": s.scheduler,
                           "train.epochs": params.train.epochs}
    if s.scheduler == "asha":
        out.update({"sweep.asha.grace_period": s.asha.grace_period,
                    "sweep.asha.reduction_factor": s.asha.reduction_factor})
    for grid, axes in s.grids.items():
        out[f"sweep.grids.{grid}"] = json.dumps(axes, sort_keys=True, default=str)
    for key, dim in s.search.items():
        out[f"sweep.search.{key}"] = json.dumps(dim.model_dump(exclude_none=True), sort_keys=True)
    return out


def parent_note(params: Params, n_cells: int, plan_text: str) -> str:
    grids = ", ".join(f"`{g}`" for g in params.sweep.grids)
    return (f"Sweep **{params.sweep.name}**: {n_cells} grid cells from the grids {grids}, "
            f"{params.sweep.trials_per_cell} Optuna trial(s) per cell, {params.train.epochs} epochs.\n\n"
            f"{plan_text}\n\nEach trial is a child run; the study report is attached under `report/`.")


def trial_note(config: dict[str, Any], run_id: str) -> str:
    method = RunSpec.from_dict(config["spec"]).method
    suggested = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(config.get("suggested", {}).items()))
    return (f"Cell **{config.get('cell_label', '')}** (`{config.get('cell', '')}`), method **{method}**, "
            f"grids: {', '.join(config.get('grids', []))}; Optuna trial #{config.get('optuna_number', 0)}"
            f"{' (' + suggested + ')' if suggested else ''}.\n\n"
            f"Load its model: `from {LOADER.rsplit('.', 1)[0]} import load_run; "
            f"model, spec = load_run(\"{run_id}\")`")


def dataset_inputs(data_dir: str | Path, base: Path, splits: tuple[str, ...] = ("train", "validation")):
    """MLflow DatasetInputs for the prepared Parquet splits a trial reads, with the pixel
    checksum prepare recorded as digest (the same value load_split verifies)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from pipeline.data.splits import read_metadata

    out = []
    for split in splits:
        path = Path(data_dir) / f"{split}.parquet"
        meta = read_metadata(path)
        try:
            shown = str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            shown = str(path)
        profile = {"num_rows": meta["rows"], "binarization": meta.get("binarization"),
                   "dataset": meta.get("dataset")}
        ds = Dataset(name=f"{meta.get('dataset', 'mnist')}-{split}", digest=meta["pixels_sha256"][:12],
                     source_type="local", source=json.dumps({"uri": shown}),
                     schema=json.dumps({"mlflow_colspec": [{"name": "pixels", "type": "binary"},
                                                                {"name": "label", "type": "integer"},
                                                                {"name": "index", "type": "integer"}]}),
                     profile=json.dumps(profile))
        out.append(DatasetInput(ds, tags=[InputTag("mlflow.data.context", SPLIT_CONTEXT[split])]))
    return out


_SOURCE: dict[str, dict[str, str]] = {}


def annotate_trial(client, run_id: str, config: dict[str, Any], base_dir: str | Path) -> None:
    """A new trial run's context: source tags, its description, its dataset inputs."""
    from pipeline.infra import tracking

    base = Path(base_dir)
    if "." not in _SOURCE:  # git once per driver, of the directory the stage runs in (as the parent's)
        _SOURCE["."] = source_tags(Path.cwd(), "stages/sweep.py")
    note = trial_note(config, run_id)
    tracking.set_tags(client, run_id, {**_SOURCE["."], "mlflow.note.content": note})
    data_dir = config["spec"].get("data_dir")
    if data_dir:
        tracking.retry(client.log_inputs, run_id, datasets=dataset_inputs(data_dir, base))


def annotate_parent(client, run_id: str, params: Params) -> None:
    """A new parent run: the sweep's params (grid, search, budget) and source tags."""
    from pipeline.infra import tracking

    tracking.log_params(client, run_id, sweep_params(params))
    tracking.set_tags(client, run_id, source_tags(Path.cwd(), "stages/sweep.py"))
