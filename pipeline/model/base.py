"""The two interfaces every model family implements.

Images are float tensors [B, 1, 28, 28] with binary values (dynamic binarization samples them
before they reach a model). All log-probabilities are in nats, summed over the 784 pixels or
the latent dimensions, one value per example.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGE_SHAPE = (1, 28, 28)
LOG_2PI = math.log(2 * math.pi)


class Encoder(nn.Module):
    """q(z|x) = N(mean(x), diag(std(x)^2)), with std >= std_floor."""

    latent_dim: int

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B,1,28,28] -> (mean [B,d], std [B,d])."""
        raise NotImplementedError


class Decoder(nn.Module):
    """p(x|z): a Bernoulli distribution over the 784 binary pixels, factorized or autoregressive."""

    autoregressive: bool = False

    def logits(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Bernoulli logits [B,1,28,28]. An autoregressive decoder needs x (teacher forcing):
        the logit of pixel i depends on z and on the pixels of x before i in raster order."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """Exact log p(x|z) [B], in nats; the sum in fp32 whatever precision the logits had
        (under bf16 autocast a bf16 sum over 784 pixels would be off by ~0.3 nats)."""
        return bernoulli_log_prob(x, at_least_fp32(self.logits(z, x)))

    @torch.no_grad()
    def sample(self, z: Tensor) -> Tensor:
        """x ~ p(x|z), binary [B,1,28,28] (torch's global RNG)."""
        return torch.bernoulli(torch.sigmoid(self.logits(z)))

    @torch.no_grad()
    def mean_image(self, z: Tensor) -> Tensor:
        """An image to show for z: pixel probabilities (factorized) or a sample (autoregressive)."""
        return torch.sigmoid(self.logits(z))


def at_least_fp32(t: Tensor) -> Tensor:
    """t in fp32 if it is half or bf16 (autocast output); fp32 and fp64 as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def gaussian_head(out: Tensor, std_floor: float) -> tuple[Tensor, Tensor]:
    """Split a [B, 2d] output into (mean, std) with std = softplus(raw) + std_floor.

    softplus keeps std > 0 smoothly; the floor keeps log q(z|x) = -sum log std - ... finite when an
    encoder becomes near-deterministic (MMD-VAE, alpha = 1, has no KL term pulling std up), which
    the importance-sampling log-likelihood estimate and the mutual-information estimate need.
    """
    mean, raw = at_least_fp32(out).chunk(2, dim=-1)  # fp32 under autocast too: the KL and IS need it
    return mean, F.softplus(raw) + std_floor


def init_gaussian_head(layer: nn.Linear, std_floor: float) -> None:
    """Set the std half of the bias to softplus^-1(1 - floor): q(z|x) starts with std ~ 1, like the
    prior, so the initial KL term is O(1) per dimension and the decoder sees z of prior scale."""
    d = layer.out_features // 2
    with torch.no_grad():
        layer.bias[d:].fill_(math.log(math.expm1(max(1.0 - std_floor, 1e-3))))


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """sum_pixels [x log sigmoid(l) + (1-x) log(1 - sigmoid(l))] = sum [x*l - softplus(l)].

    Works in logits: no probabilities are formed, so no log(0) and no clamping.
    """
    return (x * logits - F.softplus(logits)).flatten(1).sum(1)


def gaussian_log_prob(z: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(z; mean, diag(std^2)) summed over the last dimension."""
    return (-0.5 * ((z - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI).sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    return (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)


def kl_to_standard_normal(mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, diag(std^2)) || N(0, I)) [B], closed form (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean**2 + std**2 - 1.0 - 2.0 * torch.log(std)).sum(-1)


