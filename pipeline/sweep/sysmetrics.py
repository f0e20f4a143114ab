"""MLflow's system metrics (CPU, memory, disk, network; GPU through NVML where present) for
every trial, sampled in the trial's own Ray worker.

The trial's MLflow run is created by the driver (pipeline.sweep.logger), but the monitor runs
beside the training, not in the driver: on a cluster the driver's node is not the trial's,
and only the worker sees the node (and GPU) that trains. The worker finds its run by the
trial-id tag, waiting for the driver to create it, in a background thread, so training never
waits for MLflow. mlflow.system_metrics.SystemMetricsMonitor samples the whole node (psutil,
NVML): trials sharing a node share its readings. It stops by itself once the run is ended;
`resume_logging` continues the step count of a restarted trial; a last sample is taken as the
trial ends, so a trial shorter than the sampling interval has one too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.params.study import TrackingParams


@dataclass(frozen=True)
class MonitorSpec:
    """What a worker needs to find its run and log to it (handed over by tune.with_parameters)."""

    tracking: TrackingParams
    base_dir: str
    parent_run_id: str
    interval_s: float
    wait_s: float = 120.0


class TrialMonitor:
    def __init__(self, spec: MonitorSpec | None, trial_id: str):
        self.spec, self.trial_id = spec, trial_id
        self.monitor = None
        self.run_id: str | None = None
        self.client = None
        self._ending = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TrialMonitor:
        if self.spec is not None and self.spec.interval_s > 0:
            import psutil

            psutil.cpu_percent()  # primes psutil: the last sample covers the whole trial
            self._thread = threading.Thread(target=self._start, name="infovae-sysmetrics", daemon=True)
            self._thread.start()
        return self

    def _find_run(self) -> str | None:
        from pipeline.infra import tracking
        from pipeline.sweep.logger import PARENT_TAG, TRIAL_TAG

        parent = tracking.retry(self.client.get_run, self.spec.parent_run_id)
        query = (f"tags.`{PARENT_TAG}` = '{self.spec.parent_run_id}' and "
                 f"tags.`{TRIAL_TAG}` = '{self.trial_id}'")
        deadline = time.monotonic() + self.spec.wait_s
        while time.monotonic() < deadline:
            found = tracking.retry(self.client.search_runs, [parent.info.experiment_id], query)
            if found:
                return found[0].info.run_id
            if self._ending.wait(1.0):
                deadline = min(deadline, time.monotonic() + 10.0)
        return None

    def _start(self) -> None:
        import logging

        from pipeline.infra import tracking

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        try:
            self.client = tracking.client(self.spec.tracking, Path(self.spec.base_dir))
            self.run_id = self._find_run()
            if self.run_id is not None and not self._ending.is_set():
                monitor = self._monitor()
                monitor.start()
                self.monitor = monitor
        except Exception as err:  # system metrics are context, never a reason to fail a trial
            print(f"system metrics not logged for trial {self.trial_id}: {type(err).__name__}: {err}")

    def _monitor(self):
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        return SystemMetricsMonitor(self.run_id, sampling_interval=self.spec.interval_s,
                                    samples_before_logging=1, resume_logging=True,
                                    tracking_uri=self.client.tracking_uri)

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._ending.set()
        self._thread.join(timeout=30)
        try:
            m = self.monitor
            if m is not None:
                m.finish()  # stops the sampling loop and flushes what it recorded
            elif self.run_id is not None:  # the trial ended before the monitor started
                m = self._monitor()
            else:
                return
            # One last sample: a trial shorter than the interval still gets a reading.
            m.collect_metrics()
            m.publish_metrics(m.aggregate_metrics())
            m.mlflow_logger.flush()
        except Exception as err:
            print(f"last system metrics sample of trial {self.trial_id} not logged: {err}")
