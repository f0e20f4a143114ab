"""An adversarial D(q(z) || p(z)): a WGAN-GP critic on z, as in the InfoVAE authors' code.

The critic f (an MLP, d -> 512 -> 512 -> 1, LeakyReLU(0.1)) maximises

    E_p f(z) - E_q f(z) - gp * E_zhat (||grad f(zhat)|| - 1)^2          (Gulrajani et al. 2017, eq. 3)

over random interpolates zhat between prior and encoding samples; at its optimum the first two
terms are the Kantorovich-Rubinstein dual of W1(p, q) (Arjovsky et al. 2017, eq. 2). The
encoder's term is -E_q f(z), the part of that estimate that depends on z.

The critic and its Adam optimiser belong to this module: the training loop's optimiser takes the
encoder and decoder only (critic parameters: `self.critic.parameters()`), and calls `update`
once per model step. The optimiser state travels in the module's state_dict (torch's
`_extra_state` slot), so a checkpoint restores the adversary exactly.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pipeline.model.divergences.base import Divergence

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import AdversarialParams


def critic_mlp(latent_dim: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = latent_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.1)]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class AdversarialDivergence(Divergence):
    name = "adversarial"

    def __init__(self, params: AdversarialParams, latent_dim: int):
        super().__init__()
        self.params, self.latent_dim = params, latent_dim
        self.critic = critic_mlp(latent_dim, list(params.hidden))
        # Created on the first update, after the module has reached its device; a loaded or
        # moved optimiser state waits here until then (Optimizer.load_state_dict casts it to
        # the parameters' device).
        self._optimizer: torch.optim.Adam | None = None
        self._pending_state: dict[str, Any] | None = None

    @property
    def optimizer(self) -> torch.optim.Adam:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.params.lr,
                                               betas=tuple(self.params.betas))
            if self._pending_state is not None:
                self._optimizer.load_state_dict(self._pending_state)
                self._pending_state = None
        return self._optimizer

    def forward(self, z: Tensor) -> Tensor:
        """The critic's W1(p, q) estimate E_p f - E_q f on this batch; its z-gradient is that of
        -mean f(z) (the prior samples are constants)."""
        prior = torch.randn_like(z)
        return self.critic(prior).mean() - self.critic(z).mean()

    def gradient_penalty(self, prior: Tensor, z: Tensor) -> Tensor:
        """E (||grad_zhat f(zhat)|| - 1)^2, zhat = eps p + (1 - eps) q, eps ~ U[0, 1] per pair
        (Gulrajani et al. 2017, Algorithm 1): a soft 1-Lipschitz constraint."""
        eps = torch.rand(z.shape[0], 1, device=z.device, dtype=z.dtype)
        zhat = (eps * prior + (1.0 - eps) * z).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(zhat).sum(), zhat, create_graph=True)
        return ((grad.norm(dim=1) - 1.0) ** 2).mean()

    def update(self, z: Tensor) -> dict[str, float]:
        """`critic_steps` ascent steps on E_p f - E_q f - gp * penalty, with q's samples z."""
        z = z.detach()
        opt = self.optimizer
        for _ in range(self.params.critic_steps):
            # The model's backward pass also left gradients on the critic: drop them.
            opt.zero_grad(set_to_none=True)
            prior = torch.randn_like(z)
            w1 = self.critic(prior).mean() - self.critic(z).mean()
            gp = self.gradient_penalty(prior, z)
            loss = -w1 + self.params.gradient_penalty * gp
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        return {"critic_loss": loss.item(), "w1_estimate": w1.item(), "gradient_penalty": gp.item()}

    # --- checkpointing and devices -------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        """Stored under `<prefix>_extra_state` by state_dict(), also when nested in a model."""
        state = self._optimizer.state_dict() if self._optimizer is not None else self._pending_state
        return {"optimizer": copy.deepcopy(state)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # A copy: Optimizer.load_state_dict keeps tensors already on the right device as they
        # are, and Adam updates them in place, which would alter the caller's checkpoint.
        self._pending_state = copy.deepcopy(state["optimizer"])
        self._optimizer = None

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda()/.double() move the parameters but not Adam's moment buffers: park the
        # state and rebuild the optimiser on the next update, on the new device.
        if self._optimizer is not None:
            self._pending_state = self._optimizer.state_dict()
            self._optimizer = None
        return super()._apply(fn, *args, **kwargs)

    def extra_repr(self) -> str:
        p = self.params
        return f"gp={p.gradient_penalty}, lr={p.lr}, betas={tuple(p.betas)}, critic_steps={p.critic_steps}"
