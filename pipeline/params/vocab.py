"""Human names of the InfoVAE family's members (Zhao et al. 2017, Sec. 3.2 and Table 1)."""

from __future__ import annotations

PAPER_NAMES = {"mmd": "MMD-VAE", "stein": "Stein-VAE", "adversarial": "Adversarial-VAE"}


def method_name(divergence: str, alpha: float, lambda_: float) -> str:
    """ELBO (alpha=0, lambda=1), Unregularized (KL family, alpha=1), beta-VAE (KL family,
    beta = 1 - alpha), the paper's MMD-/Stein-/Adversarial-VAE (alpha = 1), and InfoVAE with
    its (alpha, lambda) otherwise."""
    if divergence == "kl":
        if alpha == 0:
            return "ELBO"
        if alpha == 1:
            return "Unregularized"
        return f"beta-VAE (beta={1 - alpha:g})"
    base = PAPER_NAMES.get(divergence, divergence)
    if alpha == 1:
        return base
    return f"InfoVAE-{divergence} (alpha={alpha:g}, lambda={lambda_:g})"
