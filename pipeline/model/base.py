"""The two interfaces every model family implements.

Images are float tensors [B, 1, 28, 28]: binary values for a Bernoulli decoder (dynamic
binarization samples them before they reach a model), the grey levels in [0, 1] for a Gaussian
one (model.likelihood, pipeline.model.likelihood). All log-probabilities are in nats, summed over
the 784 pixels or the latent dimensions, one value per example.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.likelihood import DECODER_STD_FLOOR, gaussian_log_prob, gaussian_pixels

IMAGE_SHAPE = (1, 28, 28)
LOG_2PI = math.log(2 * math.pi)


class Encoder(nn.Module):
    """q(z|x) = N(mean(x), diag(std(x)^2)), with std >= std_floor."""

    latent_dim: int

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B,1,28,28] -> (mean [B,d], std [B,d])."""
        raise NotImplementedError


class Decoder(nn.Module):
    """p(x|z): a Bernoulli distribution over the 784 binary pixels, factorized or autoregressive;
    or (likelihood "gaussian", factorized only) a Gaussian over the 784 grey levels."""

    autoregressive: bool = False
    likelihood: str = "bernoulli"  # or "gaussian" (pipeline.model.likelihood)
    std_floor: float = DECODER_STD_FLOOR  # gaussian: sigma >= std_floor

    def logits(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Bernoulli logits [B,1,28,28] (gaussian: [B,2,28,28], the logits of mu and sigma).
        An autoregressive decoder needs x (teacher forcing): the logit of pixel i depends on z
        and on the pixels of x before i in raster order."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """Exact log p(x|z) [B], in nats; the sum in fp32 whatever precision the logits had
        (under bf16 autocast a bf16 sum over 784 pixels would be off by ~0.3 nats)."""
        logits = at_least_fp32(self.logits(z, x))
        if self.likelihood == "gaussian":
            return gaussian_log_prob(x, *gaussian_pixels(logits, self.std_floor))
        return bernoulli_log_prob(x, logits)

    @torch.no_grad()
    def sample(self, z: Tensor) -> Tensor:
        """x ~ p(x|z) [B,1,28,28] (torch's global RNG): binary, or mu + sigma eps (gaussian)."""
        if self.likelihood == "gaussian":
            mean, std = gaussian_pixels(self.logits(z), self.std_floor)
            return mean + std * torch.randn_like(mean)
        return torch.bernoulli(torch.sigmoid(self.logits(z)))

    @torch.no_grad()
    def mean_image(self, z: Tensor) -> Tensor:
        """An image to show for z: pixel probabilities (factorized), mu (gaussian) or a sample
        (autoregressive)."""
        if self.likelihood == "gaussian":
            return gaussian_pixels(self.logits(z), self.std_floor)[0]
        return torch.sigmoid(self.logits(z))


STD_PARAMS = ("sigmoid", "softplus")
INIT_SCHEMES = ("default", "xavier")
ENCODER_NORMS = ("none", "batch")


def hidden_norm(norm: str, width: int, conv: bool = False) -> list[nn.Module]:
    """The layer an encoder puts between a hidden layer and its activation: none, or BatchNorm
    (the authors' encoder, conv2d_bn_lrelu / fc_bn_lrelu in ShengjiaZhao/PixelCNN). BatchNorm keeps
    each hidden unit's spread over the batch at its learnt scale, so the head can widen or narrow
    the spread of the means across images by its own weights alone; without it, a divergence that
    only sees the batch's z (Stein's surrogate) finds it cheaper to move the std and lets the
    means' spread collapse (tests/test_models.py, the Stein-only known answer)."""
    if norm == "none":
        return []
    if norm != "batch":
        raise ValueError(f"unknown encoder norm {norm!r}: one of {ENCODER_NORMS}")
    return [nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)]


def at_least_fp32(t: Tensor) -> Tensor:
    """t in fp32 if it is half or bf16 (autocast output); fp32 and fp64 as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def gaussian_head(out: Tensor, std_floor: float, std_param: str = "sigmoid") -> tuple[Tensor, Tensor]:
    """Split a [B, 2d] output (mean, raw) into (mean, std).

    sigmoid (the default; the InfoVAE authors' encoder, ShengjiaZhao/PixelCNN models.py,
    `tf.maximum(sigmoid(.), 0.001)`): std = max(sigmoid(raw), std_floor), so std_floor <= std <= 1
    -- never wider than the prior. Without a KL term (alpha = 1) nothing else bounds the std of
    a latent dimension the decoder does not use; bounded, its codes stay at the prior's scale.
    softplus: std = softplus(raw) + std_floor, smooth and unbounded above (an unused dimension's
    std drifts to 4-6 under alpha = 1; kept as an option and for the ablation).
    The floor keeps log q(z|x) = -sum log std - ... finite when an encoder becomes
    near-deterministic (MMD-VAE, alpha = 1, has no KL term pulling std up), which the
    importance-sampling log-likelihood estimate and the mutual-information estimate need.
    """
    mean, raw = at_least_fp32(out).chunk(2, dim=-1)  # fp32 under autocast too: the KL and IS need it
    if std_param == "sigmoid":
        return mean, torch.sigmoid(raw).clamp_min(std_floor)
    if std_param != "softplus":
        raise ValueError(f"unknown std parametrisation {std_param!r}: one of {STD_PARAMS}")
    return mean, F.softplus(raw) + std_floor


def init_gaussian_head(layer: nn.Linear, std_floor: float, std_param: str = "sigmoid") -> None:
    """softplus: set the std half of the bias to softplus^-1(1 - floor): q(z|x) starts with std ~ 1,
    like the prior, so the initial KL term is O(1) per dimension and the decoder sees z of prior
    scale. sigmoid: left as the init scheme made it (the authors': zero bias, std ~ sigmoid(0) = 0.5)."""
    if std_param != "softplus":
        return
    d = layer.out_features // 2
    with torch.no_grad():
        layer.bias[d:].fill_(math.log(math.expm1(max(1.0 - std_floor, 1e-3))))


def apply_init(module: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear / Conv2d / ConvTranspose2d (and subclasses, e.g. masked convs,
    whose masks act in forward) of `module`.

    default: leave PyTorch's initialisation (Kaiming-uniform with a = sqrt(5)) untouched.
    xavier: the authors' TensorFlow default, tf.contrib.layers.xavier_initializer (Glorot and
    Bengio 2010, uniform): W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), so Var W = 2 / (fan_in +
    fan_out), with fan = channels x kernel area; biases zero (tf.zeros_initializer).
    """
    if scheme == "default":
        return
    if scheme != "xavier":
        raise ValueError(f"unknown init scheme {scheme!r}: one of {INIT_SCHEMES}")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """sum_pixels [x log sigmoid(l) + (1-x) log(1 - sigmoid(l))] = sum [x*l - softplus(l)].

    Works in logits: no probabilities are formed, so no log(0) and no clamping.
    """
    return (x * logits - F.softplus(logits)).flatten(1).sum(1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    return (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)


def kl_to_standard_normal(mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, diag(std^2)) || N(0, I)) [B], closed form (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean**2 + std**2 - 1.0 - 2.0 * torch.log(std)).sum(-1)


