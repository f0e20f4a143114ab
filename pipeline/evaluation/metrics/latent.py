"""Latent-space metrics of the InfoVAE study (Zhao et al. 2017, Fig. 3 and Sec. 5.3).

Pure functions of encodings; each has known-answer tests in tests/test_metrics_latent.py.
`mean`, `std` [N, d] are the parameters of q(z|x_i) for N inputs; `z` [N, d] samples from them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pipeline.model.base import LOG_2PI
from pipeline.model.divergences.mmd import mmd

if TYPE_CHECKING:  # the metric's signature only: no import of the evaluation at run time
    from pipeline.evaluation.context import EvalData, Trained
    from pipeline.params.evaluate import EvaluateParams


ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z|x]) > 0.01


def mmd_to_prior(z: Tensor, kernel: str = "gaussian", bandwidth: str | float = "authors_v1",
                 generator: torch.Generator | None = None) -> float:
    """MMD^2 between the encodings and as many N(0, I) samples (the paper's Fig. 3A uses 40k
    of each); the biased V-statistic with the authors' kernel, as in training."""
    prior = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return float(mmd(z, prior, kernel=kernel, bandwidth=bandwidth, estimator="biased"))


def logdet_covariance(z: Tensor) -> float:
    """log det of the sample covariance of the encodings (Fig. 3B): 0 for N(0, I); large
    positive values mean q(z) is over-dispersed, very negative ones that it has collapsed."""
    cov = torch.cov(z.T.double()).reshape(z.shape[1], z.shape[1])
    sign, logdet = torch.linalg.slogdet(cov)
    return float(logdet) if sign > 0 else -math.inf


def active_units(mean: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies with x: Var_x(E[z_k|x]) > threshold."""
    return int((mean.double().var(dim=0) > threshold).sum())


def mutual_information(mean: Tensor, std: Tensor, z: Tensor, block: int = 2048) -> float:
    """I_q(x; z) ~= mean_i [log q(z_i|x_i) - log (1/N) sum_j q(z_i|x_j)] (docs/design.md §1.4).

    The aggregate posterior q(z) is the mixture of the N posteriors, so the estimate is at most
    log N (reached when every z_i is explained by its own x_i alone). Blocked over i so the
    N x N table of log-densities never exists whole.
    """
    n = mean.shape[0]
    mean, std, z = mean.double(), std.double(), z.double()
    log_std_sum = torch.log(std).sum(-1)  # [N]
    inv_var = std.pow(-2)
    own = (-0.5 * ((z - mean) / std) ** 2).sum(-1) - log_std_sum - 0.5 * LOG_2PI * z.shape[1]
    marginal = []
    for zi in z.split(block):
        # log q(z_i | x_j) for all j: [b, N]
        sq = ((zi[:, None, :] - mean[None]) ** 2 * inv_var[None]).sum(-1)
        logq = -0.5 * sq - log_std_sum[None] - 0.5 * LOG_2PI * z.shape[1]
        marginal.append(torch.logsumexp(logq, dim=1) - math.log(n))
    return float((own - torch.cat(marginal)).mean())


def latent_diagnostics(mean: Tensor, std: Tensor, generator: torch.Generator | None = None) -> dict:
    """The per-epoch diagnostics logged during training (cheap enough for ~1k encodings)."""
    z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device,
                                 dtype=mean.dtype)
    return {
        "mmd": mmd_to_prior(z, generator=generator),
        "logdet_cov": logdet_covariance(z),
        "mi": mutual_information(mean, std, z),
        "active_units": float(active_units(mean)),
    }


def measure(model: Trained, data: EvalData, settings: EvaluateParams) -> dict[str, Any]:
    """The diagnostics on the test encodings, and on the cell's own training images (train
    subsets are prefixes): covariance log-det on train vs test is the paper's Fig. 4."""
    mean, std = data.encodings(model, "test")
    n = settings.latent_size or len(mean)
    g = torch.Generator().manual_seed(settings.seed)
    out = {**latent_diagnostics(mean[:n], std[:n], generator=g), "latent_n": min(n, len(mean))}
    n_train = min(n, model.spec.train.train_size or n)
    m, s = data.encodings(model, "train", n_train)
    g = torch.Generator().manual_seed(settings.seed + 1)
    out.update({f"train_{k}": v for k, v in latent_diagnostics(m, s, generator=g).items()})
    out["train_latent_n"] = len(m)
    return out
