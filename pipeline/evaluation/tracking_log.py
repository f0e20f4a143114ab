"""An evaluation on its trial's MLflow run: measurements as metrics, settings as tags.

Settings (the seed, K and n of an estimator, the cell's coordinates, the device) were logged as
metrics before, taking the first chart slots of the run page; they are tags (infovae.eval.*)
now, which a re-evaluation with other settings can overwrite (MLflow params cannot change).
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.infra import tracking

SETTINGS = {"alpha", "lambda", "latent_dim", "train_size", "seed", "latent_n", "train_latent_n",
            "class_samples", "checkpoint", "device", "binarization", "divergence", "encoder", "decoder",
            "ray_gpu_ids"}
COUNT = re.compile(r".*_(k|n)$")  # an estimator's samples (test_k) and examples (test_n)


def is_setting(key: str, value: Any) -> bool:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return key in SETTINGS or bool(COUNT.match(key)) or not numeric


DIVERGED_TAG = "infovae.diverged"
STATUS_TAG = "infovae.eval.status"


def log_evaluation(client, run_id: str, result: dict[str, Any]) -> None:
    """Timings (seconds_*) stay in metrics.parquet: they describe the machine, not the model.
    The run is marked evaluated; a diverged mark left by an earlier evaluation (under another
    rule, or of a checkpoint since retrained in place) is removed, so MLflow does not show a
    measured run as withheld."""
    metrics = {f"eval_{k}": v for k, v in result.items()
               if v is not None and not is_setting(k, v) and not k.startswith("seconds")}
    settings = {f"infovae.eval.{k}": v for k, v in result.items() if v is not None and is_setting(k, v)}
    tracking.log_metrics(client, run_id, metrics, step=0)
    tracking.set_tags(client, run_id, {**settings, STATUS_TAG: "EVALUATED"})
    if DIVERGED_TAG in tracking.retry(client.get_run, run_id).data.tags:  # delete_tag raises if absent
        tracking.retry(client.delete_tag, run_id, DIVERGED_TAG)
