"""The evaluate stage: every grid cell's best trial measured, tabled, logged to its MLflow run.

Inputs: results/sweep/best.json (the best trial per cell and its checkpoint) and the prepared
data. Outputs (results/eval/, DVC outs): metrics.parquet (one row per cell: the cell, its
trial, every metric of pipeline.evaluation.evaluate), per_image_nll.parquet (every cell's NLL of
every test image, with the image's index and pixel digest: pipeline.evaluation.per_image),
history.parquet (the best trials'
per-epoch training metrics, for the over-training figures), images/<cell>/ (their sample and
reconstruction grids), summary.json (DVC metrics) and plots/*.csv (DVC plots).

Each evaluation is cached under results/eval/cache by the checkpoint's digest, the evaluate
settings that change results and the data's content, so an interrupted or repeated stage does
not measure a checkpoint twice, and new threads or devices measure nothing again.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.data.splits import content_digest, load_split
from pipeline.errors import PipelineError
from pipeline.evaluation.fetch import local_checkpoints
from pipeline.evaluation.jobs import Job, cache_key, evaluate_job
from pipeline.evaluation.outputs import write_plots, write_summary
from pipeline.evaluation.per_image import COLUMNS as PER_IMAGE_COLUMNS
from pipeline.evaluation.per_image import split_row, table_rows
from pipeline.evaluation.plan import announce
from pipeline.evaluation.progress import EvalProgress
from pipeline.evaluation.tracking_log import DIVERGED_TAG, STATUS_TAG, log_evaluation
from pipeline.infra import atomic, tracking
from pipeline.infra.layout import (
    BEST,
    CACHE,
    HISTORY,
    IMAGES,
    METRICS,
    PER_IMAGE_NLL,
    RECONSTRUCTIONS,
    SAMPLES,
)
from pipeline.params.evaluate import EvaluateParams
from pipeline.params.stages import StageParams, stage_params
from pipeline.sweep.space import check_complete, verify_checkpoint
from pipeline.train import checkpoint as ckpt
from pipeline.train.outcome import DIVERGED, diverged, likelihood_of


class EvaluationError(PipelineError):
    pass


def load_best(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EvaluationError(f"missing {path}: run the sweep stage first (dvc repro sweep)")
    return json.loads(path.read_text())


def history_rows(cell: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"cell": cell, **{k: float(v) for k, v in h.items()}} for h in state.get("history", [])]


def _meta(cell: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A cell's columns from best.json, where the sweep wrote what the cell is (its method and
    decoder from the cell's resolved spec), so a cell with no usable trial is still named."""
    return {"cell": cell, "cell_label": entry["label"], "grids": ",".join(entry["grids"]),
            "trial_id": entry.get("trial_id"), "trial_status": entry.get("status"),
            "mlflow_run_id": entry.get("mlflow_run_id"), "method": entry.get("method"),
            "decoder": entry.get("decoder")}


# A diverged cell's row keeps its last epoch's training metrics (what the rule read), for display.
TRAINING_FINAL = ("val_nelbo", "val_loss", "val_recon", "val_kl", "val_div")


def diverged_tags(reason: str) -> dict[str, str]:
    """The tags on a diverged cell's trial run: why, and that its evaluation was withheld."""
    return {DIVERGED_TAG: reason[:4000], STATUS_TAG: DIVERGED}


