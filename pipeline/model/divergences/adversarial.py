"""An adversarial D(q(z) || p(z)): an MLP adversary on z (d -> 512 -> 512 -> 1, LeakyReLU(0.1)).

Two losses (objective.adversarial.loss):

- `js` (the default): a discriminator D trained by the logistic loss
  softplus(-D(z_p)) + softplus(D(z_q)), prior samples labelled 1, encodings 0, whose optimum is
  the Jensen-Shannon divergence (Goodfellow et al. 2014, Thm. 1; logged: js_estimate, the lower
  bound log 2 - loss / 2). The encoder's term is WAE-GAN's non-saturating -E_q log sigmoid(D(z))
  (Tolstikhin et al. 2018, Alg. 2; tolstikhin/wae, wae.py: a 4 x 512 discriminator on z, Adam,
  lr_adv = half the model's lr, one adversary step per model step), less log 2, its value where
  D cannot tell q from p: ~0 once q matches p, as the other divergences, and >= -log 2.
  Adam lr 5e-4, betas (0.5, 0.999), no gradient penalty.
- `wgan_gp`: the InfoVAE authors' WGAN-GP critic f, maximising
  E_p f(z) - E_q f(z) - gp * E_zhat (||grad f(zhat)|| - 1)^2 (Gulrajani et al. 2017, eq. 3)
  over interpolates zhat between prior and encoding samples; at its optimum the first two terms
  are the Kantorovich-Rubinstein dual of W1(p, q) (Arjovsky et al. 2017). The encoder's term
  is -E_q f(z). Their settings: Adam lr 2e-5, betas (0.5, 0.9), gp 10, one critic step.

Why `js` is the default. With the authors' settings the encoder runs away: its term -E_q f(z)
is unbounded below wherever the critic has not yet bent f back (the gradient penalty holds f
1-Lipschitz only on the interpolates), weighted alpha + lambda - 1 = 100 per image, and
followed by the model's optimiser (RMSProp 1e-3, whose steps are ~lr whatever the weight) 50
times faster than the critic's Adam at 2e-5 can adapt. Measured (MLP 784-256-256-10, batch 100,
MNIST, RMSProp 1e-3, clip 10, lambda 100, one thread): the W1 estimate E_p f - E_q f stays
negative (-1 to -2: the critic is beaten, q sits where f is high) from step 250 on, and at step
2500 the encodings' second moment per dimension is 3.5e4, KL(q(z|x)||p) 1.7e5 nats, recon 229,
as the laptop run's cells (validation NELBO 2272 to 330,258 nats). With `js` the same run's
second moment stays 0.7 to 1.2 (the prior's is 1), the JS estimate within 0.05 of 0, recon 97.6
at step 2500. The non-saturating term is bounded below and its gradient vanishes once D is
fooled, so a lagging adversary cannot be exploited without limit. (`wgan_gp` with Gulrajani et
al.'s critic settings, lr 1e-4 and 5 critic steps, did not run away but oscillated: second moment
up to 46, W1 up to 7.5, recon 168 at step 2500, at 3.6 times the CPU.) Over 300 steps of a
784-64-10 MLP (`tests/test_divergences.py`, seeds 0-3) the last 100 steps' second moment is
1.0-1.3 with `js` and 87-630 with the authors' `wgan_gp`; that test keeps the measurement.

The adversary and its Adam optimiser belong to this module: the training loop's optimiser takes
the encoder and decoder only (adversary parameters: `self.critic.parameters()`), and calls
`update` once per model step. The optimiser state travels in the module's state_dict (torch's
`_extra_state` slot), so a checkpoint restores the adversary exactly.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

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
        self.is_estimate = params.loss == "wgan_gp"  # js: the encoder's term is a surrogate
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
        """The encoder's term on this batch. wgan_gp: the critic's W1(p, q) estimate
        E_p f - E_q f (its z-gradient is that of -mean f(z); the prior samples are constants).
        js: the non-saturating term -E_q log (2 sigmoid(D(z))) = E_q softplus(-D(z)) - log 2,
        0 where D cannot tell q from p (D = 0), bounded below by -log 2."""
        if self.params.loss == "js":
            return F.softplus(-self.critic(z)).mean() - math.log(2.0)
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
        """`critic_steps` steps of the adversary on prior samples against q's samples z.
        wgan_gp: ascent on E_p f - E_q f - gp * penalty; js: descent on the logistic loss
        softplus(-D(p)) + softplus(D(q)) (+ gp * penalty when gp > 0)."""
        z = z.detach()
        opt, p = self.optimizer, self.params
        for _ in range(p.critic_steps):
            # The model's backward pass also left gradients on the critic: drop them.
            opt.zero_grad(set_to_none=True)
            prior = torch.randn_like(z)
            f_p, f_q = self.critic(prior), self.critic(z)
            gp = self.gradient_penalty(prior, z) if p.gradient_penalty > 0 else torch.zeros(())
            if p.loss == "js":
                bce = F.softplus(-f_p).mean() + F.softplus(f_q).mean()
                # JS(p, q) >= log 2 - bce / 2 for any D (Goodfellow et al. 2014, Thm. 1).
                estimate, key = math.log(2.0) - 0.5 * bce, "js_estimate"
                loss = bce + p.gradient_penalty * gp
            else:
                estimate, key = f_p.mean() - f_q.mean(), "w1_estimate"
                loss = -estimate + p.gradient_penalty * gp
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        return {"critic_loss": loss.item(), key: estimate.item(), "gradient_penalty": gp.item()}

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
        return (f"loss={p.loss}, gp={p.gradient_penalty}, lr={p.lr}, betas={tuple(p.betas)}, "
                f"critic_steps={p.critic_steps}")
