"""The decoder's pixel likelihood p(x|z) (`model.likelihood`), and which inputs it models.

bernoulli (default): binary pixels, factorized (MLP, conv) or autoregressive (PixelCNN):

    log p(x|z) = sum_p [x_p l_p - softplus(l_p)],   l = the decoder's logits     (base.bernoulli_log_prob)

gaussian: grey levels in [0, 1] as they are (no binarization), factorized over the P = 784 pixels,
with a mean and a standard deviation per pixel, both functions of z:

    log p(x|z) = sum_p [ -(x_p - mu_p)^2 / (2 sigma_p^2) - log sigma_p - log(2 pi) / 2 ]
    mu = sigmoid(l_mu),   sigma = max(sigmoid(l_sigma), floor)

as the InfoVAE authors' Fig. 4 code (LordHui/InfoVAE mmd_vae_eval.py): their decoder's last
transposed convolution has two heads on the same features, the mean's and the std's, each through
a sigmoid, the std floored with tf.maximum (0.005 in the version with 50 x MMD on per-pixel means;
0.1 in a later one). So sigma is a network output per pixel and per z, in [floor, 1] -- not a
free per-pixel parameter. The decoder's `logits` are then [B, 2, 28, 28]: channel 0 is l_mu,
channel 1 l_sigma. The floor (`model.decoder_std_floor`) bounds the density: log p(x|z) <=
784 (-log floor - log(2 pi)/2), 3,434 nats at 0.005. A continuous density's NLL is in nats
of a density, not comparable with a Bernoulli NLL (of a probability): rows carry `likelihood`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pipeline.errors import PipelineError

LIKELIHOODS = ("bernoulli", "gaussian")
DECODER_STD_FLOOR = 0.005  # the authors' tf.maximum(stddev, 0.005)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def continuous_inputs(likelihood: str) -> bool:
    """Whether a model of this likelihood sees the grey levels as they are (no binarization)."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}: one of {LIKELIHOODS}")
    return likelihood == "gaussian"


def binarize_inputs(binarization: str, likelihood: str) -> bool:
    """Whether images of a split prepared with this data.binarization are sampled to binary before
    they reach a model of this likelihood: dynamic data, for a Bernoulli decoder. A gaussian one
    takes the grey levels, which only dynamic data keep (threshold and fixed store binary pixels)."""
    if not continuous_inputs(likelihood):
        return binarization == "dynamic"
    if binarization != "dynamic":
        raise PipelineError(f"model.likelihood {likelihood!r} models the grey levels, but the prepared "
                            f"data are binary (data.binarization {binarization!r}): prepare with "
                            "data.binarization: dynamic")
    return False


def output_channels(likelihood: str) -> int:
    """Channels of a factorized decoder's output: Bernoulli logits, or (l_mu, l_sigma)."""
    return 2 if continuous_inputs(likelihood) else 1


def gaussian_pixels(logits: Tensor, floor: float) -> tuple[Tensor, Tensor]:
    """(mu, sigma) [B, 1, 28, 28] from a gaussian decoder's logits [B, 2, 28, 28] (see above)."""
    l_mu, l_sigma = logits.split(1, dim=1)
    return torch.sigmoid(l_mu), torch.sigmoid(l_sigma).clamp_min(floor)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """sum_pixels log N(x; mean, std^2) [B], in nats (the gaussian equation above)."""
    z = (x - mean) / std
    return (-0.5 * z.square() - torch.log(std) - HALF_LOG_2PI).flatten(1).sum(1)


def gaussian_log_prob_table(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x_b; mean_m, std_m^2) summed over pixels for every pair [B, M], x [B, P], mean and
    std [M, P]: -1/2 sum_p (x^2 w - 2 x mu w + mu^2 w) - sum log sigma - P log(2 pi)/2 with
    w = 1/sigma^2, as matrix products. In float64: the three sums reach ~784/floor^2 = 3e7 and
    cancel, which fp32 would leave with errors of nats."""
    x, mean, std = x.double(), mean.double(), std.double()
    w = std.pow(-2)
    quad = x.square() @ w.T - 2.0 * x @ (mean * w).T + (mean.square() * w).sum(1)[None]
    return -0.5 * quad - torch.log(std).sum(1)[None] - HALF_LOG_2PI * x.shape[1]
