"""The evaluate stage: every grid cell's best trial measured, tabled, logged to its MLflow run.

Inputs: results/sweep/best.json (the best trial per cell and its checkpoint) and the prepared
data. Outputs (results/eval/, DVC outs): metrics.parquet (one row per cell: the cell, its
trial, every metric of pipeline.evaluation.evaluate), history.parquet (the best trials'
per-epoch training metrics, for the over-training figures), images/<cell>/ (their sample and
reconstruction grids), summary.json (DVC metrics) and plots/*.csv (DVC plots).

Each evaluation is cached under results/eval/cache by the checkpoint's digest and the
evaluate params, so an interrupted or repeated stage does not measure a checkpoint twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.evaluation.evaluate import evaluate_checkpoint
from pipeline.infra import atomic, tracking
from pipeline.infra.errors import PipelineError
from pipeline.infra.layout import BEST, CACHE, HISTORY, IMAGES, METRICS, RECONSTRUCTIONS, SAMPLES
from pipeline.params.evaluate import EvaluateParams
from pipeline.params.load import Params
from pipeline.params.vocab import method_name
from pipeline.sweep.space import check_complete, verify_checkpoint
from pipeline.train import checkpoint as ckpt


class EvaluationError(PipelineError):
    pass


def _digest(path: Path, params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_best(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EvaluationError(f"missing {path}: run the sweep stage first (dvc repro sweep)")
    return json.loads(path.read_text())


def history_rows(cell: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"cell": cell, **{k: float(v) for k, v in h.items()}} for h in state.get("history", [])]


def evaluate_study(params: Params, base_dir: str | Path = ".", log=print) -> dict[str, Any]:
    base = Path(base_dir).resolve()
    best = load_best(base / params.sweep.out_dir / BEST)
    check_complete(base / params.sweep.out_dir / "sweep.json")  # an interrupted sweep is not evaluated
    data_dir = base / params.data.out_dir
    out = base / params.evaluate.out_dir
    cache = out / CACHE
    cache.mkdir(parents=True, exist_ok=True)
    # What changes a measurement keys its cache; where and how many at once does not.
    eval_params = params.evaluate.model_dump(exclude={"out_dir", "max_concurrent", "gpus_per_cell"})
    # The classifier cache is named relative to the repository, wherever a worker runs.
    run_params = params.evaluate.model_copy(update={"classifier": params.evaluate.classifier.model_copy(
        update={"path": str(base / params.evaluate.classifier.path)})})
    start = time.perf_counter()
    metas, cached, todo = {}, {}, []
    for n, (cell, entry) in enumerate(best.items(), 1):
        metas[cell] = {"cell": cell, "cell_label": entry["label"], "grids": ",".join(entry["grids"]),
                       "trial_id": entry.get("trial_id"), "trial_status": entry.get("status"),
                       "mlflow_run_id": entry.get("mlflow_run_id"), **_method(entry["overrides"], params)}
        if not entry.get("checkpoint"):
            log(f"[{n}/{len(best)}] {entry['label']}: no usable trial ({entry.get('errors')})")
            continue
        verify_checkpoint(base, cell, entry)  # damaged after it was written: named, with the fix
        key = _digest(base / entry["checkpoint"] / ckpt.FILENAME, eval_params)
        path = cache / f"{key}.json"
        if path.is_file():
            cached[cell] = json.loads(path.read_text())
            log(f"[{n}/{len(best)}] {entry['label']}: cached")
        else:
            decoder = entry["overrides"].get("model.decoder", params.model.decoder)
            todo.append(Job(cell, f"[{n}/{len(best)}] {entry['label']}", entry["checkpoint"], path,
                            autoregressive=decoder == "pixelcnn"))
    fresh = run_jobs(todo, params, run_params, base, data_dir, log)
    rows, history = [], []
    client = None
    with atomic.replace_dir(out / IMAGES) as images:
        for cell, entry in best.items():
            meta = metas[cell]
            if not entry.get("checkpoint"):
                rows.append({**meta, "status": "FAILED", "error": "; ".join(entry.get("errors") or [])})
                continue
            result = cached.get(cell) or fresh[cell]
            directory = base / entry["checkpoint"]
            rows.append({**meta, **result, "status": "EVALUATED", "error": None})
            history.extend(history_rows(cell, ckpt.load(directory / ckpt.FILENAME)))
            for name in (SAMPLES, RECONSTRUCTIONS):
                if (directory / name).is_file():
                    (images / cell).mkdir(exist_ok=True)
                    shutil.copy2(directory / name, images / cell / name)
            if entry.get("mlflow_run_id"):
                client = client or tracking.client(params.tracking, base)
                _log_to_run(client, entry["mlflow_run_id"], result)
    _write_tables(out, rows, history)
    summary = write_summary(base / params.evaluate.summary, rows)
    write_plots(base / params.evaluate.plots_dir, rows, history)
    return {"cells": len(rows), "evaluated": sum(r["status"] == "EVALUATED" for r in rows),
            "evaluated_now": len(fresh), "failed": sum(r["status"] == "FAILED" for r in rows),
            "seconds": round(time.perf_counter() - start, 1), "summary": len(summary)}


@dataclass(frozen=True)
class Job:
    """One cell to evaluate: its checkpoint (relative to the repository) and its cache file."""

    cell: str
    label: str
    checkpoint: str
    cache: Path
    autoregressive: bool = False  # a PixelCNN decoder: the costly evaluations (sampling, IS)


def evaluate_job(job: Job, params: EvaluateParams, base: Path, data_dir: Path, log=print,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate one cell and cache its row (with `extra`) at once, atomically: an interrupted
    stage keeps every cell it finished."""
    result = evaluate_checkpoint(base / job.checkpoint, params, data_dir, log=lambda m: log(f"    {m}"))
    result["checkpoint"] = job.checkpoint  # relative: no host paths
    result.update(extra or {})
    result = _finite(result)
    atomic.write_json(job.cache, result)
    return result


