"""Log-likelihood estimates log p(x) of a latent-variable model, in nats per example.

Importance sampling with the encoder as proposal (Burda, Grosse, Salakhutdinov 2016, eq. 13):

    log p(x) ~= log (1/K) sum_k w_k,   w_k = p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x)     (IS)

a stochastic lower bound in expectation (Jensen) that tightens as K grows; K = 5000 by
convention. The bound holds for any proposal that covers p(z|x), and tightens as the proposal
nears it. An encoder trained without a KL term (MMD-, Stein-, adversarial-InfoVAE, alpha = 1)
is not trained to be that proposal: with a PixelCNN decoder its q(z|x) is far narrower than
p(z|x), and IS with it alone over-states those models' NLL by 18-31 nats at K = 100 (the
laptop study's Table 1 cells) where the ELBO's is unchanged. The defensive proposal (Hesterberg
1995) mixes in a wide component centred on the same mean,

    r(z|x) = 1/2 q(z|x) + 1/2 N(z; mean(x), c^2 I),   c = `wide` (1: the prior's scale)    (IS-DEF)

with samples k even drawn from q and k odd from the wide component, weighed by the mixture's
density (the balance heuristic: unbiased for p(x), stratified). Its weights are at most twice
those of either component's IS, so it loses at most log 2 nats against q alone where q is
good, and gains where q is too narrow. Prior sampling, the InfoVAE authors' first code, for comparison:

    log p(x) ~= log (1/M) sum_m p(x|z_m),   z_m ~ p(z) = N(0, I)                        (PRIOR)

(the authors' later "is" variant, IS without the p(z)/q(z|x) terms, estimates nothing and is
deliberately absent). Annealed importance sampling, which needs no encoder, is in
pipeline.evaluation.ais (method "ais" below). The cores take callables, so a model with a
closed-form p(x) can check them (tests/test_loglik.py); `model_log_likelihood` binds them to a
trained InfoVAE.

Cost and memory: each x is encoded once; decoder calls see at most `rows` z's (IS) or pair
cells (PRIOR) at a time whatever K is, and the log-sum-exp over K is accumulated chunk by
chunk in float64 (logaddexp of chunk log-sum-exps). Noise is drawn per (example, block of
`noise_block` samples) from a generator seeded by (seed, example, block), so an estimate does
not depend on how the work was chunked, nor on the global RNG.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.infra import accel
from pipeline.model.base import LOG_2PI, Decoder, at_least_fp32, standard_normal_log_prob
from pipeline.model.likelihood import HALF_LOG_2PI, gaussian_log_prob_table, gaussian_pixels

Encode = Callable[[Tensor], tuple[Tensor, Tensor]]  # x [B, ...] -> (mean, std) [B, d]
LogLik = Callable[[Tensor, Tensor], Tensor]  # (x [B, ...], z [B, k, d]) -> log p(x|z) [B, k]
LogLikTable = Callable[[Tensor, Tensor], Tensor]  # (x [B, ...], z [M, d]) -> log p(x_b|z_m) [B, M]
Progress = Callable[[int, int], None]  # (examples done, examples in all)

# Draws come in blocks of this many samples per (example, block) seed: part of the estimator's
# definition (it fixes which normal draws a given seed gives), not a setting.
NOISE_BLOCK = 256
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class LoglikEstimate:
    """Per-example estimates of log p(x) (float64, nats) and how they were made."""

    per_example: Tensor
    samples: int  # K (IS) or M (prior sampling)
    method: str  # "is", "prior" or "ais"

    @property
    def mean(self) -> float:
        return float(self.per_example.mean())

    @property
    def stderr(self) -> float:
        """Standard error of the mean over examples: std (ddof 1) / sqrt(n)."""
        n = self.per_example.numel()
        return float(self.per_example.std() / math.sqrt(n)) if n > 1 else math.nan

    def summary(self, prefix: str) -> dict[str, float | int]:
        """Negative log-likelihood (lower is better, the paper's Table 1 unit) with its error."""
        return {f"{prefix}_nll": -self.mean, f"{prefix}_nll_stderr": self.stderr,
                f"{prefix}_k": self.samples, f"{prefix}_n": self.per_example.numel()}


def _block_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed from (seed, keys) by splitmix64 mixing: distinct blocks, unrelated streams."""
    h = seed & _MASK64
    for k in keys:
        h = (h ^ (k + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


def _normal_blocks(g: torch.Generator, seed: int, key: int | None, start: int, count: int, total: int,
                   block: int, d: int, dtype: torch.dtype) -> Tensor:
    """Standard normals [count, d] for samples start..start+count of `total` (start a multiple
    of block); block j of a key is always the same numbers, however the samples are chunked."""
    parts = []
    for j in range(start // block, (start + count - 1) // block + 1):
        g.manual_seed(_block_seed(seed, j) if key is None else _block_seed(seed, key, j))
        n = min(block, total - j * block)
        parts.append(torch.randn(n, d, generator=g, device=g.device, dtype=dtype))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _plan(k: int, rows: int, block: int) -> tuple[int, int]:
    """(examples per chunk, samples per chunk) with at most max(rows, block) z's per chunk."""
    if k <= rows:
        return max(1, rows // k), k
    return 1, max(block, rows - rows % block)


def _check(k: int, rows: int, block: int) -> None:
    if k < 1 or rows < 1 or block < 1:
        raise ValueError(f"samples ({k}), rows ({rows}) and noise_block ({block}) must be >= 1")


@torch.no_grad()
def importance_log_likelihood(x: Tensor, encode: Encode, log_lik: LogLik, k: int,
                              seed: int = 0, rows: int | None = None,
                              noise_block: int = NOISE_BLOCK,
                              progress: Progress | None = None,
                              wide: float | None = None) -> LoglikEstimate:
    """The IS estimate (eq. IS above; eq. IS-DEF with `wide`, the wide component's std) for every
    example of x [N, ...].

    encode(x) gives the proposal q(z|x) = N(mean, diag(std^2)), called once per example;
    log_lik(x, z) gives log p(x|z) [B, k] for z [B, k, d]; log p(z) is N(0, I). Decoder calls
    see at most `rows` z's (whole noise blocks when K > rows), so memory does not grow with K;
    `progress(done, total)` is called after each chunk of examples.
    """
    rows = k if rows is None else rows
    _check(k, rows, noise_block)
    if wide is not None and not wide > 0:
        raise ValueError(f"the wide component's std must be > 0, got {wide}")
    n = x.shape[0]
    per_chunk, kc = _plan(k, rows, noise_block)
    out = torch.empty(n, dtype=torch.float64)
    g: torch.Generator | None = None
    for start in range(0, n, per_chunk):
        xb = x[start:start + per_chunk]
        mean, std = encode(xb)  # once per example, reused by every chunk of samples
        b, d = mean.shape
        if g is None:
            g = torch.Generator(device=mean.device)
        log_std = torch.log(std).sum(-1, keepdim=True)  # [b, 1]
        acc = torch.full((b,), -math.inf, dtype=torch.float64, device=mean.device)
        for j0 in range(0, k, kc):
            kk = min(kc, k - j0)
            eps = torch.stack([_normal_blocks(g, seed, start + i, j0, kk, k, noise_block, d, mean.dtype)
                               for i in range(b)])  # [b, kk, d]
            if wide is None:
                z = torch.addcmul(mean[:, None], std[:, None], eps)
                # log q(z|x) = sum_d [-eps^2/2 - log std - log(2 pi)/2], exact in eps (no (z-mean)/std)
                log_q = -0.5 * eps.square().sum(-1) - log_std - 0.5 * LOG_2PI * d
            else:
                z, log_q = _defensive(mean, std, log_std, eps, j0, wide)
            log_w = log_lik(xb, z) + standard_normal_log_prob(z) - log_q  # [b, kk]
            acc = torch.logaddexp(acc, torch.logsumexp(log_w.double(), dim=1))
        out[start:start + b] = (acc - math.log(k)).cpu()
        if progress is not None:
            progress(start + b, n)
    return LoglikEstimate(out, k, "is")


def _defensive(mean: Tensor, std: Tensor, log_std: Tensor, eps: Tensor, j0: int,
               wide: float) -> tuple[Tensor, Tensor]:
    """z [b, kk, d] for samples j0..j0+kk (even: from q, odd: from N(mean, wide^2 I), so the split
    does not depend on chunking) and log r(z|x) of eq. IS-DEF, each density exact in the
    standardised offsets u = (z - mean) / scale."""
    d = mean.shape[1]
    odd = (torch.arange(j0, j0 + eps.shape[1], device=eps.device) % 2 == 1)[None, :, None]
    scale = torch.where(odd, torch.full_like(std[:, None], wide), std[:, None])  # [b, kk, d]
    z = torch.addcmul(mean[:, None], scale, eps)
    u_q = eps * scale / std[:, None]
    log_q = -0.5 * u_q.square().sum(-1) - log_std - 0.5 * LOG_2PI * d
    u_w = eps * scale / wide
    log_w = -0.5 * u_w.square().sum(-1) - d * math.log(wide) - 0.5 * LOG_2PI * d
    return z, torch.logaddexp(log_q, log_w) - math.log(2.0)


@torch.no_grad()
def prior_log_likelihood(x: Tensor, log_lik_table: LogLikTable, latent_dim: int,
                         samples: int, seed: int = 0, rows: int | None = None,
                         examples_per_chunk: int = 1024, noise_block: int = NOISE_BLOCK,
                         progress: Progress | None = None) -> LoglikEstimate:
    """The prior-sampling estimate (eq. PRIOR above) for every example of x [N, ...].

    The same M prior samples serve every example (common random numbers): log_lik_table(x, z)
    gives log p(x_b|z_m) [B, M] for a chunk of examples and a chunk of at most `rows` z's, so a
    factorized decoder decodes each z once per chunk of `examples_per_chunk` examples.
    """
    rows = samples if rows is None else rows
    _check(samples, rows, noise_block)
    n = x.shape[0]
    mc = min(samples, max(noise_block, rows - rows % noise_block))
    g = torch.Generator(device=x.device)
    out = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, examples_per_chunk):
        xb = x[start:start + examples_per_chunk]
        acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        for j0 in range(0, samples, mc):
            z = _normal_blocks(g, seed, None, j0, min(mc, samples - j0), samples, noise_block,
                               latent_dim, torch.float32 if not x.is_floating_point() else x.dtype)
            acc = torch.logaddexp(acc, torch.logsumexp(log_lik_table(xb, z).double(), dim=1))
        out[start:start + xb.shape[0]] = (acc - math.log(samples)).cpu()
        if progress is not None:
            progress(start + xb.shape[0], n)
    return LoglikEstimate(out, samples, "prior")


# ----------------------------------------------------------------------------- trained models


def decoder_log_lik(decoder: Decoder, amp: torch.dtype | None = None) -> LogLik:
    """log p(x|z) [B, k] for x [B, 1, 28, 28] and z [B, k, d], in logits throughout; the
    decoder network under `amp` autocast (pipeline.infra.accel), the sums in fp32.

    Factorized: log p(x|z) = sum_p [x_p l_p - softplus(l_p)] (models.base.bernoulli_log_prob),
    with sum_p x_p l_p as a batched matrix-vector product, so x is never repeated k times.
    Autoregressive (PixelCNN): the logits depend on x itself, so x is repeated across the k z's.
    Gaussian (model.likelihood): pipeline.model.likelihood's sum, x broadcast over the k z's.
    """
    if decoder.likelihood == "gaussian":
        def log_lik_gaussian(x: Tensor, z: Tensor) -> Tensor:
            b, k, d = z.shape
            with accel.autocast(amp, z.device.type):
                logits = decoder.logits(z.reshape(b * k, d))
            mean, std = gaussian_pixels(at_least_fp32(logits), decoder.std_floor)
            mean, std = mean.view(b, k, -1), std.view(b, k, -1)
            u = (x.reshape(b, 1, -1).to(mean.dtype) - mean) / std
            return (-0.5 * u.square() - torch.log(std)).sum(-1) - HALF_LOG_2PI * u.shape[-1]
        return log_lik_gaussian
    if decoder.autoregressive:
        def log_lik(x: Tensor, z: Tensor) -> Tensor:
            b, k, d = z.shape
            xr = x[:, None].expand(b, k, *x.shape[1:]).reshape(b * k, *x.shape[1:])
            with accel.autocast(amp, x.device.type):  # log_prob sums in fp32 (Decoder.log_prob)
                return decoder.log_prob(xr, z.reshape(b * k, d)).view(b, k)
        return log_lik

    def log_lik_factorized(x: Tensor, z: Tensor) -> Tensor:
        b, k, d = z.shape
        with accel.autocast(amp, z.device.type):
            logits = decoder.logits(z.reshape(b * k, d))
        logits = at_least_fp32(logits).view(b, k, -1)
        xl = torch.bmm(logits, x.reshape(b, -1, 1).to(logits.dtype)).squeeze(-1)
        return xl - F.softplus(logits).sum(-1)
    return log_lik_factorized


def decoder_log_lik_table(decoder: Decoder) -> LogLikTable:
    """log p(x_b|z_m) [B, M] for every pair: one decoder pass per z for a factorized decoder
    (then one matrix product with the images; Gaussian: three, in float64), one pass per pair for
    an autoregressive one."""
    if decoder.likelihood == "gaussian":
        def table_gaussian(x: Tensor, z: Tensor) -> Tensor:
            mean, std = gaussian_pixels(at_least_fp32(decoder.logits(z)), decoder.std_floor)
            return gaussian_log_prob_table(x.flatten(1), mean.flatten(1), std.flatten(1))
        return table_gaussian
    if decoder.autoregressive:
        def table(x: Tensor, z: Tensor) -> Tensor:
            m = z.shape[0]
            return torch.stack([decoder.log_prob(xi.expand(m, *xi.shape), z) for xi in x])
        return table

    def table_factorized(x: Tensor, z: Tensor) -> Tensor:
        logits = decoder.logits(z).flatten(1)  # [M, P]
        return torch.addmm(-F.softplus(logits).sum(-1)[None], x.flatten(1).to(logits.dtype), logits.T)
    return table_factorized


def stderr_progress(label: str, every_s: float = 30.0) -> Progress:
    """A progress callback printing done/total, elapsed and remaining time to stderr at most
    every `every_s` seconds (and at the end)."""
    start = time.perf_counter()
    last = [start]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] < every_s and done < total:
            return
        last[0] = now
        left = (now - start) / done * (total - done)
        print(f"{label}: {done}/{total} examples, {now - start:.0f} s elapsed, ~{left:.0f} s left",
              file=sys.stderr, flush=True)
    return report
