"""Annealed importance sampling (AIS) estimates of log p(x), in nats per example.

Wu, Burda, Salakhutdinov, Grosse (2017), "On the Quantitative Analysis of Decoder-Based
Generative Models", after Neal (2001). Unlike IS with q(z|x) (pipeline.evaluation.loglik), no
encoder is involved: the chains start at the prior and are annealed to the posterior along

    f_t(z) = p(z) p(x|z)^beta_t,   0 = beta_0 < beta_1 < ... < beta_T = 1,

    log w = sum_{t=1..T} (beta_t - beta_{t-1}) log p(x | z_{t-1}),   z_0 ~ p(z) = N(0, I),
    z_t ~ T_t(. | z_{t-1})  (an HMC transition leaving f_t invariant, t = 1..T-1),

    log p(x) ~= log (1/K) sum_k w_k                                                     (AIS)

over K independent chains. E[w] = p(x) exactly for any T >= 1 and any kernels leaving their f_t
invariant (Neal 2001), so the estimate is a stochastic lower bound (Jensen: E log <= log E) that
tightens as T or K grows; T = 1 is prior sampling. The schedule is Wu et al.'s sigmoidal one,
beta_t = (s(t) - s(0)) / (s(T) - s(0)), s(t) = sigmoid(delta (2t/T - 1)), delta = 4.

Transitions: one HMC step per intermediate distribution (identity mass, L leapfrog steps of size
eps, Metropolis-Hastings correction). Wu et al. adapt eps while annealing towards an acceptance
rate of 0.65; adapting a chain's kernel from its own past breaks the invariance argument that
makes E[w] = p(x), so here a separate pilot run (its own chains and noise) does the adapting,
eps <- eps * (1.02 if mean acceptance > 0.65 else 0.98) after each transition, and the counted
run reuses the pilot's per-step eps for its example, fixed: exact at the price of the pilot's
passes. Everything is per example, so one example's estimate does not depend on the others.

Cost: (K + pilot chains) x (1 + (T - 1) L) decoder passes (each forward + backward in z) per
example; decoder calls see at most `rows` z's. Noise comes from one CPU generator per (seed,
example, run), so an estimate does not depend on how examples were chunked, nor (up to
floating point) on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.evaluation.loglik import (
    LogLik,
    LoglikEstimate,
    Progress,
    _block_seed,
    decoder_log_lik,
)
from pipeline.model.objective import InfoVAE

PILOT_CHAINS = 4  # the step-size pilot's chains (part of the estimator, not a setting)
TARGET_ACCEPT = 0.65  # Wu et al.
INITIAL_STEP = 0.1
SCHEDULES = ("sigmoid", "linear")


@dataclass(frozen=True)
class AISEstimate(LoglikEstimate):
    """An AIS estimate: `samples` is K (chains), with the annealing settings and diagnostics."""

    steps: int = 0
    leapfrog: int = 0
    accept_rate: float = math.nan  # counted chains' mean MH acceptance probability
    passes_per_example: int = 0  # decoder forward+backward passes per example, pilot included

    def summary(self, prefix: str) -> dict[str, float | int]:
        return {**super().summary(prefix), f"{prefix}_steps": self.steps,
                f"{prefix}_accept": self.accept_rate}


def beta_schedule(steps: int, kind: str = "sigmoid", delta: float = 4.0) -> Tensor:
    """beta_0 = 0 < ... < beta_T = 1 (float64, [T + 1]): sigmoidal (Wu et al.) or linear."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    if kind == "linear":
        return t
    if kind != "sigmoid":
        raise ValueError(f"unknown schedule {kind!r}: one of {SCHEDULES}")
    s = torch.sigmoid(delta * (2 * t - 1))
    return (s - s[0]) / (s[-1] - s[0])


