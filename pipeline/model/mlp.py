"""Fully connected encoder and factorized Bernoulli decoder (Kingma & Welling 2014, App. C)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from pipeline.model.base import (
    IMAGE_SHAPE,
    Decoder,
    Encoder,
    apply_init,
    gaussian_head,
    init_gaussian_head,
)

N_PIXELS = math.prod(IMAGE_SHAPE)


class MLPEncoder(Encoder):
    """784 -> hidden[0] -> ... -> hidden[-1] -> 2 * latent_dim, ReLU between layers."""

    def __init__(self, latent_dim: int, hidden: list[int], std_floor: float = 1e-3,
                 std_param: str = "softplus", init: str = "default"):
        super().__init__()
        self.latent_dim, self.std_floor, self.std_param = latent_dim, float(std_floor), std_param
        layers: list[nn.Module] = []
        width = N_PIXELS
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * latent_dim)
        apply_init(self, init)  # before the head's std bias, which belongs to the softplus choice
        init_gaussian_head(self.head, self.std_floor, std_param)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian_head(self.head(self.body(x.flatten(1))), self.std_floor, self.std_param)


class MLPDecoder(Decoder):
    """latent_dim -> reversed(hidden) -> 784 Bernoulli logits (factorized p(x|z))."""

    def __init__(self, latent_dim: int, hidden: list[int]):
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        width = latent_dim
        for h in reversed(hidden):
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, N_PIXELS))
        self.net = nn.Sequential(*layers)

    def logits(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        # x is ignored: the pixels are conditionally independent given z.
        return self.net(z).view(-1, *IMAGE_SHAPE)
