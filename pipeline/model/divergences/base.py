"""The one pluggable piece of an InfoVAE variant: the divergence D(q(z) || p(z)).

q(z) is the aggregate posterior, seen through a batch of encodings z ~ q(z|x_i); p(z) = N(0, I).
The objective (pipeline.model.objective) weights the returned term by alpha + lambda - 1.
"""

from __future__ import annotations

from torch import Tensor, nn


class Divergence(nn.Module):
    name: str = "?"
    # The term is a true divergence estimate (False: a surrogate whose gradient is what
    # matters, e.g. Stein's; its value is not comparable across runs).
    is_estimate: bool = True

    def forward(self, z: Tensor) -> Tensor:
        """A scalar, differentiable with respect to z [B, d]."""
        raise NotImplementedError

    def update(self, z: Tensor) -> dict[str, float]:
        """Called once per training step after the model's step, with z detached. Divergences
        that learn (the adversarial critic) take their own optimisation step here and return
        what to log; the rest do nothing."""
        return {}
