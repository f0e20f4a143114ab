"""The `model`, `objective` and `train` sections: what one training run is.

The same three sections configure the standalone training command and every sweep trial
(the sweep overrides single keys per grid cell and per Optuna suggestion).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.params.accel import AccelParams
from pipeline.params.base import Section


class ModelParams(Section):
    encoder: Literal["mlp", "conv"] = "mlp"
    decoder: Literal["mlp", "conv", "pixelcnn"] = "mlp"
    latent_dim: int = Field(10, ge=1, le=512)
    hidden: list[int] = Field([512, 512], min_length=1)  # MLP widths (decoder mirrors them)
    conv_channels: list[int] = Field([64, 128], min_length=2, max_length=2)  # DCGAN-style
    conv_fc: int = Field(1024, ge=1)
    # q(z|x) std = softplus(.) + std_floor: keeps log q(z|x) finite for near-deterministic
    # encoders (MMD-VAE has no KL term pulling the std up), which the IS estimator needs.
    std_floor: float = Field(1e-3, ge=0.0, le=1.0)
    # gated: two-stack gated PixelCNN, z a global conditioning vector (van den Oord et al. 2016b;
    # no blind spot); single: single-stack masked PixelCNN, spatial z map, blind spot (ablation)
    pixelcnn_arch: Literal["gated", "single"] = "gated"
    pixelcnn_layers: int = Field(12, ge=2, le=64)  # first kernel 7 wide, then 3
    pixelcnn_maps: int = Field(32, ge=4, le=512)
    pixelcnn_cond_maps: int = Field(16, ge=1, le=512)  # single only: spatial z-map channels


class MMDParams(Section):
    kernel: Literal["gaussian", "imq"] = "gaussian"
    # gaussian k = exp(-|a-b|^2 / h): h = 2*dim (authors v1), dim^2 (authors' later code),
    # "median" (median pairwise squared distance), or a positive number.
    bandwidth: Literal["authors_v1", "authors_v2", "median"] | float = "authors_v1"
    # imq k = mean_s C_s / (C_s + |a-b|^2), C_s = 2 * dim * s (Tolstikhin et al.'s scales)
    imq_scales: list[float] = Field([0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0], min_length=1)
    estimator: Literal["biased", "unbiased"] = "biased"
    prior_samples: int = Field(200, ge=2)

    @model_validator(mode="after")
    def _check(self) -> MMDParams:
        if isinstance(self.bandwidth, float) and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth}")
        if any(s <= 0 for s in self.imq_scales):
            raise ValueError(f"imq_scales must be positive, got {self.imq_scales}")
        return self


class SteinParams(Section):
    bandwidth: Literal["median"] | float = "median"

    @model_validator(mode="after")
    def _check(self) -> SteinParams:
        if isinstance(self.bandwidth, float) and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth}")
        return self


class AdversarialParams(Section):
    hidden: list[int] = Field([512, 512], min_length=1)
    gradient_penalty: float = Field(10.0, ge=0.0)
    lr: float = Field(2e-5, gt=0.0)
    betas: list[float] = Field([0.5, 0.9], min_length=2, max_length=2)
    critic_steps: int = Field(1, ge=1)


class ObjectiveParams(Section):
    """L = E[-log p(x|z)] + (1 - alpha) KL(q(z|x)||p(z)) + (alpha + lambda - 1) D(q(z)||p(z))."""

    divergence: Literal["kl", "mmd", "stein", "adversarial"] = "kl"
    # alpha <= 1 keeps the KL weight (1 - alpha) non-negative (alpha = 1: no KL term).
    alpha: float = Field(0.0, ge=-1e6, le=1.0)
    lambda_: float = Field(1.0, alias="lambda", ge=0.0, le=1e8)
    mmd: MMDParams = MMDParams()
    stein: SteinParams = SteinParams()
    adversarial: AdversarialParams = AdversarialParams()

    model_config = {**Section.model_config, "populate_by_name": True}

    @property
    def divergence_weight(self) -> float:
        """alpha + lambda - 1: the weight of D(q(z)||p(z)); 0 for the KL (ELBO) family."""
        return 0.0 if self.divergence == "kl" else self.alpha + self.lambda_ - 1.0

    @model_validator(mode="after")
    def _check(self) -> ObjectiveParams:
        # Zhao et al. (2017), Prop. 2: the optimum is p(x,z) = q(x,z) only if the divergence
        # weight is non-negative; a negative one would reward moving q(z) away from p(z).
        if self.divergence != "kl" and self.alpha + self.lambda_ - 1.0 < 0:
            raise ValueError(
                f"alpha + lambda - 1 = {self.alpha + self.lambda_ - 1.0:g} < 0 with divergence "
                f"{self.divergence!r}: the divergence weight must be >= 0 (raise lambda)"
            )
        return self


class TrainParams(Section):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(100, ge=2)
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    lr: float = Field(1e-3, gt=0.0, le=1e6)
    grad_clip: float | None = Field(10.0, gt=0.0)  # max global gradient norm; null: none
    seed: int = Field(0, ge=0)
    train_size: int | None = Field(None, ge=1)  # first n train rows (nested subsets); null: all
    validation_size: int | None = Field(None, ge=1)  # first n validation rows; null: all
    threads: int = Field(1, ge=1)  # torch intra-op threads (in a sweep: the trial's CPUs)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when visible, else CPU
    # Per-epoch latent diagnostics (MMD to the prior, MI, log-det) on this many validation
    # encodings; 0 turns them off.
    diagnostics_size: int = Field(1000, ge=0)
    checkpoint_every: int = Field(1, ge=1)  # epochs between checkpoints
    accel: AccelParams = AccelParams()  # GPU fast paths (auto: on for CUDA only)