def evaluate_study(params: Any, base_dir: str | Path = ".", log=print) -> dict[str, Any]:
    """The evaluate stage over params (its view: pipeline.params.stages)."""
    params = params if isinstance(params, StageParams) else stage_params(params, "evaluate")
    base = Path(base_dir).resolve()
    best = load_best(base / params.sweep.out_dir / BEST)
    check_complete(base / params.sweep.out_dir / "sweep.json")  # an interrupted sweep is not evaluated
    data_dir = base / params.data.out_dir
    out = base / params.evaluate.out_dir
    cache = out / CACHE
    cache.mkdir(parents=True, exist_ok=True)
    best = local_checkpoints(best, base, out, log)  # those in an object store, copied here once
    # The classifier cache is named relative to the repository, wherever a worker runs.
    settings = params.evaluate.model_copy(update={"classifier": params.evaluate.classifier.model_copy(
        update={"path": str(base / params.evaluate.classifier.path)})})
    test_digest = content_digest(data_dir, ("test", "train"))
    start = time.perf_counter()
    cached, todo, states, why = {}, [], {}, {}
    for n, (cell, entry) in enumerate(best.items(), 1):
        if not entry.get("checkpoint"):
            log(f"[{n}/{len(best)}] {entry['label']}: no usable trial ({entry.get('errors')})")
            continue
        verify_checkpoint(base, cell, entry)  # damaged after it was written: named, with the fix
        # Only the history is kept (the weights are the jobs' to load).
        try:
            state = ckpt.load(base / entry["checkpoint"] / ckpt.FILENAME)
        except ckpt.CheckpointError:
            state = {}  # unreadable here: its job fails and names the cell (the rule cannot read it)
        states[cell] = {"history": state.get("history") or []}
        # A run that finished but learned nothing (pipeline.train.outcome): not measured, never
        # in a claim; the row says why, with its last epoch's training metrics.
        last = (states[cell]["history"] or [{}])[-1]
        why[cell] = diverged(last, likelihood=likelihood_of(state.get("spec")))
        if why[cell]:
            log(f"[{n}/{len(best)}] {entry['label']}: {DIVERGED}, not evaluated ({why[cell]})")
            continue
        grids = tuple(entry.get("grids") or ())
        key = cache_key(base / entry["checkpoint"] / ckpt.FILENAME, settings, test_digest, grids)
        path = cache / f"{key}.json"
        if path.is_file():
            cached[cell] = json.loads(path.read_text())
            log(f"[{n}/{len(best)}] {entry['label']}: cached")
        else:
            todo.append(Job(cell, f"[{n}/{len(best)}] {entry['label']}", entry["checkpoint"], path,
                            autoregressive=entry.get("decoder") == "pixelcnn", grids=grids))
    # The plan is made before any measurement, on the checkpoints to measure (none: nothing to
    # project, and a plan of an earlier run must not stand for this one).
    plan = announce(todo, settings, base, data_dir, out, log)
    fresh = run_jobs(todo, params, settings, base, data_dir, plan["evaluate_s_by_cell"], log)
    rows, history, per_image, models = [], [], [], {}
    client = example = None
    with atomic.replace_dir(out / IMAGES) as images:
        for cell, entry in best.items():
            meta = _meta(cell, entry)
            if not entry.get("checkpoint"):
                rows.append({**meta, "status": "FAILED", "error": "; ".join(entry.get("errors") or [])})
                continue
            directory = base / entry["checkpoint"]
            history.extend(history_rows(cell, states[cell]))
            if why[cell]:
                final = states[cell]["history"][-1]
                rows.append({**meta, **{k: final.get(k) for k in TRAINING_FINAL}, "status": DIVERGED,
                             "error": why[cell]})
                if entry.get("mlflow_run_id"):
                    client = client or tracking.client(params.tracking, base)
                    tracking.set_tags(client, entry["mlflow_run_id"], diverged_tags(why[cell]))
                continue
            result, values = split_row(cached.get(cell) or fresh[cell])
            per_image.extend(table_rows(cell, entry.get("trial_id"), values))
            rows.append({**meta, **result, "status": "EVALUATED", "error": None})
            for name in (SAMPLES, RECONSTRUCTIONS):
                if (directory / name).is_file():
                    (images / cell).mkdir(exist_ok=True)
                    shutil.copy2(directory / name, images / cell / name)
            if entry.get("mlflow_run_id"):
                client = client or tracking.client(params.tracking, base)
                log_evaluation(client, entry["mlflow_run_id"], result)
                example = example if example is not None else load_split(data_dir, "test", limit=2).images
                models[cell] = log_model(client, entry, cell, directory, base / params.sweep.out_dir, example)
    _write_tables(out, rows, history, per_image)
    summary = write_summary(base / params.evaluate.summary, rows, base / params.sweep.out_dir,
                            time.perf_counter() - start)
    write_plots(base / params.evaluate.plots_dir, rows, history)
    return {"cells": len(rows), "evaluated": sum(r["status"] == "EVALUATED" for r in rows),
            "evaluated_now": len(fresh), "failed": sum(r["status"] == "FAILED" for r in rows),
            "models": len(models),
            "diverged": sum(r["status"] == DIVERGED for r in rows),
            "seconds": round(time.perf_counter() - start, 1), "summary": len(summary)}


def log_model(client, entry: dict[str, Any], cell: str, directory: Path, sweep_dir: Path, example) -> str:
    """The cell's logged model (pipeline.evaluation.models), in its trial run's experiment."""
    from pipeline.evaluation.models import log_cell_model

    run = tracking.retry(client.get_run, entry["mlflow_run_id"])
    try:
        study = json.loads((sweep_dir / "sweep.json").read_text()).get("parent_run_id")
    except (OSError, ValueError):
        study = None
    return log_cell_model(client, run.info.experiment_id, run.info.run_id, directory, entry, cell, study,
                          example)


def run_jobs(jobs: list[Job], params: StageParams, settings: EvaluateParams, base: Path, data_dir: Path,
             plan: dict[str, float], log=print) -> dict[str, dict[str, Any]]:
    """Every job's row by cell: in this process one after another (evaluate.max_concurrent 1),
    else as Ray tasks, at most max_concurrent at a time, on the cluster section's Ray; `plan`:
    each cell's projected seconds (pipeline.evaluation.plan), for the progress lines."""
    if not jobs:
        return {}
    if params.evaluate.max_concurrent == 1:
        out = {}
        with EvalProgress(jobs, plan, log) as progress:
            for job in jobs:
                progress.start(job)
                out[job.cell] = evaluate_job(job, settings, base, data_dir, log)
                progress.finish(job)
        return out
    from pipeline.evaluation.remote import run_on_ray

    with EvalProgress(jobs, plan, log, slots=params.evaluate.max_concurrent) as progress:
        return run_on_ray(jobs, params, settings, base, data_dir, log, progress)


def _write_tables(out: Path, rows: list[dict], history: list[dict], per_image: list[dict]) -> None:
    atomic.write_parquet(out / METRICS, rows)
    atomic.write_parquet(out / HISTORY, history)
    # Always written (a DVC out), with its columns even when no cell has per-image values.
    if per_image:
        atomic.write_parquet(out / PER_IMAGE_NLL, per_image)
    else:
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.table({c: pa.array([], pa.null()) for c in PER_IMAGE_COLUMNS}), buf)
        atomic.write_bytes(out / PER_IMAGE_NLL, buf.getvalue())