def run_jobs(jobs: list[Job], params: Params, run_params: EvaluateParams, base: Path, data_dir: Path,
             log=print) -> dict[str, dict[str, Any]]:
    """Every job's row by cell: in this process one after another (evaluate.max_concurrent 1),
    else as Ray tasks, at most max_concurrent at a time, on the sweep's Ray (local or cluster)."""
    if not jobs:
        return {}
    if params.evaluate.max_concurrent == 1:
        out = {}
        for job in jobs:
            log(f"{job.label}: evaluating {job.checkpoint}")
            out[job.cell] = evaluate_job(job, run_params, base, data_dir, log)
        return out
    from pipeline.evaluation.remote import run_on_ray

    return run_on_ray(jobs, params, run_params, base, data_dir, log)


def _method(overrides: dict[str, Any], params: Params) -> dict[str, Any]:
    get = overrides.get
    divergence = get("objective.divergence", params.objective.divergence)
    alpha = get("objective.alpha", params.objective.alpha)
    lam = get("objective.lambda", params.objective.lambda_)
    return {"method": method_name(divergence, alpha, lam)}


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    import math

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _log_to_run(client, run_id: str, result: dict[str, Any]) -> None:
    numeric = {f"eval_{k}": v for k, v in result.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("seconds")}
    tracking.log_metrics(client, run_id, numeric, step=0)


def _write_tables(out: Path, rows: list[dict], history: list[dict]) -> None:
    atomic.write_parquet(out / METRICS, rows)
    atomic.write_parquet(out / HISTORY, history)


SUMMARY_KEYS = ("test_nll", "test_nll_stderr", "train_nll", "mmd", "logdet_cov", "mi", "active_units",
                "ss_error_100", "ss_error_1000", "class_mismatch")


def write_summary(path: Path, rows: list[dict]) -> dict[str, Any]:
    """DVC metrics: per cell label, the headline numbers (dvc metrics show / diff)."""
    summary = {}
    for r in rows:
        key = r["cell_label"].replace(" ", "_")
        summary[key] = {k: r[k] for k in SUMMARY_KEYS if r.get(k) is not None} or {"status": r["status"]}
    atomic.write_json(path, summary)
    return summary


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.BytesIO()
    if rows:
        pacsv.write_csv(pa.Table.from_pylist(rows), buf)
    atomic.write_bytes(path, buf.getvalue())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def write_plots(directory: Path, rows: list[dict], history: list[dict]) -> None:
    """CSVs that `dvc plots show` renders (declared in dvc.yaml); a directory of CSVs is drawn
    as one series per file. The directory is replaced as a whole."""
    ok = [r for r in rows if r["status"] == "EVALUATED"]
    by_cell = {r["cell"]: r for r in ok}
    with atomic.replace_dir(directory) as tmp:
        # Every declared plots path must exist for DVC, even when this sweep had no such data.
        for sub in ("training", "latent_dim"):
            (tmp / sub).mkdir()
        _csv(tmp / "nll.csv", [{"cell": r["cell_label"], "test_nll": r.get("test_nll")} for r in ok])
        for cell, r in by_cell.items():
            points = [{"epoch": int(h["epoch"]), "val_mi": h["val_mi"], "val_mmd": h.get("val_mmd")}
                      for h in history if h["cell"] == cell and h.get("val_mi") is not None]
            if points:
                _csv(tmp / "training" / f"{_slug(r['cell_label'])}.csv", points)
        for method in sorted({r["method"] for r in ok}):
            mine = sorted((r for r in ok if r["method"] == method), key=lambda r: r["latent_dim"])
            if len({r["latent_dim"] for r in mine}) > 1:
                _csv(tmp / "latent_dim" / f"{_slug(method)}.csv",
                     [{"latent_dim": r["latent_dim"], "mmd": r.get("mmd"), "logdet_cov": r.get("logdet_cov")}
                      for r in mine])
