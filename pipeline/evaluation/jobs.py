"""One cell's evaluation as a job: the function both runners call (in the stage's process, or
as a Ray task), so neither orchestrator owns it and neither imports the other."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.evaluation.evaluate import evaluate_checkpoint, wanted
from pipeline.infra import atomic
from pipeline.params.evaluate import EvaluateParams


@dataclass(frozen=True)
class Job:
    """One cell to evaluate: its checkpoint (relative to the repository) and its cache file."""

    cell: str
    label: str
    checkpoint: str
    cache: Path
    autoregressive: bool = False  # a PixelCNN decoder: the costly evaluations (sampling, IS)
    grids: tuple[str, ...] | None = None  # the sweep grids naming the cell (evaluate.metric_grids)


def cache_key(checkpoint_file: Path, settings: EvaluateParams, data_digest: str,
              grids: tuple[str, ...] | None = None) -> str:
    """What a measurement depends on: the checkpoint's bytes, the evaluate settings that change
    results (EvaluateParams.identity: not threads, devices, batch sizes or paths), the test
    data's content, and which metrics the cell's grids ask for (evaluate.metric_grids)."""
    metrics = [m.name for m in wanted(settings, grids)]
    h = hashlib.sha256(json.dumps({"settings": settings.identity(), "data": data_digest, "metrics": metrics},
                                  sort_keys=True).encode())
    with open(checkpoint_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def evaluate_job(job: Job, settings: EvaluateParams, base: Path, data_dir: Path, log=print,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate one cell and cache its row (with `extra`) at once, atomically: an interrupted
    stage keeps every cell it finished."""
    result = evaluate_checkpoint(base / job.checkpoint, settings, data_dir, log=lambda m: log(f"    {m}"),
                                 grids=job.grids)
    result["checkpoint"] = job.checkpoint  # relative: no host paths
    result.update(extra or {})
    result = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
    atomic.write_json(job.cache, result)
    return result
