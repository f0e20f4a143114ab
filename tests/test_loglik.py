"""Known answers for the log-likelihood estimators (pipeline.evaluation.loglik).

A linear-Gaussian VAE, x = W z + b + sigma * noise with z ~ N(0, I), has the closed form
log p(x) = log N(x; b, W W^T + sigma^2 I) and the Gaussian posterior
q*(z|x) = N(S W^T (x - b) / sigma^2, S), S = (I + W^T W / sigma^2)^-1. The proposal used here
is deliberately imperfect (diagonal, mean shifted, std inflated 1.3x), so importance sampling
has work to do. Everything in float64 so that only the estimators' own error is measured.
"""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.evaluation.loglik import importance_log_likelihood, prior_log_likelihood
from pipeline.model.base import LOG_2PI
from pipeline.model.objective import InfoVAE
from pipeline.params.model import ModelParams, ObjectiveParams


class LinearGaussian:
    def __init__(self, dx: int = 5, dz: int = 2, sigma: float = 0.5, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dx, dz, generator=g, dtype=torch.float64)
        self.b = torch.randn(dx, generator=g, dtype=torch.float64)
        self.sigma, self.dz = sigma, dz
        self.cov_x = self.w @ self.w.T + sigma**2 * torch.eye(dx, dtype=torch.float64)
        self.post_cov = torch.linalg.inv(torch.eye(dz, dtype=torch.float64) + self.w.T @ self.w / sigma**2)

    def sample(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.dz, generator=g, dtype=torch.float64)
        return z @ self.w.T + self.b + self.sigma * torch.randn(n, self.b.numel(), generator=g,
                                                                   dtype=torch.float64)

    def true_log_px(self, x: torch.Tensor) -> torch.Tensor:
        return torch.distributions.MultivariateNormal(self.b, self.cov_x).log_prob(x)

    def encode(self, x: torch.Tensor, shift: float = 0.2, inflate: float = 1.3):
        mean = (x - self.b) @ self.w @ self.post_cov.T / self.sigma**2
        std = self.post_cov.diagonal().sqrt() * inflate
        return mean + shift * std, std.expand_as(mean)

    def log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # [B, k]
        # |x - b - W z|^2 = |x - b|^2 - 2 z.W^T(x - b) + z^T W^T W z, on the small z axis
        xc = x - self.b
        wz = z @ (self.w.T @ self.w)
        sq = (xc * xc).sum(-1, keepdim=True) - 2 * (z @ (self.w.T @ xc.T).T[:, :, None]).squeeze(-1) \
            + (wz * z).sum(-1)
        d = x.shape[1]
        return -0.5 * sq / self.sigma**2 - d * math.log(self.sigma) - 0.5 * d * LOG_2PI

    def table(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # [B, M]
        return self.log_lik(x, z[None].expand(x.shape[0], *z.shape))


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


@pytest.fixture(autouse=True)
def one_thread():
    """Small float64 tensors gain nothing from threads; on a shared 2-core machine they lose."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def is_estimate(lg, x, k, **kw):
    return importance_log_likelihood(x, lg.encode, lg.log_lik, k, **kw)


def test_is_estimate_matches_closed_form_and_k1_is_below(lg):
    x = lg.sample(200)
    truth = lg.true_log_px(x)
    est = is_estimate(lg, x, 5000, seed=0)
    assert est.per_example.shape == (200,) and est.samples == 5000 and est.method == "is"
    assert abs(float((est.per_example - truth).mean())) < 0.05
    assert float((est.per_example - truth).abs().max()) < 0.2
    one = is_estimate(lg, x, 1, seed=0)
    gap = float((truth - one.per_example).mean())
    assert gap > 0.1  # Jensen: E log w <= log E w, strictly for an imperfect proposal
    assert one.mean < est.mean


def test_is_estimate_does_not_decrease_with_k(lg):
    x = lg.sample(300, seed=2)
    means = [is_estimate(lg, x, k, seed=3).mean for k in (1, 10, 100, 1000)]
    assert all(b >= a - 1e-3 for a, b in zip(means, means[1:])), means
    assert means[-1] - means[0] > 0.1


def test_summary_reports_nll_and_standard_error(lg):
    est = is_estimate(lg, lg.sample(50), 20)
    s = est.summary("test")
    assert s["test_nll"] == pytest.approx(-est.mean) and s["test_k"] == 20 and s["test_n"] == 50
    assert s["test_nll_stderr"] == pytest.approx(float(est.per_example.std()) / math.sqrt(50))


def test_prior_sampling_agrees_with_is_on_a_2d_latent(lg):
    x = lg.sample(40, seed=4)
    truth = lg.true_log_px(x)
    est_is = is_estimate(lg, x, 2000, seed=5)
    est_prior = prior_log_likelihood(x, lg.table, lg.dz, samples=100_000, seed=6, rows=20_000)
    assert est_prior.method == "prior" and est_prior.samples == 100_000
    assert abs(est_is.mean - est_prior.mean) < 0.1
    assert abs(est_prior.mean - float(truth.mean())) < 0.1


@pytest.mark.parametrize("k", [7, 300])
def test_chunking_does_not_change_the_estimate(lg, k):
    x = lg.sample(23, seed=7)
    whole = is_estimate(lg, x, k, seed=8, rows=100_000, noise_block=16)
    for rows in (1, 16, 50, 123):
        chunked = is_estimate(lg, x, k, seed=8, rows=rows, noise_block=16)
        torch.testing.assert_close(chunked.per_example, whole.per_example, rtol=0, atol=1e-10)
    other_seed = is_estimate(lg, x, k, seed=9, rows=50, noise_block=16)
    assert not torch.equal(other_seed.per_example, whole.per_example)
    p1 = prior_log_likelihood(x, lg.table, lg.dz, samples=k, seed=1, rows=100_000, noise_block=16)
    p2 = prior_log_likelihood(x, lg.table, lg.dz, samples=k, seed=1, rows=32, noise_block=16,
                              examples_per_chunk=5)
    torch.testing.assert_close(p1.per_example, p2.per_example, rtol=0, atol=1e-10)


def test_defensive_proposal_matches_closed_form_and_rescues_a_too_narrow_encoder(lg):
    """IS-DEF (1/2 q + 1/2 N(mean, c^2 I), balance heuristic) is an unbiased p(x) estimator: it
    converges to the closed form. Where q is far narrower than the posterior (an encoder trained
    without a KL term) q alone is loose by nats at K = 100 and the mixture is not; where q is
    good the mixture loses at most log 2 against it."""
    x = lg.sample(200, seed=11)
    truth = lg.true_log_px(x)
    est = is_estimate(lg, x, 5000, seed=0, wide=1.0)
    assert est.method == "is" and abs(float((est.per_example - truth).mean())) < 0.05

    def narrow(xb):
        mean, std = lg.encode(xb, shift=0.0, inflate=1.0)
        return mean, std * 0.05  # 20x narrower than the posterior

    alone = importance_log_likelihood(x, narrow, lg.log_lik, 100, seed=1)
    mixed = importance_log_likelihood(x, narrow, lg.log_lik, 100, seed=1, wide=1.0)
    gap_alone = float((truth - alone.per_example).mean())
    gap_mixed = float((truth - mixed.per_example).mean())
    assert gap_alone > 3.0 and gap_mixed < 0.3, (gap_alone, gap_mixed)
    good = is_estimate(lg, x, 100, seed=2)
    good_mixed = is_estimate(lg, x, 100, seed=2, wide=1.0)
    assert good_mixed.mean > good.mean - math.log(2)
    whole = is_estimate(lg, x[:9], 37, seed=3, wide=0.7, rows=100_000, noise_block=8)
    for rows in (1, 8, 20):  # even/odd components by sample index: chunking changes nothing
        torch.testing.assert_close(is_estimate(lg, x[:9], 37, seed=3, wide=0.7, rows=rows,
                                               noise_block=8).per_example, whole.per_example,
                                   rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="wide component"):
        is_estimate(lg, x, 10, wide=0.0)


def test_decoder_calls_are_bounded_whatever_k(lg):
    x = lg.sample(3, seed=10)

    def largest_call(k: int, rows: int) -> int:
        seen = []

        def log_lik(xb, z):
            seen.append(z.shape[0] * z.shape[1])
            return lg.log_lik(xb, z)
        importance_log_likelihood(x, lg.encode, log_lik, k, rows=rows, noise_block=64)
        return max(seen)

    assert largest_call(500, 256) == largest_call(5000, 256) == 256
    assert largest_call(50, 256) == 150  # all 3 examples x 50 samples (room for 5)
    assert largest_call(5000, 1000) == 960  # whole noise blocks


def test_encoder_runs_once_per_example(lg):
    x = lg.sample(12, seed=11)
    encoded = []

    def encode(xb):
        encoded.append(xb.shape[0])
        return lg.encode(xb)
    importance_log_likelihood(x, encode, lg.log_lik, 1000, rows=100, noise_block=50)
    assert sum(encoded) == 12


def test_progress_callback(lg):
    calls = []
    is_estimate(lg, lg.sample(10), 30, rows=90, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 10), (6, 10), (9, 10), (10, 10)]


@pytest.mark.parametrize("decoder", ["mlp", "pixelcnn"])
def test_model_adapters_agree_with_direct_evaluation(decoder):
    """Small real models: the bmm/table formulations (factorized) and the repeated-x path
    (autoregressive) equal bernoulli_log_prob evaluated pair by pair."""
    torch.manual_seed(0)
    small = ModelParams(hidden=[32], latent_dim=3, decoder=decoder, pixelcnn_layers=2, pixelcnn_maps=4,
                        pixelcnn_cond_maps=2)
    model = InfoVAE.build(small, ObjectiveParams()).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3), generator=g)
    est = model_log_likelihood(model, x, "is", 40, seed=2, rows=64)

    def direct_log_lik(xb, z):  # the plain formula, x repeated
        return torch.stack([model.decoder.log_prob(xi.expand(len(zs), *xi.shape), zs)
                            for xi, zs in zip(xb, z)])
    ref = importance_log_likelihood(x, model.encoder, direct_log_lik, 40, seed=2, rows=40)
    torch.testing.assert_close(est.per_example, ref.per_example, rtol=0, atol=1e-4)
    prior = model_log_likelihood(model, x, "prior", 100, seed=2)
    ref_prior = prior_log_likelihood(x, lambda xb, z: direct_log_lik(xb, z[None].expand(len(xb), *z.shape)),
                                     3, samples=100, seed=2)
    torch.testing.assert_close(prior.per_example, ref_prior.per_example, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        model_log_likelihood(model.train(), x, "is", 10)


def test_per_image_values_table_and_digests():
    """The per-image NLLs a metric returns become one table row per image, keyed by index and a
    digest of the pixels: another binarization of the same image gets another digest."""
    from pipeline.evaluation.per_image import PER_IMAGE, entry, image_digests, split_row, table_rows

    g = torch.Generator().manual_seed(0)
    grey = torch.rand(3, 1, 28, 28, generator=g)
    x = torch.bernoulli(grey, generator=g)
    other = torch.bernoulli(grey, generator=torch.Generator().manual_seed(1))
    assert image_digests(x) == image_digests(x.clone()) and image_digests(x) != image_digests(other)
    nll = torch.tensor([1.0, 2.0, 3.0])
    row, values = split_row({"test_nll": 1.0, PER_IMAGE: entry("test", "is", x, nll)})
    assert row == {"test_nll": 1.0}
    rows = table_rows("c", "t1", values)
    assert [(r["image"], r["nll"], r["estimator"], r["split"]) for r in rows] == \
        [(0, 1.0, "is", "test"), (1, 2.0, "is", "test"), (2, 3.0, "is", "test")]
    assert [r["image_digest"] for r in rows] == image_digests(x)
    assert split_row({"a": 1}) == ({"a": 1}, {})
