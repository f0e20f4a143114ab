"""The InfoVAE objective (Zhao, Song, Ermon 2017, eq. 6), minimised, per image, in nats:

    L = E_q(z|x)[-log p(x|z)] + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) D(q(z) || p(z))

ELBO/VAE: alpha = 0, lambda = 1; beta-VAE: alpha + lambda - 1 = 0, beta = 1 - alpha;
MMD-VAE / AAE-like: alpha = 1 (no KL term). The divergence D is the one pluggable piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pipeline.infra import accel
from pipeline.model import build_decoder, build_encoder
from pipeline.model.base import Decoder, Encoder, kl_to_standard_normal
from pipeline.model.divergences import build_divergence
from pipeline.model.divergences.base import Divergence

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import ModelParams, ObjectiveParams


@dataclass
class Terms:
    loss: Tensor  # the scalar minimised
    recon: Tensor  # [B] -log p(x|z), one sample of z per image
    kl: Tensor  # [B] KL(q(z|x) || p(z)), closed form
    div: Tensor  # scalar D(q(z) || p(z)) estimate on this batch (a surrogate for Stein)
    z: Tensor  # [B, d] the encodings (reparameterised samples)
    mean: Tensor
    std: Tensor

    @property
    def nelbo(self) -> Tensor:
        """[B] negative ELBO = recon + KL: an upper bound on -log p(x), comparable across runs."""
        return self.recon + self.kl


class InfoVAE(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder, divergence: Divergence,
                 alpha: float, lambda_: float):
        super().__init__()
        self.encoder, self.decoder, self.divergence = encoder, decoder, divergence
        self.alpha, self.lambda_ = float(alpha), float(lambda_)
        # The ELBO family ("kl") has no aggregate term: its D weight is irrelevant and zero.
        self.div_weight = 0.0 if divergence.name == "kl" else self.alpha + self.lambda_ - 1.0

    @classmethod
    def build(cls, model: ModelParams, objective: ObjectiveParams) -> InfoVAE:
        return cls(build_encoder(model), build_decoder(model),
                   build_divergence(objective, model.latent_dim), objective.alpha, objective.lambda_)

    def model_parameters(self) -> list[nn.Parameter]:
        """What the model's optimiser trains: encoder and decoder (an adversary trains itself)."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    amp_dtype: torch.dtype | None = None  # bf16 autocast of the two networks (pipeline.infra.accel)

    def terms(self, x: Tensor, noise: Tensor | None = None) -> Terms:
        # Autocast covers the networks only; their outputs come back fp32, and the KL and the
        # divergence (MMD kernel sums, Stein, critic) run outside it, in fp32.
        with accel.autocast(self.amp_dtype, x.device.type):
            mean, std = self.encoder(x)
        eps = torch.randn_like(mean) if noise is None else noise
        z = mean + std * eps  # reparameterisation (Kingma & Welling 2014)
        with accel.autocast(self.amp_dtype, x.device.type):
            recon = -self.decoder.log_prob(x, z)
        kl = kl_to_standard_normal(mean, std)
        div = self.divergence(z)
        loss = recon.mean() + (1.0 - self.alpha) * kl.mean() + self.div_weight * div
        return Terms(loss, recon, kl, div, z, mean, std)
