"""Known answers for annealed importance sampling (pipeline.evaluation.ais) on the linear-Gaussian
model of tests/test_loglik.py, whose log p(x) is closed-form. Float64 throughout, so only the
estimator's own error is measured; tolerances are a few standard errors of what is measured."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.evaluation.ais import AISEstimate, ais_log_likelihood, beta_schedule, model_ais_log_likelihood
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.model.objective import InfoVAE
from pipeline.params.model import ModelParams, ObjectiveParams
from tests.test_loglik import LinearGaussian


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ais(lg, x, **kw):
    return ais_log_likelihood(x, lg.log_lik, lg.dz, dtype=torch.float64, **kw)


@pytest.mark.parametrize("kind", ["sigmoid", "linear"])
def test_schedule_runs_from_0_to_1_increasing(kind):
    b = beta_schedule(50, kind)
    assert b.shape == (51,) and b[0] == 0 and b[-1] == 1 and bool((b.diff() > 0).all())
    with pytest.raises(ValueError, match="schedule"):
        beta_schedule(5, "cosine")


def test_matches_the_closed_form(lg):
    """Per-example error is set by how far the chains lag behind the moving target (it falls
    with T and L; T = 500, L = 5 still leaves ~0.5 nats on the worst of 60 examples)."""
    x = lg.sample(24, seed=3)
    truth = lg.true_log_px(x)
    est = ais(lg, x, chains=16, steps=1000, leapfrog=10, seed=0, rows=10_000)  # one chunk
    assert isinstance(est, AISEstimate) and est.method == "ais" and est.samples == 16 and est.steps == 1000
    err = est.per_example - truth
    assert abs(float(err.mean())) < 0.05, float(err.mean())
    assert float(err.abs().max()) < 0.35, float(err.abs().max())
    assert 0.4 < est.accept_rate < 0.9  # the pilot's eps keeps HMC near Wu et al.'s 0.65


@pytest.mark.parametrize("steps", [3, 20])
def test_unbiased_in_p_for_any_number_of_steps(lg, steps):
    """E[w] = p(x) however short the annealing (Neal 2001): with many chains even T = 3 averages
    to the truth. A weight taken after the transition instead of before it would fail this."""
    x = lg.sample(5, seed=5)
    est = ais(lg, x, chains=4000, steps=steps, leapfrog=3, seed=1, rows=20_000)
    torch.testing.assert_close(est.per_example, lg.true_log_px(x), rtol=0, atol=0.15)


def test_stochastic_lower_bound_that_tightens_with_more_distributions(lg):
    x = lg.sample(60, seed=6)
    truth = lg.true_log_px(x)
    gaps = []
    for steps in (2, 10, 50, 250):
        err = ais(lg, x, chains=4, steps=steps, leapfrog=5, seed=2, rows=10_000).per_example - truth
        stderr = float(err.std()) / math.sqrt(err.numel())
        assert float(err.mean()) < 3 * stderr  # E[log estimate] <= log p(x)
        gaps.append(-float(err.mean()))
    assert gaps[0] > 1.0 and gaps[-1] < 0.25, gaps
    assert all(b < a for a, b in zip(gaps, gaps[1:])), gaps


def test_chunking_and_seed(lg):
    x = lg.sample(7, seed=7)
    whole = ais(lg, x, chains=3, steps=12, leapfrog=2, seed=4, rows=10_000)
    for rows in (1, 7, 9):
        chunked = ais(lg, x, chains=3, steps=12, leapfrog=2, seed=4, rows=rows)
        torch.testing.assert_close(chunked.per_example, whole.per_example, rtol=0, atol=1e-9)
    other = ais(lg, x, chains=3, steps=12, leapfrog=2, seed=5)
    assert not torch.equal(other.per_example, whole.per_example)
    assert whole.passes_per_example == (3 + 4) * (1 + 11 * 2)


def test_progress_and_summary(lg):
    calls = []
    est = ais(lg, lg.sample(5), chains=2, steps=4, leapfrog=1, rows=4, pilot_chains=2,
              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    s = est.summary("test_ais")
    assert s["test_ais_nll"] == pytest.approx(-est.mean) and s["test_ais_k"] == 2 and s["test_ais_n"] == 5
    assert s["test_ais_steps"] == 4 and 0 <= s["test_ais_accept"] <= 1


@pytest.mark.parametrize("decoder", ["mlp", "pixelcnn"])
def test_model_entry_point_uses_the_decoder_only(decoder):
    torch.manual_seed(0)
    small = ModelParams(hidden=[32], latent_dim=3, decoder=decoder, pixelcnn_layers=2, pixelcnn_maps=4,
                        pixelcnn_cond_maps=2)
    model = InfoVAE.build(small, ObjectiveParams()).eval()
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))

    def direct_log_lik(xb, z):  # the plain formula, x repeated per z
        return torch.stack([model.decoder.log_prob(xi.expand(len(zs), *xi.shape), zs)
                            for xi, zs in zip(xb, z)])
    ref = ais_log_likelihood(x, direct_log_lik, 3, chains=3, steps=5, leapfrog=2, seed=2)
    est = model_ais_log_likelihood(model, x, chains=3, steps=5, leapfrog=2, seed=2)
    torch.testing.assert_close(est.per_example, ref.per_example, rtol=0, atol=1e-3)
    via = model_log_likelihood(model, x, "ais", samples=3, seed=2, steps=5, leapfrog=2)
    torch.testing.assert_close(via.per_example, est.per_example, rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())  # gradients in z only
    with pytest.raises(ValueError, match="eval mode"):
        model_ais_log_likelihood(model.train(), x, 3, 5, 2)
    with pytest.raises(ValueError, match="'ais' only"):
        model_log_likelihood(model.eval(), x, "is", 10, steps=5)
