"""Evaluate one trained checkpoint: one row of metrics (`infovae evaluate`, the DVC evaluate stage).

On the test set: the importance-sampled log-likelihood (K = 5000, reported as NLL with its
standard error; optionally the prior-sampling estimate beside it), the latent metrics of the
paper's Fig. 3 (MMD to the prior, covariance log-det, mutual information, active units) and the
semi-supervised error; on a train subset the same log-likelihood, to show overfitting; and the
class mismatch of generated samples. Dynamically binarized data are binarized once, with a seed
(params.seed), on the CPU: stochastic binarization of the test set is the convention for
dynamically binarized MNIST (Burda et al. 2016), and the seed makes every model see the same
binary test images whatever device evaluates it.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from pipeline.data.splits import Split, load_split, read_metadata
from pipeline.evaluation.classifier import get_classifier
from pipeline.evaluation.loglik import model_log_likelihood, stderr_progress
from pipeline.evaluation.metrics.class_mismatch import class_mismatch, generated_labels
from pipeline.evaluation.metrics.latent import latent_diagnostics
from pipeline.evaluation.metrics.semisupervised import semisupervised_error
from pipeline.infra import accel, atomic
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.infra.errors import PipelineError
from pipeline.params.evaluate import EvaluateParams
from pipeline.train.trainer import choose_device, load_trained

SPLIT_SEED_OFFSET = {"test": 0, "train": 1_000_003}  # distinct binarization streams per split


def binarize_once(split: Split, seed: int, name: str) -> Tensor:
    """Binary images of a split: one seeded Bernoulli sample for dynamic data (CPU generator,
    so the result does not depend on the device), the stored binary images otherwise."""
    if not split.dynamic:
        return split.images
    g = torch.Generator().manual_seed(seed + SPLIT_SEED_OFFSET[name])
    return torch.bernoulli(split.images, generator=g)


@torch.no_grad()
def encode(encoder: torch.nn.Module, x: Tensor, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Posterior means and stds [N, d] (on the CPU) of images x, encoded in batches on device."""
    parts = [encoder(xb.to(device)) for xb in x.split(batch)]
    return torch.cat([m for m, _ in parts]).cpu(), torch.cat([s for _, s in parts]).cpu()


def evaluate_checkpoint(checkpoint_dir: str | Path, params: EvaluateParams, data_dir: str | Path,
                        log: Callable[[str], None] | None = None,
                        progress_every_s: float | None = None) -> dict[str, Any]:
    """All metrics of one checkpoint as a flat dict (one table row). `log` gets one line per
    part; progress_every_s prints log-likelihood progress to stderr at that period."""
    say = log or (lambda _msg: None)
    timings: dict[str, float] = {}
    model, spec = load_trained(checkpoint_dir)  # on the CPU first: the spec may choose the device
    device = choose_device(spec.train.device if params.device == "checkpoint" else params.device)
    model.to(device)
    fast = accel.prepare(model, device, params.accel)  # GPU fast paths (auto: CUDA only)
    rows = fast.loglik_rows(model.decoder, spec.model.latent_dim, params.loglik_rows)
    torch.set_num_threads(params.threads)
    pin_malloc_thresholds()  # see pipeline.infra.env: chunk buffers otherwise page-fault afresh
    row: dict[str, Any] = {
        "checkpoint": str(checkpoint_dir), "divergence": spec.objective.divergence,
        "alpha": spec.objective.alpha, "lambda": spec.objective.lambda_,
        "encoder": spec.model.encoder, "decoder": spec.model.decoder,
        "latent_dim": spec.model.latent_dim,
        "train_size": spec.train.train_size or read_metadata(Path(data_dir) / "train.parquet")["rows"],
        "device": device.type, "seed": params.seed, **fast.summary(),
    }

    def timed(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        out = fn()
        timings[f"seconds_{name}"] = time.perf_counter() - start
        row.update(out)
        say(f"{name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in out.items()) + f" ({timings[f'seconds_{name}']:.1f} s)")

    test = load_split(data_dir, "test")
    test_x = binarize_once(test, params.seed, "test")
    row["binarization"] = test.binarization

    def loglik(x: Tensor, prefix: str, method: str, samples: int, seed: int) -> dict[str, Any]:
        progress = stderr_progress(f"{prefix} log-likelihood", progress_every_s) \
            if progress_every_s else None
        est = model_log_likelihood(model, x, method, samples, seed=seed, rows=rows,
                                   progress=progress, amp=fast.amp_dtype)
        return est.summary(prefix)

    n_ll = params.loglik_test_size or len(test_x)
    timed("loglik_test", lambda: loglik(test_x[:n_ll], "test", "is", params.loglik_k, params.seed))
    if params.loglik_train_size:
        train_sub = load_split(data_dir, "train", limit=params.loglik_train_size)
        train_x = binarize_once(train_sub, params.seed, "train")
        timed("loglik_train", lambda: loglik(train_x, "train", "is", params.loglik_k, params.seed + 1))
    if params.prior_samples:
        timed("loglik_prior", lambda: loglik(test_x[:n_ll], "test_prior", "prior", params.prior_samples,
                                             params.seed))

    mean, std = encode(model.encoder, test_x, params.batch_size, device)
    n_lat = params.latent_size or len(mean)

    def latent() -> dict[str, Any]:
        g = torch.Generator().manual_seed(params.seed)
        return {**latent_diagnostics(mean[:n_lat], std[:n_lat], generator=g),
                "latent_n": min(n_lat, len(mean))}

    def latent_train() -> dict[str, Any]:
        """The same metrics on the cell's own training images (train subsets are prefixes):
        covariance log-det on train vs test is the paper's Fig. 4 over-fitting picture."""
        n = min(n_lat, spec.train.train_size or n_lat)
        sub = load_split(data_dir, "train", limit=n)
        m, s = encode(model.encoder, binarize_once(sub, params.seed, "train"), params.batch_size, device)
        g = torch.Generator().manual_seed(params.seed + 1)
        return {**{f"train_{k}": v for k, v in latent_diagnostics(m, s, generator=g).items()},
                "train_latent_n": len(m)}

    timed("latent", latent)
    timed("latent_train", latent_train)

    def semisupervised() -> dict[str, Any]:
        pool = load_split(data_dir, "train", limit=params.semisupervised_pool)
        pool_mean, _ = encode(model.encoder, binarize_once(pool, params.seed, "train"),
                              params.batch_size, device)
        return semisupervised_error(pool_mean.numpy(), pool.labels.numpy(), mean.numpy(),
                                    test.labels.numpy(), params.semisupervised_labels,
                                    params.semisupervised_repeats, params.seed)

    timed("semisupervised", semisupervised)
    if params.class_mismatch_samples:
        def mismatch() -> dict[str, Any]:
            clf, meta = get_classifier(data_dir, params.classifier, device, log=say)
            labels = generated_labels(model.decoder, clf, spec.model.latent_dim,
                                      params.class_mismatch_samples, params.class_mismatch_images,
                                      params.seed)
            return {**class_mismatch(labels), "class_samples": len(labels),
                    "classifier_accuracy": meta["test_accuracy"]}

        timed("class_mismatch", mismatch)
    return {**row, **timings}


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
