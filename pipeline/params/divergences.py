"""The divergences a study may name in `objective.divergence`.

A divergence is one entry here: its name, the labels the report gives it, the class that
builds it and, where it has any, the section of its settings, read from `objective.<name>`.
Both are "module:Class" paths, imported when first needed: this table is read by the
vocabulary, which runs where neither torch nor pydantic is installed (bench/gpu_projection.py).
Adding a divergence is its module (under `pipeline/model/divergences/`, or anywhere importable)
plus one `register_divergence(...)` call; the schema, the grid, the method names and the
report's labels all read this table (docs/architecture.md, "Where a new piece goes").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DivergenceEntry:
    name: str  # the value of objective.divergence
    label: str  # the divergence in tables: "MMD"
    paper_name: str  # the alpha = 1 member of the family: "MMD-VAE"
    # "module:Class"; built as Class(settings, latent_dim), or Class(latent_dim) without settings
    builder: str
    settings: str | None = None  # "module:Class" of the objective.<name> section (a Section), or none

    def settings_class(self) -> Any:
        return None if self.settings is None else load(self.settings)


def load(path: str) -> Any:
    """The object a "module:attribute" path names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


DIVERGENCES: dict[str, DivergenceEntry] = {}


def register_divergence(entry: DivergenceEntry) -> DivergenceEntry:
    """Add a divergence to the table (a name registered twice is a mistake, not an override)."""
    if entry.name in DIVERGENCES and DIVERGENCES[entry.name] != entry:
        raise ValueError(f"divergence {entry.name!r} is registered already "
                         f"({DIVERGENCES[entry.name].builder})")
    if not entry.name.isidentifier():
        raise ValueError(f"divergence name {entry.name!r} must be an identifier (it names objective.<name>)")
    DIVERGENCES[entry.name] = entry
    return entry


def divergence_entry(name: str) -> DivergenceEntry:
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}: one of {', '.join(DIVERGENCES)} "
                         "(pipeline.params.divergences registers them)")
    return DIVERGENCES[name]


def settings_of(objective: Any, name: str) -> Any:
    """The settings section of divergence `name` in an objective (ObjectiveParams, or any object
    with the sections as attributes), its defaults where the objective has none; None for a
    divergence without settings."""
    entry = divergence_entry(name)
    if entry.settings is None:
        return None
    return getattr(objective, name, None) or load(entry.settings)()


_DIV, _SET = "pipeline.model.divergences", "pipeline.params.model"
register_divergence(DivergenceEntry("kl", "KL (ELBO family)", "ELBO", f"{_DIV}.kl:KLDivergence"))
register_divergence(DivergenceEntry("mmd", "MMD", "MMD-VAE", f"{_DIV}.mmd:MMDDivergence",
                                    f"{_SET}:MMDParams"))
register_divergence(DivergenceEntry("stein", "Stein", "Stein-VAE", f"{_DIV}.stein:SteinDivergence",
                                    f"{_SET}:SteinParams"))
register_divergence(DivergenceEntry("adversarial", "Adversarial", "Adversarial-VAE",
                                    f"{_DIV}.adversarial:AdversarialDivergence", f"{_SET}:AdversarialParams"))
