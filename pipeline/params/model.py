"""The `model`, `objective` and `train` sections: what one training run is.

The same three sections configure the standalone training command and every sweep trial
(the sweep overrides single keys per grid cell and per Optuna suggestion).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.params.accel import AccelParams
from pipeline.params.base import Section
from pipeline.params.divergences import DIVERGENCES, divergence_entry, settings_of
from pipeline.params.vocab import divergence_weight


class ModelParams(Section):
    encoder: Literal["mlp", "conv"] = "mlp"  # mlp | conv (DCGAN-style)
    decoder: Literal["mlp", "conv", "pixelcnn"] = "mlp"  # mlp | conv | pixelcnn (gated, conditioned on z)
    latent_dim: int = Field(10, ge=1, le=512)
    hidden: list[int] = Field([512, 512], min_length=1)  # MLP widths (decoder mirrors them)
    conv_channels: list[int] = Field([64, 128], min_length=2, max_length=2)  # DCGAN-style
    conv_fc: int = Field(1024, ge=1)
    # the least q(z|x) std: keeps log q(z|x) finite for near-deterministic encoders (MMD-VAE has
    # no KL term pulling the std up), which the IS estimator needs.
    # std >= std_floor, so log q(z|x) stays finite (the authors': 1e-3)
    std_floor: float = Field(1e-3, ge=0.0, le=1.0)
    # q(z|x) std (pipeline.model.base.gaussian_head). sigmoid (the authors'): std = max(sigmoid(.),
    # floor) <= 1, never wider than the prior, started at ~0.5; softplus: std = softplus(.) + floor,
    # unbounded above (with alpha = 1 an unused latent dim's std drifts to 4-6), started at ~1.
    # sigmoid (bounded by 1, the authors') | softplus (unbounded, started at ~1)
    std_param: Literal["sigmoid", "softplus"] = "sigmoid"
    # The MLP encoder's means start 9x wider under xavier (s.d. across MNIST images 0.19 against
    # 0.02, beside a std of 0.5): with the PixelCNN decoder MMD-VAE then keeps z in use where
    # under default it leaves it (issue 20), while MLP decoders' codes can run beyond the MMD
    # kernel's reach; the grids of the authors' PixelCNN experiments set xavier.
    # default: PyTorch's layer init; xavier: Glorot-uniform weights, zero biases (the authors' TF default).
    init: Literal["default", "xavier"] = "default"
    # batch: BatchNorm after every hidden layer of the encoder, before its activation (the authors'
    # conv2d_bn_lrelu / fc_bn_lrelu, ShengjiaZhao/PixelCNN models.py). Without it the Stein
    # surrogate alone shrinks the spread of the means to 0 (collapse); with it the same updates
    # spread the means and shrink the std (docs/design.md, "The encoder's BatchNorm").
    # none | batch
    encoder_norm: Literal["none", "batch"] = "none"
    # gated: two-stack gated PixelCNN, z a global conditioning vector (van den Oord et al. 2016b;
    # no blind spot); single: single-stack masked PixelCNN, spatial z map, blind spot (ablation)
    pixelcnn_arch: Literal["gated", "single"] = "gated"
    pixelcnn_layers: int = Field(12, ge=2, le=64)  # first kernel 7 wide, then 3
    pixelcnn_maps: int = Field(32, ge=4, le=512)
    pixelcnn_cond_maps: int = Field(16, ge=1, le=512)  # single only: spatial z-map channels
    # p(x|z) (pipeline.model.likelihood). bernoulli: binary pixels (data.binarization); gaussian:
    # the grey levels as they are, a mean and a std per pixel (the authors' Fig. 4; mlp, conv only).
    # bernoulli (binary pixels) | gaussian (grey levels in [0, 1]; factorized decoders only)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    # gaussian only: sigma = max(sigmoid(.), decoder_std_floor) (the authors' 0.005)
    decoder_std_floor: float = Field(0.005, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_likelihood(self) -> ModelParams:
        if self.likelihood != "bernoulli" and self.decoder == "pixelcnn":
            raise ValueError(f"model.likelihood {self.likelihood!r} is for the factorized decoders "
                             "(mlp, conv): the PixelCNN models binary pixels; set model.likelihood: "
                             "bernoulli or model.decoder: mlp | conv")
        return self


class MMDParams(Section):
    kernel: Literal["gaussian", "imq"] = "gaussian"  # gaussian | imq (multi-scale inverse multiquadratic)
    # gaussian k = exp(-|a-b|^2 / h): h = 2*dim (authors v1), dim^2 (authors' later code),
    # "median" (median pairwise squared distance), or a positive number.
    # authors_v1 (2*dim) | authors_v2 (dim^2) | median | a number
    bandwidth: Literal["authors_v1", "authors_v2", "median"] | float = "authors_v1"
    # imq k = mean_s C_s / (C_s + |a-b|^2), C_s = 2 * dim * s (Tolstikhin et al.'s scales)
    imq_scales: list[float] = Field([0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0], min_length=1)
    estimator: Literal["biased", "unbiased"] = "biased"  # biased (V-statistic, the authors') | unbiased
    prior_samples: int = Field(200, ge=2)

    @model_validator(mode="after")
    def _check(self) -> MMDParams:
        if isinstance(self.bandwidth, float) and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth}")
        if any(s <= 0 for s in self.imq_scales):
            raise ValueError(f"imq_scales must be positive, got {self.imq_scales}")
        return self


class SteinParams(Section):
    # RBF k = exp(-|a-b|^2 / h) of the Stein direction (pipeline.model.divergences.stein): h = 2*dim,
    # fixed (the authors'), "median" (median pairwise squared distance / log(n + 1)), or a number.
    # authors (2*dim) | median | a number
    bandwidth: Literal["authors", "median"] | float = "authors"

    @model_validator(mode="after")
    def _check(self) -> SteinParams:
        if isinstance(self.bandwidth, float) and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth}")
        return self


class AdversarialParams(Section):
    # js: a discriminator on z with the non-saturating encoder term (WAE-GAN's; bounded below,
    # so the encoder cannot run away from a lagging adversary); wgan_gp: the authors' critic.
    # Why js is the default: pipeline.model.divergences.adversarial's docstring.
    loss: Literal["js", "wgan_gp"] = "js"
    hidden: list[int] = Field([512, 512], min_length=1)
    gradient_penalty: float = Field(0.0, ge=0.0)  # the authors' wgan_gp: 10
    lr: float = Field(5e-4, gt=0.0)  # WAE-GAN's lr_adv (half the model's 1e-3); the authors': 2e-5
    betas: list[float] = Field([0.5, 0.999], min_length=2, max_length=2)  # authors': [0.5, 0.9]
    critic_steps: int = Field(1, ge=1)


class ObjectiveParams(Section):
    """L = E[-log p(x|z)] + (1 - alpha) KL(q(z|x)||p(z)) + (alpha + lambda - 1) D(q(z)||p(z))."""

    # a registered divergence (pipeline.params.divergences): kl (ELBO family) | mmd | stein | adversarial
    divergence: str = "kl"
    # per_image: the terms in nats per image (sums over pixels and latent dims); authors: their
    # reduce_means, recon / 784, KL / d and D / 784: lambda stays a per-image weight (InfoVAE.loss).
    scaling: Literal["per_image", "authors"] = "per_image"
    # alpha <= 1 keeps the KL weight (1 - alpha) non-negative (alpha = 1: no KL term).
    alpha: float = Field(0.0, ge=-1e6, le=1.0)
    lambda_: float = Field(1.0, alias="lambda", ge=0.0, le=1e8)
    mmd: MMDParams = MMDParams()
    stein: SteinParams = SteinParams()
    adversarial: AdversarialParams = AdversarialParams()  # WAE-GAN discriminator on z, or WGAN-GP
    # objective.<name> of any other registered divergence with settings: an extra key, checked
    # against its entry's section (_check), so a new divergence needs no field here.

    model_config = {**Section.model_config, "populate_by_name": True, "extra": "allow"}

    @property
    def divergence_weight(self) -> float:
        return divergence_weight(self.divergence, self.alpha, self.lambda_)

    @classmethod
    def extra_sections(cls) -> dict[str, type[Section]]:
        """The settings sections of registered divergences that are not fields (objective.<name>)."""
        return {name: e.settings_class() for name, e in DIVERGENCES.items()
                if e.settings is not None and name not in cls.model_fields}

    def settings(self, name: str | None = None) -> Section | None:
        """The settings section of divergence `name` (default: this objective's), its defaults
        where params give none; None for a divergence without settings."""
        return settings_of(self, name or self.divergence)

    @field_validator("divergence")
    @classmethod
    def _known(cls, name: str) -> str:
        divergence_entry(name)  # the error lists the registered names
        return name

    @model_validator(mode="after")
    def _check(self) -> ObjectiveParams:
        extra = self.__pydantic_extra__ or {}
        sections = self.extra_sections()
        for key, value in extra.items():
            if key not in sections:
                raise ValueError(f"objective.{key}: unknown key (neither an objective setting nor the "
                                 f"settings of a registered divergence: {', '.join(sections) or 'none'})")
            if not isinstance(value, sections[key]):
                extra[key] = sections[key].model_validate(value)
        # Zhao et al. (2017), Prop. 2: the optimum is p(x,z) = q(x,z) only if the divergence
        # weight is non-negative; a negative one would reward moving q(z) away from p(z).
        if self.divergence != "kl" and self.divergence_weight < 0:
            raise ValueError(
                f"alpha + lambda - 1 = {self.divergence_weight:g} < 0 with divergence "
                f"{self.divergence!r}: the divergence weight must be >= 0 (raise lambda)"
            )
        return self


class TrainParams(Section):
    placement = frozenset({"threads", "device", "checkpoint_every"})

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(100, ge=2)
    # rmsprop: torch's (alpha 0.99, eps 1e-8 outside the root, mean square from 0); rmsprop_tf1:
    # tf.train.RMSPropOptimizer as the authors ran it (decay 0.9, eps 1e-10 inside, from 1).
    optimizer: Literal["rmsprop", "rmsprop_tf1", "adam"] = "rmsprop"
    lr: float = Field(1e-3, gt=0.0, le=1e6)
    grad_clip: float | None = Field(10.0, gt=0.0)  # the threshold of grad_clip_mode; null: none
    # norm: rescale so the global L2 norm <= grad_clip; value: clamp each entry to +-grad_clip
    # (the authors' tf.clip_by_value, c = 1).
    grad_clip_mode: Literal["norm", "value"] = "norm"
    # L2 penalty weight_decay / 2 * sum ||W||^2 over the weight tensors (not biases) of encoder
    # and decoder, added to the minimised loss (tf.contrib.layers.l2_regularizer's form).
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
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
