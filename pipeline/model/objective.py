"""The InfoVAE objective (Zhao, Song, Ermon 2017, eq. 6), minimised, per image, in nats:

    L = E_q(z|x)[-log p(x|z)] + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) D(q(z) || p(z))

ELBO/VAE: alpha = 0, lambda = 1; beta-VAE: alpha + lambda - 1 = 0, beta = 1 - alpha;
MMD-VAE / AAE-like: alpha = 1 (no KL term). The divergence D is the one pluggable piece.

Loss scaling (objective.scaling). "per_image" minimises L above, the batch mean of per-image
nats. "authors" minimises it as the InfoVAE authors' PixelCNN code weighs and scales it
(ShengjiaZhao/PixelCNN, models.py and autoencoder.py: `decoder.loss + encoder.reg_loss`, with
the decoder's loss a reduce_mean of the pixel cross-entropies and the ELBO regulariser a
reduce_mean of the per-dim KL, both over batch and dims; their MMD/Stein/adversarial ones are
batch scalars, added as is):

    L_authors = (1/P) [ E[-log p(x|z)] + (1 - alpha) (P/d) KL + (alpha + lambda - 1) D ]
              = E[-log p(x|z)] / P + (1 - alpha) KL / d + (alpha + lambda - 1) D / P

with P = 784 pixels and d the latent dimension. lambda is a per-image weight under both
scalings: the D term is (alpha + lambda - 1) D per image, as with "per_image", and only the
conversion to their units (the 1/P, in this one place) differs. What "authors" changes per
image is the KL's weight, P/d times larger (78.4 at d = 10: their ELBO is a beta-VAE with
beta = P/d), and the whole is 1/P as large (which matters to the optimiser only through
clipping, weight decay and epsilon). So with alpha = 1 (no KL term), P L_authors = L_per_image:
a grid's lambda = 1000 means the same D weight under either scaling. Their ELBO run is
alpha = 0, lambda = 1; their "kernel" (MMD), Stein and adversarial runs add the regulariser
with weight 1 in their units, i.e. alpha = 1, lambda = P = 784 here. Terms.recon / kl stay
per-image nats either way.
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
from pipeline.params.vocab import divergence_weight

SCALINGS = ("per_image", "authors")

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
                 alpha: float, lambda_: float, scaling: str = "per_image"):
        super().__init__()
        if scaling not in SCALINGS:
            raise ValueError(f"unknown loss scaling {scaling!r}: one of {SCALINGS}")
        self.encoder, self.decoder, self.divergence = encoder, decoder, divergence
        self.alpha, self.lambda_, self.scaling = float(alpha), float(lambda_), scaling
        self.div_weight = divergence_weight(divergence.name, self.alpha, self.lambda_)

    @classmethod
    def build(cls, model: ModelParams, objective: ObjectiveParams) -> InfoVAE:
        return cls(build_encoder(model), build_decoder(model),
                   build_divergence(objective, model.latent_dim), objective.alpha, objective.lambda_,
                   objective.scaling)

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
        return Terms(self.loss(recon, kl, div, x[0].numel()), recon, kl, div, z, mean, std)

    def loss(self, recon: Tensor, kl: Tensor, div: Tensor, pixels: int) -> Tensor:
        """The scalar minimised from per-image recon [B], KL [B] and the batch's D (module docstring)."""
        if self.scaling == "authors":  # lambda per image: the D term is converted like the recon
            return recon.mean() / pixels + (1.0 - self.alpha) * kl.mean() / self.encoder.latent_dim \
                + self.div_weight * div / pixels
        return recon.mean() + (1.0 - self.alpha) * kl.mean() + self.div_weight * div
