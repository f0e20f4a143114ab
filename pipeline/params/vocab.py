"""One vocabulary for the study: grid axis names, the short labels of cells, the names of the
InfoVAE family's members (Zhao et al. 2017, Sec. 3.2 and Table 1) and of the divergences.
Every module that names a method, an axis or a label takes it from here."""

from __future__ import annotations

from typing import Any

from pipeline.params.divergences import DIVERGENCES

# Grid axis names accepted as shorthand for a params key (any dotted key of the model,
# objective or train section works as well), with the prefix a cell's label gives each.
AXES = {  # axis -> (dotted params key, label prefix)
    "divergence": ("objective.divergence", ""),
    "alpha": ("objective.alpha", "alpha="),
    "lambda": ("objective.lambda", "lambda="),
    "latent_dim": ("model.latent_dim", "d="),
    "train_size": ("train.train_size", "n="),
    "decoder": ("model.decoder", "dec="),
    "encoder": ("model.encoder", "enc="),
    "likelihood": ("model.likelihood", "p(x|z)="),  # bernoulli | gaussian (continuous pixels)
}
AXIS_KEYS = {axis: key for axis, (key, _) in AXES.items()}
LABEL_PREFIX = {key: prefix for key, prefix in AXES.values()}  # in label order



def divergence_label(divergence: str) -> str:
    """A divergence's name in tables ("MMD"), from its registration (the name if unregistered)."""
    entry = DIVERGENCES.get(divergence)
    return entry.label if entry else divergence


def divergence_order() -> list[str]:
    """The registered divergences in registration order (the paper's first)."""
    return list(DIVERGENCES)

# The paper's methods in the order its tables and figures list them, and their colours.
# "ELBO (784/d)" is the ELBO as the authors' PixelCNN code trains it (objective.scaling: authors):
# per-pixel and per-dimension means, i.e. per image a KL weighed 784/d (a beta-VAE, beta = 784/d).
# It is the "ELBO" row of their Fig. 3 and Table 1; plain "ELBO" weighs the KL 1 per image.
ELBO_AUTHORS = "ELBO (784/d)"
METHOD_COLORS = {"Stein-VAE": "tab:blue", "MMD-VAE": "tab:orange", "Adversarial-VAE": "tab:green",
                 ELBO_AUTHORS: "tab:red", "ELBO": "tab:brown", "Unregularized": "tab:purple"}


def attribute(key: str) -> str:
    """The Python attribute of a params key: `lambda` is a keyword, so the field is lambda_."""
    return "lambda_" if key == "lambda" else key


def method_name(divergence: str, alpha: float, lambda_: float, scaling: str = "per_image") -> str:
    """ELBO (alpha=0, lambda=1; "ELBO (784/d)" under the authors' loss scaling, whose KL weighs
    784/d per image), Unregularized (KL family, alpha=1), beta-VAE (KL family, beta = 1 - alpha),
    the paper's MMD-/Stein-/Adversarial-VAE (alpha = 1), and InfoVAE with its (alpha, lambda)
    otherwise. The scaling names only the ELBO: with alpha = 1 it changes no weight per image
    (lambda is per image under both, pipeline.model.objective), only the loss's overall scale."""
    if divergence == "kl":
        if alpha == 0:
            return ELBO_AUTHORS if scaling == "authors" else "ELBO"
        if alpha == 1:
            return "Unregularized"
        per = "x784/d" if scaling == "authors" else ""
        return f"beta-VAE (beta={1 - alpha:g}{per})"
    entry = DIVERGENCES.get(divergence)
    base = entry.paper_name if entry else divergence
    if alpha == 1:
        return base
    return f"InfoVAE-{divergence} (alpha={alpha:g}, lambda={lambda_:g})"


def divergence_weight(divergence: str, alpha: float, lambda_: float) -> float:
    """alpha + lambda - 1: the weight of D(q(z)||p(z)) in the objective; 0 for the KL (ELBO)
    family, which has no aggregate term (its beta-VAE weight is the KL's 1 - alpha). Here, with
    the names, because the schema's check and the objective (which runs without pydantic) share it."""
    return 0.0 if divergence == "kl" else alpha + lambda_ - 1.0


def cell_label(overrides: dict[str, Any]) -> str:
    """A cell's short name from its dotted-key overrides, axes in LABEL_PREFIX order:
    `mmd alpha=1 lambda=1000 d=10`."""
    def show(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else ("all" if v is None else str(v))

    parts = [f"{LABEL_PREFIX[k]}{show(v)}" for k, v in overrides.items() if k in LABEL_PREFIX]
    return " ".join(parts + [f"{k}={v}" for k, v in overrides.items() if k not in LABEL_PREFIX])


def key_order(key: str) -> tuple[int, str]:
    """Sort key of dotted params keys: the named axes first, in label order."""
    keys = list(LABEL_PREFIX)
    return (keys.index(key) if key in keys else len(keys), key)
