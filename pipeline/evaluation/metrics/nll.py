"""Test and train negative log-likelihood, importance-sampled with q(z|x) as the proposal, mixed
with a wide component by default (evaluate.loglik_proposal; pipeline.evaluation.loglik, IS-DEF)

    log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / r(z_k|x),   z_k ~ r(z|x)     (Burda et al. 2016)

K = evaluate.loglik_k on the first loglik_test_size test images, and on the first
loglik_train_size train images (the cell's own training images are a prefix of these): the gap
between the two is the over-fitting the paper's Table 1 discussion refers to. The estimator
itself (chunking, seeds, the float64 log-sum-exp) is pipeline.evaluation.loglik.
"""

from __future__ import annotations

from typing import Any

from pipeline.evaluation.context import EvalData, Trained
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.evaluation.loglik import stderr_progress
from pipeline.evaluation.per_image import PER_IMAGE, entry
from pipeline.params.evaluate import EvaluateParams


def loglik(model: Trained, data: EvalData, settings: EvaluateParams, split: str, limit: int | None,
           method: str, samples: int, seed: int, prefix: str) -> dict[str, Any]:
    """One estimate's summary (`<prefix>_nll`, its standard error, ...) on a split's prefix, with
    the per-image NLLs under PER_IMAGE (pipeline.evaluation.per_image)."""
    _, x = data.split(split, limit)
    progress = stderr_progress(f"{prefix} log-likelihood", data.progress_every_s) \
        if data.progress_every_s else None
    est = model_log_likelihood(model.net, x, method, samples, seed=seed, rows=model.rows,
                               progress=progress, amp=model.amp, proposal=settings.loglik_proposal)
    return {**est.summary(prefix), PER_IMAGE: entry(split, method, x, -est.per_example)}


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, Any]:
    out = loglik(model, data, settings, "test", settings.loglik_test_size, "is", settings.loglik_k,
                 settings.seed, "test")
    out["loglik_proposal"] = settings.loglik_proposal  # a setting: a tag on the run, a column here
    if settings.loglik_train_size:
        train = loglik(model, data, settings, "train", settings.loglik_train_size, "is",
                       settings.loglik_k, settings.seed + 1, "train")
        out.update({**train, PER_IMAGE: {**out[PER_IMAGE], **train[PER_IMAGE]}})
    return out
