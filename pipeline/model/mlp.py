"""Fully connected encoder and factorized decoder (Kingma & Welling 2014, App. C): Bernoulli, or
Gaussian with a per-pixel mean and std (pipeline.model.likelihood)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from pipeline.model.base import (
    IMAGE_SHAPE,
    Decoder,
    Encoder,
    apply_init,
    gaussian_head,
    hidden_norm,
    init_gaussian_head,
)
from pipeline.model.likelihood import DECODER_STD_FLOOR, output_channels

N_PIXELS = math.prod(IMAGE_SHAPE)


class MLPEncoder(Encoder):
    """784 -> hidden[0] -> ... -> hidden[-1] -> 2 * latent_dim, ReLU between layers (after a
    BatchNorm with norm = "batch")."""

    def __init__(self, latent_dim: int, hidden: list[int], std_floor: float = 1e-3,
                 std_param: str = "sigmoid", init: str = "default", norm: str = "none"):
        super().__init__()
        self.latent_dim, self.std_floor, self.std_param = latent_dim, float(std_floor), std_param
        layers: list[nn.Module] = []
        width = N_PIXELS
        for h in hidden:
            layers += [nn.Linear(width, h), *hidden_norm(norm, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * latent_dim)
        apply_init(self, init)  # before the head's std bias, which belongs to the softplus choice
        init_gaussian_head(self.head, self.std_floor, std_param)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian_head(self.head(self.body(x.flatten(1))), self.std_floor, self.std_param)


class MLPDecoder(Decoder):
    """latent_dim -> reversed(hidden) -> 784 Bernoulli logits (factorized p(x|z)); gaussian:
    2 x 784, the logits of each pixel's mean and std."""

    def __init__(self, latent_dim: int, hidden: list[int], likelihood: str = "bernoulli",
                 std_floor: float = DECODER_STD_FLOOR):
        super().__init__()
        self.latent_dim, self.likelihood, self.std_floor = latent_dim, likelihood, float(std_floor)
        self.channels = output_channels(likelihood)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in reversed(hidden):
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, self.channels * N_PIXELS))
        self.net = nn.Sequential(*layers)

    def logits(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        # x is ignored: the pixels are conditionally independent given z.
        return self.net(z).view(-1, self.channels, *IMAGE_SHAPE[1:])
