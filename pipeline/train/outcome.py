"""Whether a finished training run learned anything a trained model can be compared on.

A run that raised `TrainingDiverged` (a NaN loss) never reaches the evaluation. One that
finished can still have diverged: its losses finite, its model worse than knowing nothing. The
rule, stated from a principle and not from any run's numbers:

- the final validation NELBO (recon + KL, nats per image, an upper bound on -log p(x)) is
  non-finite, or worse than `COIN_NATS` = 784 log 2 = 543.4 nats, the NLL of 784 independent
  fair coins: a model that does no better than the coins has learned nothing about the images,
  and its NLL and latent metrics measure the failure, not the objective;
- or its final validation loss (the objective minimised) is non-finite.

The coin bound holds for binary pixels only (model.likelihood: bernoulli). A Gaussian decoder's
NELBO is a density's, with no such bound: one that over-fits a small training set has a huge
validation NELBO (tens of thousands of nats at n = 500), which is the result Fig. 4 measures,
so for it only a non-finite value is a divergence.

A collapsed posterior (no active units, I(x;z) ~ 0) is *not* a divergence: it is what the ELBO
does with a flexible decoder, the result some claims measure (docs/design.md §1.5).

The sweep (choosing a cell's best trial), the evaluate stage (status DIVERGED, excluded from
every claim) and the report read it from here. No torch or pydantic import: plain numbers in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

IMAGE_PIXELS = 28 * 28  # binarized MNIST (pipeline.model.base.IMAGE_SHAPE)
COIN_NATS = IMAGE_PIXELS * math.log(2.0)  # -log p(x) of a model that says 1/2 for every pixel
DIVERGED = "DIVERGED"  # the evaluation status of such a cell


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def likelihood_of(spec: Mapping[str, Any] | str | None) -> str:
    """model.likelihood of a run's spec (a dict, or its JSON as trials.parquet keeps it)."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    return str(((spec or {}).get("model") or {}).get("likelihood") or "bernoulli")


def diverged(final: Mapping[str, Any], pixels: int = IMAGE_PIXELS,
             likelihood: str = "bernoulli") -> str | None:
    """Why a run whose last epoch logged `final` (val_nelbo, val_loss) diverged, or None if it
    did not (or the metrics to judge it are absent: an older checkpoint is not condemned)."""
    bound = pixels * math.log(2.0)
    nelbo, loss = _number(final.get("val_nelbo")), _number(final.get("val_loss"))
    if nelbo is not None and not math.isfinite(nelbo):
        return f"training diverged: final validation NELBO is {nelbo}"
    if nelbo is not None and nelbo > bound and likelihood == "bernoulli":
        return (f"training diverged: final validation NELBO {nelbo:.6g} nats > {bound:.1f} "
                f"({pixels} log 2, independent fair coins)")
    if loss is not None and not math.isfinite(loss):
        return f"training diverged: final validation loss is {loss}"
    return None