def _value_and_grad(log_lik: LogLik, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """log p(x|z) [b, k] and its gradient in z [b, k, d]; parameters' .grad untouched."""
    with torch.enable_grad():
        zr = z.detach().requires_grad_(True)
        ll = log_lik(x, zr)
        (g,) = torch.autograd.grad(ll.sum(), zr)
    return ll.detach(), g


class _Noise:
    """One CPU generator per example: its draws are the same whatever else is in the chunk, and
    on any device (drawn on the CPU, moved in one copy: no per-example kernel launches)."""

    def __init__(self, seed: int, keys: range, stream: int, chains: int, device: torch.device,
                 dtype: torch.dtype):
        self.gens = [torch.Generator().manual_seed(_block_seed(seed, k, stream)) for k in keys]
        self.k, self.device, self.dtype = chains, device, dtype

    def normal(self, d: int) -> Tensor:
        return torch.stack([torch.randn(self.k, d, generator=g, dtype=self.dtype)
                            for g in self.gens]).to(self.device, non_blocking=True)

    def uniform(self) -> Tensor:
        return torch.stack([torch.rand(self.k, generator=g, dtype=self.dtype)
                            for g in self.gens]).to(self.device, non_blocking=True)


def _hmc(log_lik: LogLik, x: Tensor, z: Tensor, ll: Tensor, g: Tensor, beta: float, eps: Tensor,
         leapfrog: int, noise: _Noise) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One HMC step for f(z) = N(z; 0, I) p(x|z)^beta, U = |z|^2/2 - beta log p(x|z); eps [b, 1, 1].
    Returns the new (z, log p(x|z), its gradient) and the acceptance probabilities [b, k]."""
    p0 = noise.normal(z.shape[-1])
    log_u = torch.log(noise.uniform())
    zn, lln, gn = z, ll, g
    p = p0 - 0.5 * eps * (zn - beta * gn)
    for step in range(leapfrog):
        zn = zn + eps * p
        lln, gn = _value_and_grad(log_lik, x, zn)
        grad_u = zn - beta * gn
        p = p - (eps if step < leapfrog - 1 else 0.5 * eps) * grad_u
    h0 = 0.5 * z.square().sum(-1) - beta * ll + 0.5 * p0.square().sum(-1)
    h1 = 0.5 * zn.square().sum(-1) - beta * lln + 0.5 * p.square().sum(-1)
    log_a = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0.0)  # a diverged proposal: rejected
    accept = log_u < log_a
    keep = accept[..., None]
    return (torch.where(keep, zn, z), torch.where(accept, lln, ll), torch.where(keep, gn, g),
            log_a.exp())


def _anneal(log_lik: LogLik, x: Tensor, d: int, betas: Tensor, leapfrog: int, noise: _Noise,
            step_sizes: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One AIS run on the chunk x [b, ...]: (log w [b, k] float64, the per-step eps [T-1, b] used,
    the mean acceptance [b]). step_sizes None: adapt eps (a pilot run)."""
    b, steps = x.shape[0], betas.numel() - 1
    z = noise.normal(d)
    ll, g = _value_and_grad(log_lik, x, z)
    log_w = torch.zeros(ll.shape, dtype=torch.float64, device=ll.device)
    used = torch.empty(max(steps - 1, 0), b, dtype=z.dtype, device=z.device)
    eps = torch.full((b,), INITIAL_STEP, dtype=z.dtype, device=z.device)
    accept = torch.zeros(b, dtype=torch.float64, device=z.device)
    for t in range(1, steps + 1):
        log_w += float(betas[t] - betas[t - 1]) * ll.double()
        if t == steps:  # the last transition would not change the weight
            break
        if step_sizes is not None:
            eps = step_sizes[t - 1]
        used[t - 1] = eps
        z, ll, g, a = _hmc(log_lik, x, z, ll, g, float(betas[t]), eps[:, None, None], leapfrog, noise)
        rate = a.mean(1)
        accept += rate.double()
        if step_sizes is None:
            eps = eps * torch.where(rate > TARGET_ACCEPT, 1.02, 0.98).to(eps.dtype)
    return log_w, used, accept / max(steps - 1, 1)


def ais_log_likelihood(x: Tensor, log_lik: LogLik, latent_dim: int, chains: int,
                       steps: int, leapfrog: int, seed: int = 0,
                       schedule: str = "sigmoid", pilot_chains: int = PILOT_CHAINS,
                       rows: int | None = None, dtype: torch.dtype | None = None,
                       progress: Progress | None = None) -> AISEstimate:
    """The AIS estimate (eq. AIS above) for every example of x [N, ...].

    log_lik(x, z) gives log p(x|z) [B, k] for z [B, k, d], differentiable in z; the prior is
    N(0, I). `rows` bounds the z's per decoder call (examples per chunk = rows // chains);
    `progress(done, total)` is called after each chunk.
    """
    rows = max(chains, pilot_chains) if rows is None else rows
    if chains < 1 or leapfrog < 1 or pilot_chains < 1 or rows < 1:
        raise ValueError(f"chains ({chains}), leapfrog ({leapfrog}), pilot_chains ({pilot_chains}) "
                         f"and rows ({rows}) must be >= 1")
    betas = beta_schedule(steps, schedule)
    n = x.shape[0]
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.float32)
    per_chunk = max(1, rows // max(chains, pilot_chains))
    out = torch.empty(n, dtype=torch.float64)
    accept = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, per_chunk):
        xb = x[start:start + per_chunk]
        keys = range(start, start + xb.shape[0])
        pilot = _Noise(seed, keys, 1, pilot_chains, x.device, dtype)
        _, eps, _ = _anneal(log_lik, xb, latent_dim, betas, leapfrog, pilot, None)
        counted = _Noise(seed, keys, 0, chains, x.device, dtype)
        log_w, _, acc = _anneal(log_lik, xb, latent_dim, betas, leapfrog, counted, eps)
        out[start:start + xb.shape[0]] = (torch.logsumexp(log_w, 1) - math.log(chains)).cpu()
        accept[start:start + xb.shape[0]] = acc.cpu()
        if progress is not None:
            progress(start + xb.shape[0], n)
    passes = (chains + pilot_chains) * (1 + (steps - 1) * leapfrog)
    return AISEstimate(out, chains, "ais", steps=steps, leapfrog=leapfrog,
                       accept_rate=float(accept.mean()) if n else math.nan, passes_per_example=passes)


def model_ais_log_likelihood(model: InfoVAE, x: Tensor, chains: int, steps: int, leapfrog: int,
                             seed: int = 0, rows: int | None = None,
                             progress: Progress | None = None) -> AISEstimate:
    """AIS log p(x) of a trained InfoVAE (eval mode) for binary images x [N, 1, 28, 28] on the
    model's device. Only the decoder is used: the encoder's quality does not enter."""
    if model.training:
        raise ValueError("evaluate log-likelihoods in eval mode (model.eval())")
    param = next(model.parameters())
    x = x.to(param.device, param.dtype)
    return ais_log_likelihood(x, decoder_log_lik(model.decoder), model.encoder.latent_dim, chains, steps,
                              leapfrog, seed=seed, rows=rows, progress=progress)
