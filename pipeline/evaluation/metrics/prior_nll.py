"""Test NLL by the authors' first estimator: z sampled from the prior (Zhao et al.'s code).

    log p(x) ~= log (1/M) sum_m p(x|z_m),   z_m ~ p(z),   M = evaluate.prior_samples

Unbiased in p(x) like importance sampling, but with no use of the encoder: it does not
over-state the NLL of a model whose q(z|x) is a poor proposal (alpha = 1 InfoVAEs), at the
price of a variance that grows quickly with the latent dimension.
"""

from __future__ import annotations

from typing import Any

from pipeline.evaluation.context import EvalData, Trained
from pipeline.evaluation.metrics.nll import loglik
from pipeline.params.evaluate import EvaluateParams


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, Any]:
    return loglik(model, data, settings, "test", settings.loglik_test_size, "prior",
                  settings.prior_samples, settings.seed, "test_prior")
