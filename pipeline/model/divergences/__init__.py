"""Pluggable divergences D(q(z) || p(z)), p(z) = N(0, I): the one piece an InfoVAE variant
changes (docs/design.md §1.2). `build_divergence` builds the one `objective.divergence` names,
from its entry in pipeline.params.divergences (a new divergence: its module plus one entry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.model.divergences.adversarial import AdversarialDivergence
from pipeline.model.divergences.base import Divergence
from pipeline.model.divergences.kl import KLDivergence
from pipeline.model.divergences.mmd import MMDDivergence, mmd
from pipeline.model.divergences.stein import SteinDivergence, stein_direction
from pipeline.params.divergences import divergence_entry, load, settings_of

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import ObjectiveParams

__all__ = [
    "AdversarialDivergence", "Divergence", "KLDivergence", "MMDDivergence", "SteinDivergence",
    "build_divergence", "mmd", "stein_direction",
]


def build_divergence(params: ObjectiveParams, latent_dim: int) -> Divergence:
    """The module registered for params.divergence (pipeline.params.divergences), on z [B, latent_dim]:
    Class(settings, latent_dim), or Class(latent_dim) for a divergence without settings."""
    entry = divergence_entry(params.divergence)
    cls = load(entry.builder)
    settings = settings_of(params, entry.name)  # params may be a plain namespace (bench_gpu)
    div = cls(latent_dim) if settings is None else cls(settings, latent_dim)
    if not isinstance(div, Divergence):
        raise TypeError(f"{entry.builder} built a {type(div).__name__}, not a Divergence")
    return div
