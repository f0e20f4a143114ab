"""Pluggable divergences D(q(z) || p(z)), p(z) = N(0, I): the one piece an InfoVAE variant
changes (docs/design.md §1.2). `build_divergence` maps the `objective.divergence` name to one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.model.divergences.adversarial import AdversarialDivergence
from pipeline.model.divergences.base import Divergence
from pipeline.model.divergences.kl import KLDivergence
from pipeline.model.divergences.mmd import MMDDivergence, mmd
from pipeline.model.divergences.stein import SteinDivergence, stein_direction

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import ObjectiveParams

__all__ = [
    "AdversarialDivergence", "Divergence", "KLDivergence", "MMDDivergence", "SteinDivergence",
    "build_divergence", "mmd", "stein_direction",
]


def build_divergence(params: ObjectiveParams, latent_dim: int) -> Divergence:
    """The module for params.divergence ("kl", "mmd", "stein", "adversarial") on z [B, latent_dim]."""
    name = params.divergence
    if name == "kl":
        return KLDivergence(latent_dim)
    if name == "mmd":
        return MMDDivergence(params.mmd, latent_dim)
    if name == "stein":
        return SteinDivergence(params.stein, latent_dim)
    if name == "adversarial":
        return AdversarialDivergence(params.adversarial, latent_dim)
    raise ValueError(f"unknown divergence {name!r}: kl, mmd, stein or adversarial")
