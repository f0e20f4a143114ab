"""Run the sweep of params.yaml: validate, connect, fit (or resume), summarise.

Everything that can be checked is checked before any trial starts: the grid cells and search
space against the schema, the prepared data, the MLflow store, the Ray cluster and whether
one trial's resources fit on a node. The Ray experiment directory is named after a
fingerprint of everything that defines the sweep, so rerunning the same sweep resumes it
(finished trials are not rerun) and a changed sweep starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pipeline.data.splits import content_digest, load_split
from pipeline.infra import atomic, tracking
from pipeline.infra.cluster import check_resources, connect, gpus_per_trial
from pipeline.infra.layout import BEST, SWEEP, TRIALS
from pipeline.params.load import Params, ParamsError
from pipeline.params.stages import StageParams, stage_params
from pipeline.sweep.atomic_fs import flush_deferred, prune_stale_checkpoints, storage_filesystem
from pipeline.sweep.context import annotate_parent
from pipeline.sweep.grid import Cell, expand
from pipeline.sweep.logger import (
    PARENT_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    MLflowLogger,
    error_reason,
    is_metric,
    trial_status,
)
from pipeline.sweep.plan import announce
from pipeline.sweep.progress import PlanReporter, trial_dirname, use_table_reporter
from pipeline.sweep.search import CellSearcher, trial_spec
from pipeline.sweep.sysmetrics import MonitorSpec

FINGERPRINT_TAG = "infovae.fingerprint"
ORPHAN_TAG = "infovae.orphaned"


def fingerprint(params: Params, cells: list[Cell], data_dir: str | Path) -> str:
    """The study's identity: what its cells compute, how they are searched and scheduled, and
    the content of the data they train on. Nothing that says where or how fast (threads,
    CPUs per trial, mirrors, time-outs, paths) enters it, so changing such a setting resumes
    the same Ray experiment, where every finished trial stays finished."""
    sweep = params.sweep
    search = {"search": {k: v.model_dump() for k, v in sorted(sweep.search.items())},
              "trials_per_cell": sweep.trials_per_cell, "startup_trials": sweep.startup_trials,
              "seed": sweep.seed, "metric": sweep.metric, "scheduler": sweep.scheduler}
    if sweep.scheduler == "asha":
        search["asha"] = sweep.asha.model_dump()
    blob = json.dumps({"cells": sorted(c.id for c in cells), **search, "data": content_digest(data_dir)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def preflight(params: Params, base: Path) -> tuple[list[Cell], str]:
    """All checks that need no cluster: cells, search space, prepared data."""
    cells = expand(params)
    data_dir = str((base / params.data.out_dir).resolve())
    for split in ("train", "validation"):  # fully verified (checksums): a damaged split stops here
        load_split(data_dir, split)
    for key, dim in params.sweep.search.items():
        values = dim.choices if dim.type == "categorical" else [dim.low, dim.high]
        for value in values:
            if dim.type == "int":
                value = int(value)
            try:
                trial_spec(params, cells[0], {key: value}, data_dir)
            except ParamsError as err:
                raise ParamsError(f"sweep.search.{key}: value {value!r} is invalid: {err}") from None
    return cells, data_dir


def _parent_run(client, exp_id: str, params: Params, fp: str, n_cells: int) -> str:
    name = params.sweep.name
    found = tracking.retry(client.search_runs, [exp_id],
                           f"tags.`{SWEEP_TAG}` = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fp}'")
    if found:
        run_id = found[0].info.run_id
        tracking.retry(client.update_run, run_id, status="RUNNING")
        return run_id
    run = tracking.retry(client.create_run, exp_id, run_name=f"sweep {name}",
                         tags={SWEEP_TAG: name, FINGERPRINT_TAG: fp, "infovae.cells": str(n_cells)})
    annotate_parent(client, run.info.run_id, params)
    return run.info.run_id


def _relative(path: str | None, base: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return path


def summarise(trials: list, runs: dict[str, str], cells: list[Cell], epochs: int, metric: str,
              base: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    for t in trials:
        cfg, last = t.config, dict(t.last_result or {})
        status = trial_status(t, epochs)
        spec = cfg["spec"]
        row = {
            "trial_id": t.trial_id, "cell": cfg["cell"], "cell_label": cfg["cell_label"],
            "grids": ",".join(cfg["grids"]), "status": status,
            "error": error_reason(str(t.get_error())) if status == "FAILED" else None,
            "epochs_done": int(last.get("epoch", 0)), "mlflow_run_id": runs.get(t.trial_id),
            "checkpoint": _relative(t.checkpoint.path if t.checkpoint else None, base),
            "divergence": spec["objective"]["divergence"], "alpha": spec["objective"]["alpha"],
            "lambda": spec["objective"]["lambda"], "latent_dim": spec["model"]["latent_dim"],
            "encoder": spec["model"]["encoder"], "decoder": spec["model"]["decoder"],
            "train_size": spec["train"]["train_size"], "lr": spec["train"]["lr"],
            "suggested": json.dumps(cfg.get("suggested", {}), sort_keys=True),
            "node_id": last.get("node_id"), "device": last.get("device"), "gpu_ids": last.get("gpu_ids"),
            "cuda_visible_devices": last.get("cuda_visible_devices"),
            "torch_threads": last.get("torch_threads"),
            "spec": json.dumps({k: v for k, v in spec.items() if k != "data_dir"}, sort_keys=True),
        }
        row.update({k: float(v) for k, v in last.items() if is_metric(k)})
        rows.append(row)
    best: dict[str, Any] = {}
    for cell in cells:
        mine = [r for r in rows if r["cell"] == cell.id]
        usable = [r for r in mine if r["status"] != "FAILED" and r.get(metric) is not None]
        finished = [r for r in usable if r["status"] == "FINISHED"] or usable
        entry = {"label": cell.label, "grids": list(cell.grids), "overrides": cell.overrides,
                 "method": cell.method, "decoder": cell.decoder,
                 "trials": len(mine), "failed": sum(r["status"] == "FAILED" for r in mine)}
        if finished:
            top = min(finished, key=lambda r: r[metric])
            entry.update(trial_id=top["trial_id"], status=top["status"], metric=metric,
                         value=top[metric], checkpoint=top["checkpoint"], mlflow_run_id=top["mlflow_run_id"])
        else:
            entry.update(trial_id=None, status="FAILED",
                         errors=sorted({r["error"] for r in mine if r["error"]}))
        best[cell.id] = entry
    return rows, best


def write_outputs(out_dir: Path, rows: list[dict], best: dict, sweep: dict) -> None:
    atomic.write_parquet(out_dir / TRIALS, rows)
    atomic.write_json(out_dir / BEST, best)
    atomic.write_json(out_dir / SWEEP, sweep)


def run_sweep(params: Params | StageParams, base_dir: str | Path = ".") -> dict[str, Any]:
    """The sweep stage over params (its view: pipeline.params.stages)."""
    from ray import tune

    from pipeline.sweep.scheduler import PerCellASHA
    from pipeline.sweep.trainable import AUDIT_DIR, run_trial

    params = params if isinstance(params, StageParams) else stage_params(params, "sweep")
    base = Path(base_dir).resolve()
    sweep = params.sweep
    clock = time.perf_counter()
    cells, data_dir = preflight(params, base)
    seconds = {"preflight": time.perf_counter() - clock}
    clock = time.perf_counter()
    client = tracking.client(params.tracking, base)
    exp_id = tracking.experiment_id(client, params.tracking, base)
    seconds["mlflow_start"] = time.perf_counter() - clock
    clock = time.perf_counter()
    connect(params.cluster)
    check_resources(sweep)
    seconds["ray_start"] = time.perf_counter() - clock
    fp = fingerprint(params, cells, data_dir)
    storage = (base / sweep.storage_path).resolve()
    exp_name = f"{sweep.name}-{fp}"
    parent = _parent_run(client, exp_id, params, fp, len(cells))
    gpus = gpus_per_trial(sweep)
    slots = concurrency(sweep, gpus)
    plan = announce(params, cells, data_dir, slots, client, parent, base / sweep.out_dir)
    monitor = MonitorSpec(params.tracking, str(base), parent, params.tracking.system_metrics_s)
    trainable = tune.with_resources(tune.with_parameters(run_trial, monitor=monitor),
                                    {"cpu": sweep.cpus_per_trial, "gpu": gpus})
    use_table_reporter()
    clock = time.perf_counter()
    try:
        fs = storage_filesystem(str(storage))  # atomic writes: a kill cannot truncate Tune's state
        if tune.Tuner.can_restore(str(storage / exp_name), storage_filesystem=fs):
            print(f"resuming sweep {exp_name} from {storage}")
            tuner = tune.Tuner.restore(str(storage / exp_name), trainable=trainable,
                                       resume_unfinished=True, resume_errored=False, restart_errored=False,
                                       storage_filesystem=fs)
        else:
            metric, budget = sweep.metric, sweep.trials_per_cell
            scheduler = (PerCellASHA(metric, "min", params.train.epochs, sweep.asha.grace_period,
                                     sweep.asha.reduction_factor) if sweep.scheduler == "asha" else None)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=CellSearcher(params, cells, data_dir, metric,
                                            audit_dir=str(storage / exp_name / AUDIT_DIR)),
                    scheduler=scheduler,
                    num_samples=len(cells) * budget, max_concurrent_trials=slots,
                    metric=metric, mode="min", reuse_actors=True, trial_dirname_creator=trial_dirname),
                run_config=tune.RunConfig(
                    name=exp_name, storage_path=str(storage), storage_filesystem=fs,
                    callbacks=[MLflowLogger(params.tracking, str(base), parent, params.train.epochs)],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    failure_config=tune.FailureConfig(max_failures=sweep.max_failures), verbose=1,
                    progress_reporter=PlanReporter(plan, list(sweep.search))))
        grid = tuner.fit()
        seconds["fit"] = time.perf_counter() - clock
        flush_deferred()
    except BaseException:
        tracking.terminate(client, parent, "KILLED" if _interrupted() else "FAILED")
        raise
    trials = grid._experiment_analysis.trials
    for t in trials:  # checkpoints a killed session was to delete
        if t.checkpoint is not None:
            prune_stale_checkpoints(Path(t.checkpoint.path).parent, t.checkpoint.path)
    runs = _reconcile(client, exp_id, parent, trials, params.train.epochs)
    rows, best = summarise(trials, runs, cells, params.train.epochs, sweep.metric, base)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("FINISHED", "KILLED", "FAILED")}
    write_outputs(base / sweep.out_dir, rows, best, {
        "name": sweep.name, "experiment": exp_name, "fingerprint": fp, "parent_run_id": parent,
        "mlflow_experiment": params.tracking.experiment, "cells": len(cells), "trials": len(rows),
        **{k.lower(): v for k, v in counts.items()}, "epochs": params.train.epochs,
        "grids": {name: list(axes) for name, axes in sweep.grids.items()},
        "plan": {k: plan[k] for k in ("sweep_s", "sweep_max_s", "evaluate_s", "total_s", "line")},
        "seconds": {k: round(v, 2) for k, v in seconds.items()}})
    tracking.log_metrics(client, parent, {f"trials_{k.lower()}": v for k, v in counts.items()}, step=0)
    tracking.log_files(client, parent, [base / sweep.out_dir / f for f in (TRIALS, BEST, SWEEP)], "sweep")
    tracking.terminate(client, parent, "FINISHED")
    return {"cells": len(cells), "trials": len(rows), **counts, "parent_run_id": parent,
            "experiment": exp_name, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def concurrency(sweep, gpus: float) -> int:
    """max_concurrent_trials, or as many trials as the cluster's CPUs and GPUs hold at once.

    Always explicit: with a custom searcher and no limit, Tune keeps a single trial pending,
    which serialises short trials behind the start-up of each trial's worker.
    """
    if sweep.max_concurrent_trials:
        return sweep.max_concurrent_trials
    import ray

    total = ray.cluster_resources()
    fits = total.get("CPU", 1.0) / sweep.cpus_per_trial
    if gpus > 0:
        fits = min(fits, total.get("GPU", 0.0) / gpus)
    return max(1, int(fits + 1e-9))


def _interrupted() -> bool:
    import sys

    return isinstance(sys.exc_info()[1], KeyboardInterrupt)


def _reconcile(client, exp_id: str, parent: str, trials: list, epochs: int) -> dict[str, str]:
    """Trial id -> run id; any child run still RUNNING gets its trial's terminal status.

    A sweep killed between suggesting a trial and Ray's next snapshot of its experiment state
    comes back without that trial (Ray suggests the cell again, under a new id): its run, if
    one was opened, is an orphan, ended KILLED and tagged so, never left RUNNING."""
    children = tracking.retry(client.search_runs, [exp_id], f"tags.`{PARENT_TAG}` = '{parent}'",
                              max_results=50000)
    by_trial = {r.data.tags.get(TRIAL_TAG): r for r in children}
    status = {t.trial_id: trial_status(t, epochs) for t in trials}
    for trial_id, run in by_trial.items():
        if trial_id not in status:
            tracking.set_tags(client, run.info.run_id, {ORPHAN_TAG: "trial lost when an interrupted sweep "
                                                        "was resumed; its cell was run again"})
        if run.info.status == "RUNNING":
            tracking.terminate(client, run.info.run_id, status.get(trial_id, "KILLED"))
    return {tid: r.info.run_id for tid, r in by_trial.items() if tid in status}
