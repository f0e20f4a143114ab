"""Kernel maximum mean discrepancy between the encodings z ~ q(z) and samples of p(z) = N(0, I).

MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y)   (Gretton et al. 2012, JMLR, eq. 3)

estimated from x_1..x_n ~ Q, y_1..y_m ~ P either by the biased V-statistic (all pairs, the
InfoVAE authors' choice; Gretton et al. eq. 5) or by the unbiased U-statistic that leaves the
diagonals of Kxx and Kyy out (Gretton et al. eq. 3, Lemma 6). Every kernel here has k(a, a) = 1,
so values are on one scale whatever the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pipeline.model.divergences.base import Divergence

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import MMDParams

Bandwidth = str | float
DEFAULT_IMQ_SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BLOCK_SIZE = 4096  # 4096^2 fp32 = 64 MiB per kernel tile
MEDIAN_MAX_POINTS = 2048  # the median heuristic looks at most at this many pooled points


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """||x_i - y_j||^2 [n, m] via |x|^2 + |y|^2 - 2 x.y (one fused matmul); the expansion can come
    out slightly negative by cancellation, hence the clamp. (In-place ops here and below are
    autograd-safe: no backward formula needs a value they overwrite; they halve the memory
    traffic that dominates a 40k x 40k evaluation.)"""
    norms = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0)
    return torch.addmm(norms, x, y.T, alpha=-2.0).clamp_min_(0.0)


def median_squared_distance(points: Tensor, max_points: int = MEDIAN_MAX_POINTS) -> Tensor:
    """Median of the off-diagonal pairwise squared distances, detached (a heuristic bandwidth is
    a constant of the kernel, not something to differentiate). Large samples are thinned to
    evenly spaced rows: deterministic, and it leaves the global RNG alone."""
    points = points.detach()
    n = points.shape[0]
    if n > max_points:
        points = points[torch.linspace(0, n - 1, max_points, device=points.device).long()]
        n = max_points
    iu = torch.triu_indices(n, n, offset=1, device=points.device)
    sq = squared_distances(points, points)[iu[0], iu[1]]
    # Identical points would give h = 0 and 0/0 in the kernel: keep h strictly positive.
    return sq.median().clamp_min(1e-12)


def resolve_bandwidth(bandwidth: Bandwidth, x: Tensor, y: Tensor) -> float | Tensor:
    """h of the Gaussian kernel exp(-||a-b||^2 / h) for dimension d = x.shape[1]."""
    d = x.shape[1]
    if bandwidth == "authors_v1":  # exp(-||a-b||^2 / (2 d)): Zhao et al.'s first code
        return 2.0 * d
    if bandwidth == "authors_v2":  # exp(-mean_k (a_k-b_k)^2 / d): their later code
        return float(d * d)
    if bandwidth == "median":  # median heuristic on the pooled sample (Gretton et al. 2012, 8)
        return median_squared_distance(torch.cat([x, y]))
    if isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and bandwidth > 0:
        return float(bandwidth)
    raise ValueError(f"unknown bandwidth {bandwidth!r}: authors_v1, authors_v2, median or a number > 0")


def kernel_from_sq(sq: Tensor, kernel: str, h: float | Tensor, d: int,
                   imq_scales: Sequence[float] = DEFAULT_IMQ_SCALES) -> Tensor:
    """k as a function of the squared distance; k = 1 at distance 0 for every kernel."""
    if kernel == "gaussian":
        return sq.div(-h).exp_()
    if kernel == "imq":
        # Tolstikhin et al. 2018 (WAE), C = 2 d sigma^2 s with prior variance sigma^2 = 1. The
        # 1/S keeps k(a, a) = 1 and is applied to every term alike: the within-sample and cross
        # terms must share one normalisation, or MMD(P, P) != 0.
        out = torch.zeros_like(sq)
        for s in imq_scales:
            c = 2.0 * d * float(s)
            out.add_(torch.div(c, sq + c))
        return out.div_(len(imq_scales))
    raise ValueError(f"unknown kernel {kernel!r}: gaussian or imq")


def kernel_matrix(x: Tensor, y: Tensor, kernel: str = "gaussian", h: float | Tensor = 1.0,
                  imq_scales: Sequence[float] = DEFAULT_IMQ_SCALES) -> Tensor:
    """The full [n, m] kernel matrix (small inputs; `mmd` itself works in tiles)."""
    return kernel_from_sq(squared_distances(x, y), kernel, h, x.shape[1], imq_scales)


def _kernel_sum(x: Tensor, y: Tensor | None, kernel: str, h: float | Tensor,
                imq_scales: Sequence[float], block: int, exclude_diagonal: bool) -> Tensor:
    """sum_ij k(x_i, y_j) in float64, tile by tile, so no more than block^2 kernel values exist
    at once. y=None: the symmetric sum over x against itself; only tiles on or above the
    diagonal are formed (the others are their transposes) and, if asked, k(x_i, x_i) is left out."""
    d = x.shape[1]
    total = x.new_zeros((), dtype=torch.float64)
    other = x if y is None else y
    for i in range(0, x.shape[0], block):
        xi = x[i:i + block]
        for j in range(i if y is None else 0, other.shape[0], block):
            k = kernel_from_sq(squared_distances(xi, other[j:j + block]), kernel, h, d, imq_scales)
            # fp32 row sums (short, accurate), then fp64 across rows and tiles: a 40k x 40k sum
            # of O(1) terms must keep MMD values of ~1e-5 well above rounding.
            s = k.sum(1).sum(dtype=torch.float64)
            if y is None and j == i:
                if exclude_diagonal:
                    s = s - k.diagonal().sum(dtype=torch.float64)
            elif y is None:
                s = 2.0 * s  # the mirror tile below the diagonal
            total = total + s
    return total


def mmd(x: Tensor, y: Tensor, kernel: str = "gaussian", bandwidth: Bandwidth = "authors_v1",
        estimator: str = "biased", imq_scales: Sequence[float] = DEFAULT_IMQ_SCALES,
        block_size: int = BLOCK_SIZE) -> Tensor:
    """MMD^2 estimate between samples x [n, d] and y [m, d], differentiable w.r.t. both.

    biased:   mean(Kxx) + mean(Kyy) - 2 mean(Kxy)                        (V-statistic)
    unbiased: sum_{i!=j} Kxx / n(n-1) + sum_{i!=j} Kyy / m(m-1) - 2 mean(Kxy)  (U-statistic)
    The Gaussian bandwidth is resolved once from the whole sample (imq ignores it: its scales
    are set by d), then sums run in tiles of block_size^2 (40k x 40k needs 64 MiB at a time, not
    6 GiB; about 35 s on one CPU thread for d = 10)."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need x [n, d] and y [m, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    if estimator not in ("biased", "unbiased"):
        raise ValueError(f"unknown estimator {estimator!r}: biased or unbiased")
    n, m = x.shape[0], y.shape[0]
    unbiased = estimator == "unbiased"
    if (n < 2 or m < 2) if unbiased else (n < 1 or m < 1):
        raise ValueError(f"too few samples for the {estimator} estimator: n={n}, m={m}")
    h = resolve_bandwidth(bandwidth, x, y) if kernel == "gaussian" else 1.0
    args = (kernel, h, imq_scales, block_size)
    kxx = _kernel_sum(x, None, *args, exclude_diagonal=unbiased)
    kyy = _kernel_sum(y, None, *args, exclude_diagonal=unbiased)
    kxy = _kernel_sum(x, y, *args, exclude_diagonal=False)
    nxx, nyy = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return (kxx / nxx + kyy / nyy - 2.0 * kxy / (n * m)).to(x.dtype)


class MMDDivergence(Divergence):
    """D = MMD^2(q(z), p(z)) between the batch of encodings and fresh prior samples (InfoVAE's
    MMD-VAE; the authors draw ~200 prior samples per batch)."""

    name = "mmd"

    def __init__(self, params: MMDParams, latent_dim: int):
        super().__init__()
        self.params, self.latent_dim = params, latent_dim

    def forward(self, z: Tensor) -> Tensor:
        p = self.params
        # torch's global RNG on z's device: a checkpoint of the RNG state replays the samples.
        prior = torch.randn(p.prior_samples, z.shape[1], device=z.device, dtype=z.dtype)
        return mmd(z, prior, p.kernel, p.bandwidth, p.estimator, p.imq_scales)

    def extra_repr(self) -> str:
        p = self.params
        return f"kernel={p.kernel}, bandwidth={p.bandwidth}, estimator={p.estimator}, m={p.prior_samples}"

