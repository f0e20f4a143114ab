"""Evaluate one trained checkpoint: the list of metrics, run in order, each timed; one row.

Every metric is one function `(model, data, settings) -> dict` in pipeline.evaluation.metrics
(the model with its spec, the data binarized once, the evaluate section); `METRICS` is the
list, each with the condition under which settings ask for it. The row starts with what the
checkpoint's own spec says it is (divergence, alpha, lambda, decoder, latent dim, training
size), so a row never depends on the params of the run that evaluates it.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.data.splits import read_metadata
from pipeline.errors import PipelineError
from pipeline.evaluation.context import EvalData, Trained
from pipeline.evaluation.metrics import ais_nll, class_mismatch, latent, nll, prior_nll, semisupervised
from pipeline.evaluation.per_image import PER_IMAGE
from pipeline.infra import accel, atomic
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.model.likelihood import continuous_inputs
from pipeline.params.evaluate import EvaluateParams
from pipeline.train.trainer import choose_device, load_trained

Measure = Callable[[Trained, EvalData, EvaluateParams], dict[str, Any]]


@dataclass(frozen=True)
class Metric:
    name: str  # its timing is seconds_<name>
    measure: Measure
    wanted: Callable[[EvaluateParams], bool] = lambda settings: True


METRICS: tuple[Metric, ...] = (
    Metric("nll", nll.measure),
    Metric("loglik_prior", prior_nll.measure, lambda s: s.prior_samples > 0),
    Metric("loglik_ais", ais_nll.measure, lambda s: s.ais_test_size > 0),
    Metric("latent", latent.measure),
    Metric("semisupervised", semisupervised.measure),
    Metric("class_mismatch", class_mismatch.measure, lambda s: s.class_mismatch_samples > 0),
)


def wanted(settings: EvaluateParams, grids: tuple[str, ...] | None = None,
           metrics: tuple[Metric, ...] = METRICS) -> tuple[Metric, ...]:
    """The metrics the settings ask of a cell of these sweep grids (None: grids unknown, as for
    a checkpoint evaluated on its own: evaluate.metric_grids does not apply)."""
    def here(m: Metric) -> bool:
        where = settings.metric_grids.get(m.name)
        return grids is None or where is None or bool(set(where) & set(grids))
    return tuple(m for m in metrics if m.wanted(settings) and here(m))


def describe(trained: Trained, data_dir: str | Path) -> dict[str, Any]:
    """What the checkpoint is, from its own spec."""
    spec = trained.spec
    # likelihood among them: NLLs of different likelihoods (a probability, a density) are not comparable
    columns = {k: v for k, v in spec.columns().items() if k != "lr"}
    return {**columns,
            "train_size": spec.train.train_size or read_metadata(Path(data_dir) / "train.parquet")["rows"]}


def evaluate_checkpoint(checkpoint_dir: str | Path, settings: EvaluateParams, data_dir: str | Path,
                        log: Callable[[str], None] | None = None, progress_every_s: float | None = None,
                        metrics: tuple[Metric, ...] = METRICS,
                        grids: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every wanted metric of one checkpoint as a flat dict (one table row), with seconds_<name>
    for each, and the per-image NLLs under per_image.PER_IMAGE (the stage tables them apart).
    `log` gets one line per metric; progress_every_s prints log-likelihood progress
    to stderr at that period; grids: the sweep grids naming the cell (evaluate.metric_grids)."""
    say = log or (lambda _msg: None)
    net, spec = load_trained(checkpoint_dir)  # on the CPU first: the spec may choose the device
    device = choose_device(spec.train.device if settings.device == "checkpoint" else settings.device)
    net.to(device)
    fast = accel.prepare(net, device, settings.accel)  # GPU fast paths (auto: CUDA only)
    rows = fast.loglik_rows(net.decoder, spec.model.latent_dim, settings.loglik_rows)
    torch.set_num_threads(settings.threads)
    pin_malloc_thresholds()  # see pipeline.infra.env: chunk buffers otherwise page-fault afresh
    trained = Trained(net, spec, device, rows, fast.amp_dtype)
    likelihood = getattr(spec.model, "likelihood", "bernoulli")
    data = EvalData(Path(data_dir), settings.seed, settings.batch_size, progress_every_s, likelihood)
    test, _ = data.split("test")
    # a Gaussian decoder's cell reads the grey levels: no binarization (pipeline.model.likelihood)
    binarization = test.binarization if not continuous_inputs(likelihood) else "none (grey levels)"
    row: dict[str, Any] = {"checkpoint": str(checkpoint_dir), **describe(trained, data_dir),
                           "device": device.type, "seed": settings.seed, "binarization": binarization,
                           **fast.summary()}
    timings: dict[str, float] = {}
    per_image: dict[str, Any] = {}
    for metric in wanted(settings, grids, metrics):
        start = time.perf_counter()
        out = dict(metric.measure(trained, data, settings))
        timings[f"seconds_{metric.name}"] = time.perf_counter() - start
        per_image.update(out.pop(PER_IMAGE, None) or {})  # kept whole, not in the log line
        row.update(out)
        say(f"{metric.name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in out.items())
            + f" ({timings[f'seconds_{metric.name}']:.1f} s)")
    return {**row, **timings, **({PER_IMAGE: per_image} if per_image else {})}


def write_row(row: dict[str, Any], path: str | Path) -> None:
    """Write one row atomically: Parquet (.parquet) or JSON (.json; non-finite floats -> null)."""
    path = Path(path)
    if path.suffix == ".json":
        atomic.write_json(path, {k: None if isinstance(v, float) and not math.isfinite(v) else v
                                 for k, v in row.items()})
    elif path.suffix == ".parquet":
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([row]), buf)
        atomic.write_bytes(path, buf.getvalue())
    else:
        raise PipelineError(f"the output must end in .parquet or .json, got {path}")
