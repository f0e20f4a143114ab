"""DCGAN-style convolutional encoder and factorized decoder, as in the InfoVAE authors' code.

Encoder: conv c0 4x4/2 (28 -> 14) -> conv c1 4x4/2 (14 -> 7) -> FC conv_fc -> 2 * latent_dim.
Decoder: FC conv_fc -> FC 7x7xc1 -> deconv c0 4x4/2 (7 -> 14) -> deconv 1 4x4/2 (14 -> 28) logits;
gaussian likelihood: the last deconv has 2 output maps, the mean's and the std's logits, two heads
on the same features as the authors' Fig. 4 decoder (pipeline.model.likelihood).
Activations follow the authors' TensorFlow code (and DCGAN, Radford et al. 2016): LeakyReLU(0.1)
in the encoder, ReLU in the decoder; no batch norm (the authors use none in the VAE models).
padding=1 reproduces TensorFlow's "SAME" padding for a 4x4 kernel with stride 2.
"""

from __future__ import annotations

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

LEAK = 0.1  # the authors' lrelu(x, rate=0.1)


class ConvEncoder(Encoder):
    def __init__(self, latent_dim: int, channels: list[int], fc: int, std_floor: float = 1e-3,
                 std_param: str = "sigmoid", init: str = "default", norm: str = "none"):
        super().__init__()
        c0, c1 = channels
        self.latent_dim, self.std_floor, self.std_param = latent_dim, float(std_floor), std_param
        self.body = nn.Sequential(
            nn.Conv2d(IMAGE_SHAPE[0], c0, 4, stride=2, padding=1), *hidden_norm(norm, c0, conv=True),
            nn.LeakyReLU(LEAK),  # 28 -> 14
            nn.Conv2d(c0, c1, 4, stride=2, padding=1), *hidden_norm(norm, c1, conv=True),
            nn.LeakyReLU(LEAK),  # 14 -> 7
            nn.Flatten(),
            nn.Linear(c1 * 7 * 7, fc), *hidden_norm(norm, fc), nn.LeakyReLU(LEAK),
        )
        self.head = nn.Linear(fc, 2 * latent_dim)
        apply_init(self, init)  # before the head's std bias, which belongs to the softplus choice
        init_gaussian_head(self.head, self.std_floor, std_param)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian_head(self.head(self.body(x)), self.std_floor, self.std_param)


class ConvDecoder(Decoder):
    def __init__(self, latent_dim: int, channels: list[int], fc: int, likelihood: str = "bernoulli",
                 std_floor: float = DECODER_STD_FLOOR):
        super().__init__()
        c0, c1 = channels
        self.latent_dim, self.likelihood, self.std_floor = latent_dim, likelihood, float(std_floor)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, fc), nn.ReLU(),
            nn.Linear(fc, c1 * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (c1, 7, 7)),
            nn.ConvTranspose2d(c1, c0, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(c0, output_channels(likelihood), 4, stride=2, padding=1),  # 14 -> 28, logits
        )

    def logits(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        # x is ignored: the pixels are conditionally independent given z.
        return self.net(z)
