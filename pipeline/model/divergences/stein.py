"""Stein variational gradient toward p(z) = N(0, I) (Liu & Wang 2016, "Stein Variational
Gradient Descent", eq. 8), used as InfoVAE's Stein regulariser.

For the batch z_1..z_n and an RBF kernel k(a, b) = exp(-||a-b||^2 / h):

    phi(z_i) = 1/n sum_j [ k(z_j, z_i) score(z_j) + grad_{z_j} k(z_j, z_i) ],   score(z) = -z

The first term drives the particles toward high prior density, the second repels them from
each other (it is what makes the fixed point the whole distribution, not its mode). phi is the
steepest-descent direction of KL(q || p) in the RKHS; there is no divergence value to return,
so the module returns the authors' surrogate (ShengjiaZhao/PixelCNN models.py, `reg_loss =
-reduce_sum(pred * stop_gradient(stein_grad))`, summed over batch and dims)

    D_surrogate = - sum_i z_i . stopgrad(phi_i),   d D_surrogate / d z_i = -phi_i

so gradient descent moves each z_i along +phi_i; the 1/n inside phi already puts it on the
scale of the batch means of the other terms. The bandwidth (objective.stein.bandwidth) is the
authors' fixed h = 2 d (their kernel exp(-mean_k (a_k - b_k)^2 / (2 sigma^2)), sigma^2 = 1),
the median heuristic, or a number.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pipeline.model.divergences.base import Divergence
from pipeline.model.divergences.mmd import median_squared_distance, squared_distances

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import SteinParams


def stein_bandwidth(z: Tensor, bandwidth: str | float) -> float | Tensor:
    """h of k(a, b) = exp(-||a-b||^2 / h) for the batch z [n, d]:
    "authors": 2 d, fixed (their tf_stein_gradient(pred, sigma_sqr=1.0): exp(-||a-b||^2 / (2 sigma_sqr d)));
    "median": med^2 / log(n + 1), med^2 the median pairwise squared distance, detached (Liu & Wang
    2016, sec. 5: then sum_j k(z_i, z_j) ~ n exp(-med^2 / h) ~ 1, which balances each particle's
    own gradient against the influence of the others); or a positive number."""
    if bandwidth == "authors":
        return 2.0 * z.shape[1]
    if bandwidth == "median":
        return median_squared_distance(z) / math.log(z.shape[0] + 1)
    if isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and bandwidth > 0:
        return float(bandwidth)
    raise ValueError(f"unknown Stein bandwidth {bandwidth!r}: authors, median or a number > 0")


@torch.no_grad()
def stein_direction(z: Tensor, bandwidth: str | float = "authors") -> Tensor:
    """phi(z_i) [n, d] in closed form, detached (no autograd: the direction is a target, and
    grad_{z_j} k(z_j, z_i) = -2 (z_j - z_i) / h * k(z_j, z_i) is known)."""
    z = z.detach()
    n = z.shape[0]
    h = stein_bandwidth(z, bandwidth)
    k = torch.exp(-squared_distances(z, z) / h)  # symmetric: k[i, j] = k(z_j, z_i)
    k = k.fill_diagonal_(1.0)  # exact k(z, z) = 1 (the expansion may leave 1 - eps)
    kz = k @ z  # sum_j k(z_j, z_i) z_j
    driving = -kz  # score(z_j) = -z_j
    # sum_j -2 (z_j - z_i) / h k_ij = 2/h (z_i sum_j k_ij - sum_j k_ij z_j)
    repulsive = (2.0 / h) * (z * k.sum(1, keepdim=True) - kz)
    return (driving + repulsive) / n


class SteinDivergence(Divergence):
    """The authors' surrogate -sum_i z_i . stopgrad(phi_i) (module docstring): gradient descent on
    it moves each z_i along +phi_i, phi carrying the 1/n of a batch mean."""

    name = "stein"
    is_estimate = False  # the value is a surrogate; only its gradient means anything

    def __init__(self, params: SteinParams, latent_dim: int):
        super().__init__()
        self.params, self.latent_dim = params, latent_dim

    def forward(self, z: Tensor) -> Tensor:
        phi = stein_direction(z, self.params.bandwidth)
        return -(z * phi).sum()

    def extra_repr(self) -> str:
        return f"bandwidth={self.params.bandwidth}"
