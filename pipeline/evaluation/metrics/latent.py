"""The evaluation's latent metric (Zhao et al. 2017, Fig. 3 and Sec. 5.3): the statistics of
pipeline.model.latent_stats on a checkpoint's test and train encodings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from pipeline.model.latent_stats import latent_diagnostics, mmd_unbiased_to_prior, sample_codes

if TYPE_CHECKING:  # the metric's signature only: no import of the evaluation at run time
    from pipeline.evaluation.context import EvalData, Trained
    from pipeline.params.evaluate import EvaluateParams


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, Any]:
    """The diagnostics on the test encodings, and on the cell's own training images (train
    subsets are prefixes): covariance log-det on train vs test is the paper's Fig. 4. `mmd` is
    the unbiased MMD^2_u on mmd_samples sampled train codes (`mmd_n` of them; the split's size if
    smaller), `mmd_biased` the V-statistic on the latent_size test codes as before."""
    mean, std = data.encodings(model, "test")
    n = settings.latent_size or len(mean)
    g = torch.Generator().manual_seed(settings.seed)
    out = {**latent_diagnostics(mean[:n], std[:n], generator=g), "latent_n": min(n, len(mean))}
    n_train = min(n, model.spec.train.train_size or n)
    m, s = data.encodings(model, "train", n_train)
    g = torch.Generator().manual_seed(settings.seed + 1)
    out.update({f"train_{k}": v for k, v in latent_diagnostics(m, s, generator=g).items()})
    out["train_latent_n"] = len(m)
    # Fig. 3A: unbiased MMD on sampled codes of the first mmd_samples train images (the authors:
    # 40k train encodings vs 40k prior samples), replacing the biased one on latent_size test codes.
    m, s = data.encodings(model, "train", settings.mmd_samples)
    g = torch.Generator().manual_seed(settings.seed + 2)
    out["mmd_biased"] = out["mmd"]
    out["mmd"] = mmd_unbiased_to_prior(sample_codes(m, s, g), generator=g)
    out["mmd_n"] = len(m)
    return out
