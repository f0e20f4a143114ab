"""Run the sweep of params.yaml: validate, connect, fit (or resume), summarise.

Everything that can be checked is checked before any trial starts (pipeline.sweep.preflight:
the grid cells and search space against the schema, the prepared data; here: the MLflow
store, the Ray cluster and whether one trial's resources fit on a node). The Ray experiment
directory is named after the sweep's fingerprint, so rerunning the same sweep resumes it.
After the fit, pipeline.sweep.summary writes the trials table and each cell's best trial.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.data.splits import read_metadata
from pipeline.infra import storage as stores
from pipeline.infra import tracking
from pipeline.infra.cluster import check_resources, check_tracking, connect, gpus_per_trial
from pipeline.infra.layout import BEST, OPTUNA, SWEEP, TRIALS
from pipeline.params.grid import Cell
from pipeline.params.load import Params
from pipeline.params.stages import StageParams, stage_params
from pipeline.sweep.atomic_fs import flush_deferred, prune_stale_checkpoints, storage_filesystem
from pipeline.sweep.context import annotate_parent
from pipeline.sweep.logger import PARENT_TAG, SWEEP_TAG, TRIAL_TAG, MLflowLogger, backfill
from pipeline.sweep.models import export_best
from pipeline.sweep.outcome import INTERRUPTED, INTERRUPTED_TAG, MLFLOW_STATUS, Outcome, completion, outcome
from pipeline.sweep.plan import announce
from pipeline.sweep.preflight import fingerprint, preflight
from pipeline.sweep.progress import PlanReporter, trial_dirname, use_table_reporter
from pipeline.sweep.search import CellSearcher
from pipeline.sweep.signals import Interruption, SweepIncomplete, resume_command
from pipeline.sweep.space import check_space
from pipeline.sweep.summary import summarise, write_outputs
from pipeline.sweep.sysmetrics import MonitorSpec

FINGERPRINT_TAG = "infovae.fingerprint"
ORPHAN_TAG = "infovae.orphaned"


def _parent_run(client, exp_id: str, params: Params, fp: str, n_cells: int) -> str:
    name = params.sweep.name
    found = tracking.retry(client.search_runs, [exp_id],
                           f"tags.`{SWEEP_TAG}` = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fp}'")
    if found:
        run_id = found[0].info.run_id
        tracking.reopen(client, run_id)
        tracking.clear_stale_tags(client, found[0], keep={})  # why an earlier run of it ended
        return run_id
    run = tracking.retry(client.create_run, exp_id, run_name=f"sweep {name}",
                         tags={SWEEP_TAG: name, FINGERPRINT_TAG: fp, "infovae.cells": str(n_cells),
                               tracking.OWNER_TAG: tracking.owner()})
    annotate_parent(client, run.info.run_id, params)
    return run.info.run_id


def run_sweep(params: Params | StageParams, base_dir: str | Path = ".") -> dict[str, Any]:
    """Run (or resume) the sweep of params (the sweep stage's view: pipeline.params.stages);
    raise SweepIncomplete, after writing its outputs, when any trial was interrupted or failed
    for a reason outside the model (pipeline.sweep.outcome)."""
    params = params if isinstance(params, StageParams) else stage_params(params, "sweep")
    base = Path(base_dir).resolve()
    sweep = params.sweep
    clock = time.perf_counter()
    cells, data_dir = preflight(params, base)
    store = stores.resolve(sweep.storage_path, base)
    if store.remote:  # unreachable or read-only: said now, naming the store, before any training
        seconds_probe = stores.probe(store)
        print(f"storage: {store.uri} (answered in {seconds_probe:.1f} s)", flush=True)
    fp = fingerprint(params, cells, data_dir)
    exp_name = f"{sweep.name}-{fp}"
    check_space(params, cells, None if store.remote else Path(store.path) / exp_name)
    seconds = {"preflight": time.perf_counter() - clock}
    clock = time.perf_counter()
    client = tracking.client(params.tracking, base)
    exp_id = tracking.experiment_id(client, params.tracking, base)
    seconds["mlflow_start"] = time.perf_counter() - clock
    clock = time.perf_counter()
    connect(params.cluster)
    check_tracking(params.tracking.uri)
    check_resources(sweep)
    seconds["ray_start"] = time.perf_counter() - clock
    parent = _parent_run(client, exp_id, params, fp, len(cells))
    slots = concurrency(sweep, gpus_per_trial(sweep))
    plan = announce(params, cells, data_dir, slots, client, parent, base / sweep.out_dir)
    monitor = MonitorSpec(params.tracking, str(base), parent, params.tracking.system_metrics_s)
    use_table_reporter()
    clock = time.perf_counter()
    logger = MLflowLogger(params.tracking, str(base), parent)
    with Interruption() as signals:
        try:
            grid = _tuner(params, cells, data_dir, store, exp_name, logger, slots, monitor,
                          PlanReporter(plan, list(sweep.search)), base / sweep.out_dir / OPTUNA).fit()
            flush_deferred()
        except BaseException as err:
            clean = _abort(client, parent, logger, err, signals.name)
            if clean is not None:
                raise clean from None
            raise
    seconds["fit"] = time.perf_counter() - clock
    if logger.lost:  # Tune stopped and saved its state; the store cannot take the summary
        raise logger.lost
    trials = grid._experiment_analysis.trials
    for t in trials:  # checkpoints a killed session was to delete (an object store: Tune's own)
        if t.checkpoint is not None and not store.remote:
            prune_stale_checkpoints(Path(t.checkpoint.path).parent, t.checkpoint.path)
    expected = len(cells) * sweep.trials_per_cell
    outcomes = {t.trial_id: outcome(t, signals.name) for t in trials}
    signal_name = signals.name or (_tune_interrupt(outcomes, len(trials), expected) and "SIGINT")
    outcomes = {t.trial_id: outcome(t, signal_name) for t in trials}
    runs = _reconcile(client, exp_id, parent, trials, outcomes)
    rows, best = summarise(trials, runs, cells, outcomes, sweep.metric, base, store)
    done = completion(list(outcomes.values()), expected)
    counts = {s: done.counts[s] for s in ("FINISHED", "KILLED", "FAILED", INTERRUPTED)}
    summary = None if done.complete else done.paragraph(exp_name, signal_name, resume_command(base))
    write_outputs(base / sweep.out_dir, rows, best, {
        "name": sweep.name, "experiment": exp_name, "fingerprint": fp, "parent_run_id": parent,
        "mlflow_experiment": params.tracking.experiment, "mlflow_experiment_id": exp_id,
        "dataset": read_metadata(Path(data_dir) / "train.parquet").get("dataset"),  # as prepared
        "cells": len(cells), "trials": len(rows),
        **{k.lower(): v for k, v in counts.items()}, "epochs": params.train.epochs,
        "complete": done.complete, "incomplete": summary,
        "grids": {name: list(axes) for name, axes in sweep.grids.items()},
        "plan": {k: plan[k] for k in ("sweep_s", "sweep_max_s", "line")},
        "seconds": {k: round(v, 2) for k, v in seconds.items()}})
    models = export_best(best, base, base / sweep.out_dir)  # DVC carries them (dvc push)
    tracking.log_metrics(client, parent, {f"trials_{k.lower()}": v for k, v in counts.items()}, step=0)
    tracking.log_files(client, parent, [base / sweep.out_dir / f for f in (TRIALS, BEST, SWEEP)], "sweep")
    if summary:
        tag = {INTERRUPTED_TAG: summary} if signal_name else {"infovae.incomplete": summary}
        tracking.set_tags(client, parent, tag)
        tracking.terminate(client, parent, "KILLED" if signal_name else "FAILED")
        raise SweepIncomplete(summary, signal_name)
    tracking.terminate(client, parent, "FINISHED")
    return {"cells": len(cells), "trials": len(rows), **counts, **models, "parent_run_id": parent,
            "experiment": exp_name, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def _tuner(params: StageParams, cells: list[Cell], data_dir: str, store: stores.Location, exp_name: str,
           logger, slots: int, monitor: MonitorSpec, reporter, journal: Path):
    """A Tuner for the sweep: Tune's own restore when its state exists. An errored trial is
    resumed from its last checkpoint: a failure that is the model's own (TrainingDiverged)
    fails again at once (pipeline.sweep.trainable), any other was outside the model.

    Tune is given the store's filesystem and the path inside it: locally, the atomic one (a
    kill cannot truncate Tune's state); an object store's, where a PUT is whole already."""
    from ray import tune

    from pipeline.data.shipping import pack
    from pipeline.sweep.scheduler import PerCellASHA
    from pipeline.sweep.trainable import AUDIT_DIR, run_trial

    sweep = params.sweep
    gpus = gpus_per_trial(sweep)
    # The data travels in Ray's object store (pipeline.data.shipping): no node reads our disk.
    trainable = tune.with_resources(tune.with_parameters(run_trial, monitor=monitor, data=pack(data_dir)),
                                    {"cpu": sweep.cpus_per_trial, "gpu": gpus})
    fs = store.fs if store.remote else storage_filesystem(store.path)
    exp_path = f"{store.path}/{exp_name}"
    if tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
        print(f"resuming sweep {exp_name} from {store.uri}")
        tuner = tune.Tuner.restore(exp_path, trainable=trainable,
                                   resume_unfinished=True, resume_errored=True, restart_errored=False,
                                   storage_filesystem=fs)
        tuner._local_tuner._run_config.callbacks = [logger]  # this process's logger (its parent run)
        return tuner
    metric, budget = sweep.metric, sweep.trials_per_cell
    scheduler = (PerCellASHA(metric, "min", params.train.epochs, sweep.asha.grace_period,
                             sweep.asha.reduction_factor) if sweep.scheduler == "asha" else None)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=CellSearcher(params, cells, data_dir, metric,
                                    audit_dir=store.child(exp_name, AUDIT_DIR).uri,
                                    journal=str(journal), name=exp_name),
            scheduler=scheduler,
            num_samples=len(cells) * budget, max_concurrent_trials=slots,
            metric=metric, mode="min", reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=exp_name, storage_path=store.path, storage_filesystem=fs, callbacks=[logger],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures), verbose=1,
            progress_reporter=reporter))


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


def _tune_interrupt(outcomes: dict[str, Outcome], n: int, expected: int) -> bool:
    """Whether Tune's own SIGINT handler ended the fit (the only way it returns early): a fit
    that ran to its end has asked the searcher for every trial and ended each one."""
    return n < expected or any(o.status == INTERRUPTED for o in outcomes.values())


def _abort(client, parent: str, logger: MLflowLogger, err: BaseException,
           signal_name: str | None) -> BaseException | None:
    """The fit raised (a second Ctrl-C, a lost tracking server, a Tune error): close every run
    this process opened, KILLED and tagged, while the store still answers. Returns the error
    to show instead of Tune's chained traceback, if any (a lost tracking server: one line)."""
    if tracking.lost(err):  # the store is gone: the next stage on it closes these runs (close_orphans)
        uri = tracking.redact(client.tracking_uri)
        return logger.lost or tracking.TrackingError(f"MLflow tracking store {uri} stopped answering: "
                                                     f"{tracking.error_line(err)}")
    interrupted = signal_name or (isinstance(err, KeyboardInterrupt) and "SIGINT")
    reason = f"{interrupted}: the sweep was interrupted" if interrupted else f"{type(err).__name__}: {err}"
    tag = {INTERRUPTED_TAG: reason} if interrupted else {"infovae.error": reason[:4000]}
    try:
        for run_id in [*logger.open_runs(), parent]:
            tracking.set_tags(client, run_id, tag)
            tracking.terminate(client, run_id, "KILLED" if interrupted else "FAILED")
    except Exception as close_err:  # noqa: BLE001 - keep the original error; say what was not closed
        print(f"could not close the MLflow runs of this sweep ({type(close_err).__name__}); the next stage "
              "on this store closes them", flush=True)
    return None


def _reconcile(client, exp_id: str, parent: str, trials: list,
               outcomes: dict[str, Outcome]) -> dict[str, str]:
    """Trial id -> run id; every child run gets its trial's terminal status and reason tags,
    and the metrics a lost tracking server missed (from the trial's checkpoint history).

    A sweep killed between suggesting a trial and Ray's next snapshot of its experiment state
    comes back without that trial (Ray suggests the cell again, under a new id): its run, if
    one was opened, is an orphan, ended KILLED and tagged so, never left RUNNING."""
    children = tracking.retry(client.search_runs, [exp_id], f"tags.`{PARENT_TAG}` = '{parent}'",
                              max_results=50000)
    by_trial = {r.data.tags.get(TRIAL_TAG): r for r in children}
    ckpts = {t.trial_id: t.checkpoint.path if t.checkpoint else None for t in trials}
    for trial_id, run in by_trial.items():
        run_id = run.info.run_id
        got = outcomes.get(trial_id)
        if got is None:
            tracking.set_tags(client, run_id, {ORPHAN_TAG: "trial lost when an interrupted sweep "
                                               "was resumed; its cell was run again"})
            if run.info.status == "RUNNING":
                tracking.terminate(client, run_id, "KILLED")
            continue
        status = MLFLOW_STATUS[got.status]
        if run.info.status != status or any(run.data.tags.get(k) != v for k, v in got.tags().items()):
            backfill(client, run_id, ckpts.get(trial_id))
            tracking.clear_stale_tags(client, run, keep=got.tags())
            tracking.set_tags(client, run_id, got.tags())
            tracking.terminate(client, run_id, status)
    return {tid: r.info.run_id for tid, r in by_trial.items() if tid in outcomes}
