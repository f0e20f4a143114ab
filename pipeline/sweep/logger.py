"""MLflow logging of a sweep from the Ray driver: a parent run, one nested run per trial.

Logging from the driver (a Tune Callback) rather than inside trials avoids the known
Ray-MLflow integration bugs (docs/design.md §4): runs left RUNNING when ASHA stops a trial, lost
artifacts, duplicate runs on restart. MLflow is the source of truth for which run belongs to
which trial (tag `ray.trial_id`), so a restarted sweep reopens a trial's run instead of
creating a second one, and never logs an epoch twice.
"""

from __future__ import annotations

import re
from pathlib import Path

from ray.tune import Callback

from pipeline.infra import tracking
from pipeline.infra.layout import RECONSTRUCTIONS, SAMPLES
from pipeline.params.study import TrackingParams
from pipeline.sweep.context import annotate_trial
from pipeline.train.checkpoint import FILENAME as CHECKPOINT

TRIAL_TAG = "ray.trial_id"
SWEEP_TAG = "infovae.sweep"
PARENT_TAG = "mlflow.parentRunId"
METRIC_PREFIXES = ("train_", "val_")
METRIC_KEYS = ("epoch_seconds", "images_per_second")


def is_metric(key: str) -> bool:
    """The training run's own metrics (pipeline.train.trainer), not Ray's bookkeeping."""
    return key.startswith(METRIC_PREFIXES) or key in METRIC_KEYS


def error_reason(text: str | None) -> str:
    """The last 'SomeError: message' line of a traceback, e.g. the TrainingDiverged reason."""
    if not text:
        return "unknown error"
    pattern = re.compile(r"\s*[\w.]+(Error|Exception|Diverged)\b:")
    lines = [ln.strip() for ln in text.splitlines() if pattern.match(ln)]
    return lines[-1] if lines else text.strip().splitlines()[-1]


def trial_status(trial, epochs: int) -> str:
    """FINISHED (all epochs), KILLED (stopped early by the scheduler), FAILED (errored)."""
    if trial.status == "ERROR":
        return "FAILED"
    done = int((trial.last_result or {}).get("epoch", 0))
    return "FINISHED" if done >= epochs else "KILLED"


class MLflowLogger(Callback):
    def __init__(self, cfg: TrackingParams, base_dir: str, parent_run_id: str, epochs: int):
        self.cfg, self.base_dir, self.parent, self.epochs = cfg, base_dir, parent_run_id, epochs
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.logged: dict[str, int] = {}  # run id -> last epoch logged
        self._client = None

    def __getstate__(self):  # pickled into Ray's experiment state: no live client
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            self._client = tracking.client(self.cfg, self.base_dir)
        return self._client

    def _run_for(self, trial) -> str:
        if trial.trial_id in self.runs:
            return self.runs[trial.trial_id]
        c = self.client
        parent = tracking.retry(c.get_run, self.parent)
        found = tracking.retry(
            c.search_runs, [parent.info.experiment_id],
            f"tags.`{PARENT_TAG}` = '{self.parent}' and tags.`{TRIAL_TAG}` = '{trial.trial_id}'")
        if found:  # a restarted sweep: reopen this trial's run
            run_id = found[0].info.run_id
            tracking.retry(c.update_run, run_id, status="RUNNING")
            history = tracking.retry(c.get_metric_history, run_id, "val_loss")
            self.logged[run_id] = max((m.step for m in history), default=0)
        else:
            config = trial.config
            name = f"{config.get('cell_label', 'trial')} #{config.get('optuna_number', 0)}"
            run = tracking.retry(c.create_run, parent.info.experiment_id, run_name=name, tags={
                PARENT_TAG: self.parent, TRIAL_TAG: trial.trial_id,
                SWEEP_TAG: parent.data.tags.get(SWEEP_TAG, ""),
                "infovae.cell": config.get("cell", ""), "infovae.cell_label": config.get("cell_label", ""),
                "infovae.grids": ",".join(config.get("grids", [])),
            })
            run_id = run.info.run_id
            spec = {k: v for k, v in config["spec"].items() if k != "data_dir"}  # no host paths
            tracking.log_params(c, run_id, {**spec, "suggested": config.get("suggested", {})})
            annotate_trial(c, run_id, config, self.base_dir)
            self.logged[run_id] = 0
        self.runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self._run_for(trial)
        epoch = int(result.get("epoch", 0))
        if epoch <= self.logged.get(run_id, 0):
            return  # already logged before a restart
        metrics = {k: v for k, v in result.items() if is_metric(k)}
        tracking.log_metrics(self.client, run_id, metrics, step=epoch)
        self.logged[run_id] = epoch
        if epoch == 1:
            tracking.set_tags(self.client, run_id, {"infovae.device": result.get("device", ""),
                                                    "infovae.gpu_ids": result.get("gpu_ids", "")})

    def _finish(self, trial, status: str, reason: str | None = None) -> None:
        run_id = self._run_for(trial)
        c = self.client
        if reason:
            tracking.set_tags(c, run_id, {"infovae.error": reason})
        ckpt = trial.checkpoint
        if ckpt is not None and Path(ckpt.path).is_dir():
            d = Path(ckpt.path)
            tracking.log_files(c, run_id, [d / CHECKPOINT], "checkpoint")
            tracking.log_files(c, run_id, [d / SAMPLES, d / RECONSTRUCTIONS], "images")
        tracking.terminate(c, run_id, status)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, trial_status(trial, self.epochs))

    def on_trial_error(self, iteration, trials, trial, **info):
        err = trial.get_error()
        self._finish(trial, "FAILED", error_reason(str(err) if err else None))
