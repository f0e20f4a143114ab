"""Statistics of a model's codes (Zhao et al. 2017, Fig. 3 and Sec. 5.3): pure functions of
encodings, read by training (per-epoch diagnostics) and by the evaluation's latent metric.

Known-answer tests in tests/test_metrics_latent.py. `mean`, `std` [N, d] are the parameters of
q(z|x_i) for N inputs; `z` [N, d] samples from them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pipeline.model.base import LOG_2PI
from pipeline.model.divergences.mmd import BLOCK_SIZE, mmd

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z|x]) > 0.01


def mmd_to_prior(z: Tensor, kernel: str = "gaussian", bandwidth: str | float = "authors_v1",
                 generator: torch.Generator | None = None) -> float:
    """MMD^2 between the encodings and as many N(0, I) samples (the paper's Fig. 3A uses 40k
    of each); the biased V-statistic with the authors' kernel, as in training."""
    prior = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return float(mmd(z, prior, kernel=kernel, bandwidth=bandwidth, estimator="biased"))


def mmd_unbiased_to_prior(z: Tensor, kernel: str = "gaussian", bandwidth: str | float = "authors_v1",
                          generator: torch.Generator | None = None, block: int = BLOCK_SIZE) -> float:
    """Unbiased MMD^2_u between the n encodings z and n fresh N(0, I) samples y (Gretton et al.
    2012, eq. 3), with the authors' kernel as in training:

        MMD^2_u = sum_{i!=j} k(z_i,z_j) / n(n-1) + sum_{i!=j} k(y_i,y_j) / n(n-1) - 2 sum_ij k(z_i,y_j) / n^2

    E MMD^2_u = MMD^2(q, p) exactly (each sum averages pairs of independent draws; the V-statistic's
    diagonals k(z_i, z_i) = 1 add (2 - 2 mean k(z_i, y_i)) / n of bias), so it can come out
    negative when q = p. Summed in block x block tiles in float64 (pipeline.model.divergences.mmd),
    so 10k-40k samples need block^2 kernel values at a time, never n^2."""
    prior = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return float(mmd(z, prior, kernel=kernel, bandwidth=bandwidth, estimator="unbiased", block_size=block))


def sample_codes(mean: Tensor, std: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One z ~ q(z|x) = N(mean, diag std^2) per image: what the authors' evaluation reads
    (train_z in their mmd_vae_eval.py), not the posterior mean."""
    return mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)


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
