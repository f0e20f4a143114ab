"""The report's inputs: the sweep's trials and best-trial tables, the evaluation's metrics and
training histories, read once, checked, and queried by grid (experiment) and cell."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import PipelineError

# File names of the sweep (pipeline.sweep.run) and evaluate (pipeline.evaluation.study) stages.
from pipeline.infra.layout import (  # noqa: F401
    BEST,
    HISTORY,
    IMAGES,
    METRICS,
    PER_IMAGE_NLL,
    PLAN,
    RECONSTRUCTIONS,
    SAMPLES,
    SWEEP,
    TRIALS,
)
from pipeline.params.vocab import AXIS_KEYS
from pipeline.report.doc import missing

EVALUATED = "EVALUATED"


class ReportError(PipelineError):
    pass


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _check(path: Path, base: Path, stage: str) -> None:
    if not path.is_file():
        raise ReportError(f"missing {_rel(path, base)}: run the {stage} stage first (dvc repro {stage})")


def read_json(path: Path, base: Path, stage: str) -> dict[str, Any]:
    _check(path, base, stage)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ReportError(f"cannot read {_rel(path, base)} ({type(err).__name__}: {err}); "
                          f"rerun the {stage} stage") from None
    if not isinstance(data, dict):
        raise ReportError(f"{_rel(path, base)}: expected a JSON object, got {type(data).__name__}")
    return data


def read_table(path: Path, base: Path, stage: str, required: tuple[str, ...]) -> pd.DataFrame:
    _check(path, base, stage)
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise ReportError(f"cannot read {_rel(path, base)} ({type(err).__name__}: {err}); "
                          f"rerun the {stage} stage") from None
    absent = [c for c in required if c not in df.columns]
    if absent and len(df):
        raise ReportError(f"{_rel(path, base)} lacks the columns {absent}: written by an older "
                          f"pipeline? rerun the {stage} stage")
    for c in absent:
        df[c] = pd.Series(dtype="object")
    return df


def _grid_lists(series: pd.Series) -> list[list[str]]:
    return [[g for g in str(v).split(",") if g] if not missing(v) else [] for v in series]


@dataclass
class StudyInputs:
    base: Path
    sweep: dict[str, Any]
    best: dict[str, Any]
    trials: pd.DataFrame
    metrics: pd.DataFrame
    history: pd.DataFrame
    images: Path
    mlflow_ui: str | None = None  # the MLflow UI's base URL: run ids become links to their pages
    per_image: pd.DataFrame | None = None  # per_image_nll.parquet; None: an older results dir
    eval_plan: dict[str, Any] | None = None  # the evaluate stage's plan (pipeline.evaluation.plan)

    @property
    def grids(self) -> dict[str, list[str]]:
        """The sweep's grids (name -> axes); from the tables' grid names for an older sweep.json."""
        declared = self.sweep.get("grids")
        if isinstance(declared, dict):
            return declared
        lists = _grid_lists(self.metrics["grids"]) + _grid_lists(self.trials["grids"])
        names = {g for gs in lists for g in gs}
        return {g: [] for g in sorted(names)}

    def in_grid(self, grid: str) -> pd.DataFrame:
        """metrics.parquet rows (one per cell, evaluated or not) of one grid."""
        mask = [grid in gs for gs in _grid_lists(self.metrics["grids"])]
        return self.metrics[mask]

    def evaluated(self, grid: str) -> pd.DataFrame:
        rows = self.in_grid(grid)
        return rows[rows["status"] == EVALUATED]

    def setting(self, row: dict[str, Any], key: str) -> Any:
        """A cell's divergence, alpha or lambda: from its metrics row, else (a cell that failed, or an
        older table) from the cell's overrides in best.json."""
        v = row.get(key)
        if missing(v):
            v = (self.best.get(row["cell"]) or {}).get("overrides", {}).get(AXIS_KEYS[key])
        return None if missing(v) else v

    def trial(self, trial_id: Any) -> dict[str, Any]:
        if missing(trial_id):
            return {}
        hit = self.trials[self.trials["trial_id"] == trial_id]
        return hit.iloc[0].to_dict() if len(hit) else {}

    def spec(self, trial_id: Any) -> dict[str, Any]:
        raw = self.trial(trial_id).get("spec")
        try:
            return json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            return {}

    def history_of(self, cell: str) -> pd.DataFrame:
        if "epoch" not in self.history.columns:
            return self.history.iloc[0:0]
        return self.history[self.history["cell"] == cell].sort_values("epoch")

    def last_epoch(self, cell: str, key: str) -> Any:
        h = self.history_of(cell)
        if key in h.columns:
            values = h[key].dropna()
            if len(values):
                return float(values.iloc[-1])
        return None

    def image(self, cell: str, name: str) -> Path | None:
        path = self.images / cell / name
        return path if path.is_file() else None

    def label_counts(self) -> list[int]:
        """The semi-supervised label counts measured (columns ss_error_<n>)."""
        found = [re.fullmatch(r"ss_error_(\d+)", c) for c in self.metrics.columns]
        return sorted(int(m.group(1)) for m in found if m)


def load_inputs(base: Path, sweep_dir: str, eval_dir: str) -> StudyInputs:
    sweep_path, eval_path = base / sweep_dir, base / eval_dir
    return StudyInputs(
        base=base,
        sweep=read_json(sweep_path / SWEEP, base, "sweep"),
        best=read_json(sweep_path / BEST, base, "sweep"),
        trials=read_table(sweep_path / TRIALS, base, "sweep", ("trial_id", "cell", "status", "grids")),
        metrics=read_table(eval_path / METRICS, base, "evaluate",
                           ("cell", "cell_label", "grids", "status", "method", "trial_id")),
        history=read_table(eval_path / HISTORY, base, "evaluate", ("cell",)),
        images=eval_path / IMAGES,
        per_image=(read_table(eval_path / PER_IMAGE_NLL, base, "evaluate",
                              ("cell", "split", "estimator", "image", "image_digest", "nll"))
                   if (eval_path / PER_IMAGE_NLL).is_file() else None),
        eval_plan=(read_json(eval_path / PLAN, base, "evaluate") if (eval_path / PLAN).is_file()
                   else None),
    )


def column(df: pd.DataFrame, key: str) -> list[Any]:
    """A column as a list, None where the column or the value is missing."""
    if key not in df.columns:
        return [None] * len(df)
    return [None if missing(v) else v for v in df[key].tolist()]
