"""Test NLL by annealed importance sampling (Wu et al. 2017), which does not use the encoder,
beside IS on the same images: the fair comparison across objectives of Table 1.

    log p(x) ~= log (1/K) sum_k w_k,   w_k = prod_t f_t(z_{t-1}) / f_{t-1}(z_{t-1})
    f_t(z) = p(z) p(x|z)^beta_t,  0 = beta_0 < ... < beta_T = 1          (pipeline.evaluation.ais)

IS with q(z|x) is exact in expectation too, but its variance (and so the downward bias of its
log) grows with the mismatch of q(z|x) and p(z|x), which nothing keeps small in an alpha = 1
model. On the first ais_test_size test images both are computed; their paired difference
(`test_ais_minus_is`, per image, then averaged) has a far smaller standard error than two
separate means, and says by how much IS over-states the NLL of this model.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.evaluation.context import EvalData, Trained
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.evaluation.per_image import PER_IMAGE, entry
from pipeline.params.evaluate import EvaluateParams


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, Any]:
    _, x = data.split("test", settings.ais_test_size)
    ais = model_log_likelihood(model.net, x, "ais", settings.ais_chains, seed=settings.seed,
                               rows=model.rows, steps=settings.ais_steps, leapfrog=settings.ais_leapfrog)
    iw = model_log_likelihood(model.net, x, "is", settings.loglik_k, seed=settings.seed, rows=model.rows,
                              amp=model.amp, proposal=settings.loglik_proposal)
    diff = (iw.per_example - ais.per_example).double()  # NLL(AIS) - NLL(IS), per image
    n = diff.numel()
    return {**ais.summary("test_ais"), "test_ais_minus_is": float(diff.mean()),
            "test_ais_minus_is_stderr": float(diff.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan,
            # Per image: AIS, and IS as computed here (its noise is seeded per image index, so it
            # equals the nll metric's IS on these images when the binary pixels are the same).
            PER_IMAGE: {**entry("test", "ais", x, -ais.per_example),
                        **entry("test", "is_ais", x, -iw.per_example)}}
