"""MLflow logging of a sweep from the Ray driver: a parent run, one nested run per trial.

Logging from the driver (a Tune Callback) rather than inside trials avoids the known
Ray-MLflow integration bugs (docs/design.md §4): runs left RUNNING when ASHA stops a trial, lost
artifacts, duplicate runs on restart. MLflow is the source of truth for which run belongs to
which trial (tag `ray.trial_id`), so a restarted sweep reopens a trial's run instead of
creating a second one, and never logs an epoch twice. A tracking server that stops answering
ends the sweep with one line naming it (TrackingError, after tracking.retry_total_s); the rerun
backfills from the trials' checkpoints the epochs that were not logged.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

from ray.tune import Callback

from pipeline.infra import tracking
from pipeline.infra.layout import RECONSTRUCTIONS, SAMPLES
from pipeline.params.study import TrackingParams
from pipeline.sweep.context import annotate_trial
from pipeline.sweep.outcome import MLFLOW_STATUS, error_reason, outcome  # noqa: F401 (error_reason: API)
from pipeline.train.checkpoint import FILENAME as CHECKPOINT

TRIAL_TAG = "ray.trial_id"
SWEEP_TAG = "infovae.sweep"
PARENT_TAG = "mlflow.parentRunId"
METRIC_PREFIXES = ("train_", "val_")
METRIC_KEYS = ("epoch_seconds", "images_per_second")


def is_metric(key: str) -> bool:
    """The training run's own metrics (pipeline.train.trainer), not Ray's bookkeeping."""
    return key.startswith(METRIC_PREFIXES) or key in METRIC_KEYS


def backfill(client, run_id: str, checkpoint_dir: str | None) -> int:
    """Log the epochs of a checkpoint's training history that the run lacks (val_loss absent
    at that step): what a lost tracking server missed. Returns the epochs logged."""
    if not checkpoint_dir or not (Path(checkpoint_dir) / CHECKPOINT).is_file():
        return 0
    from pipeline.train import checkpoint as ckpt

    try:
        history = ckpt.load(Path(checkpoint_dir) / CHECKPOINT).get("history", [])
    except ckpt.CheckpointError:
        return 0
    have = {m.step for m in tracking.retry(client.get_metric_history, run_id, "val_loss")}
    missing = [h for h in history if int(h.get("epoch", 0)) not in have]
    for h in missing:
        metrics = {k: v for k, v in h.items() if is_metric(k)}
        tracking.log_metrics(client, run_id, metrics, step=int(h["epoch"]))
    return len(missing)


@contextlib.contextmanager
def _local(ckpt) -> Iterator[Path | None]:
    """A trial's checkpoint as a directory on this machine: its own path when it is one, else
    (an object store: pipeline.infra.storage) a temporary copy Ray downloads; None: none."""
    if ckpt is None:
        yield None
    elif Path(ckpt.path).is_absolute():  # a local path (an object store's has no leading /)
        yield Path(ckpt.path) if Path(ckpt.path).is_dir() else None
    else:
        with ckpt.as_directory() as d:
            yield Path(d)


class MLflowLogger(Callback):
    def __init__(self, cfg: TrackingParams, base_dir: str, parent_run_id: str):
        self.cfg, self.base_dir, self.parent = cfg, base_dir, parent_run_id
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.logged: dict[str, int] = {}  # run id -> last epoch logged
        self.ended: set[str] = set()  # run ids this logger closed
        self.reopened: set[str] = set()
        self.lost: tracking.TrackingError | None = None
        self._client = None

    def __getstate__(self):  # pickled into Ray's experiment state: no live client
        return {**self.__dict__, "_client": None, "lost": None}

    def open_runs(self) -> list[str]:
        return [r for r in self.runs.values() if r not in self.ended]

    @contextlib.contextmanager
    def _guard(self, what: str):
        """A tracking server that stopped answering becomes one line naming it and what was
        not logged (`self.lost`, raised by run_sweep once Tune has stopped). Tune is stopped
        through its own SIGINT path, which saves the experiment state first (an exception
        raised out of a callback would skip that, and a trial finished since Tune's last
        snapshot would run again); later hooks do not try the dead server again."""
        try:
            yield
        except Exception as err:
            if not tracking.lost(err):
                raise
            self.lost = tracking.TrackingError(
                f"MLflow tracking server {tracking.redact(self.client.tracking_uri)} stopped answering "
                f"(gave up after ~{self.cfg.retry_total_s:g} s of retries, tracking.retry_total_s; "
                f"{tracking.error_line(err)}): not logged: {what}. The training done is kept in the trials' "
                "checkpoints: restart the server and rerun the sweep, which resumes and logs what is missing")
            print(f"{self.lost}; stopping the sweep", flush=True)
            signal.raise_signal(signal.SIGINT)

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
            tracking.reopen(c, run_id)
            self.reopened.add(run_id)
            history = tracking.retry(c.get_metric_history, run_id, "val_loss")
            self.logged[run_id] = max((m.step for m in history), default=0)
        else:
            config = trial.config
            name = f"{config.get('cell_label', 'trial')} #{config.get('optuna_number', 0)}"
            run = tracking.retry(c.create_run, parent.info.experiment_id, run_name=name, tags={
                PARENT_TAG: self.parent, TRIAL_TAG: trial.trial_id,
                SWEEP_TAG: parent.data.tags.get(SWEEP_TAG, ""),
                "infovae.cell": config.get("cell", ""), "infovae.cell_label": config.get("cell_label", ""),
                "infovae.grids": ",".join(config.get("grids", [])), tracking.OWNER_TAG: tracking.owner(),
            })
            run_id = run.info.run_id
            spec = {k: v for k, v in config["spec"].items() if k != "data_dir"}  # no host paths
            tracking.log_params(c, run_id, {**spec, "suggested": config.get("suggested", {})})
            annotate_trial(c, run_id, config, self.base_dir)
            self.logged[run_id] = 0
        self.runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration, trials, trial, **info):
        if self.lost:
            return
        with self._guard(f"the start of trial {trial.trial_id}"):
            self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get("epoch", 0))
        if self.lost:
            return
        with self._guard(f"epoch {epoch} of trial {trial.trial_id} ({trial.config.get('cell_label')})"):
            run_id = self._run_for(trial)
            if epoch <= self.logged.get(run_id, 0):
                return  # already logged before a restart
            metrics = {k: v for k, v in result.items() if is_metric(k)}
            tracking.log_metrics(self.client, run_id, metrics, step=epoch)
            self.logged[run_id] = epoch
            if epoch == 1:
                tracking.set_tags(self.client, run_id, {"infovae.device": result.get("device", ""),
                                                        "infovae.gpu_ids": result.get("gpu_ids", "")})

    def _finish(self, trial, status: str) -> None:
        got = outcome(trial, status=status)
        if self.lost:
            return
        with self._guard(f"the end ({got.status}) of trial {trial.trial_id}"):
            run_id = self._run_for(trial)
            c = self.client
            ckpt = trial.checkpoint
            with _local(ckpt) as d:
                if run_id in self.reopened:  # an earlier ending's reasons go; what it missed is logged
                    tracking.clear_stale_tags(c, tracking.retry(c.get_run, run_id), keep=got.tags())
                    backfill(c, run_id, d and str(d))
                tracking.set_tags(c, run_id, got.tags())
                if d is not None:
                    tracking.log_files(c, run_id, [d / CHECKPOINT], "checkpoint")
                    tracking.log_files(c, run_id, [d / SAMPLES, d / RECONSTRUCTIONS], "images")
            tracking.terminate(c, run_id, MLFLOW_STATUS[got.status])
            self.ended.add(run_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "TERMINATED")  # called before Tune sets the status

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "ERROR")
