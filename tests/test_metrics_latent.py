"""Known answers for the latent metrics (pipeline.evaluation.metrics.latent)."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.model.divergences.mmd import mmd
from pipeline.model.latent_stats import (
    active_units,
    latent_diagnostics,
    logdet_covariance,
    mmd_to_prior,
    mmd_unbiased_to_prior,
    mutual_information,
    sample_codes,
)


def test_logdet_of_known_covariance():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g)
    cov = a @ a.T + 0.5 * torch.eye(4)
    z = torch.randn(200000, 4, generator=g) @ torch.linalg.cholesky(cov).T
    assert logdet_covariance(z) == pytest.approx(float(torch.logdet(cov)), abs=0.03)
    assert logdet_covariance(torch.randn(50000, 10, generator=g)) == pytest.approx(0.0, abs=0.05)
    assert logdet_covariance(torch.randn(50000, 3, generator=g) * 3) == pytest.approx(
        3 * math.log(9), abs=0.05)


def test_mmd_to_prior_is_zero_for_prior_and_grows_with_shift():
    g = torch.Generator().manual_seed(1)
    values = [mmd_to_prior(torch.randn(2000, 5, generator=g) + s, generator=g) for s in (0, .5, 1, 2)]
    assert values[0] < 0.005
    assert values == sorted(values) and values[-1] > 20 * values[0]


def test_unbiased_mmd_hand_computed():
    """x = (0, 1), y = (0, 2) in one dimension, k = exp(-(a-b)^2): eq. 3 by hand."""
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    e = math.exp
    want = e(-1) + e(-4) - 2 * (1 + e(-4) + e(-1) + e(-1)) / 4  # Kxx, Kyy off-diagonal; Kxy all pairs
    assert float(mmd(x, y, bandwidth=1.0, estimator="unbiased")) == pytest.approx(want, rel=1e-12)


def test_unbiased_mmd_is_zero_in_expectation_for_q_equal_p():
    """q = p: the mean over seeds is within 3 standard errors of 0 (the biased V-statistic's is
    about 2 (1 - E k(x, y)) / n above it, many standard errors)."""
    g = torch.Generator().manual_seed(3)
    n, d, seeds = 300, 5, 40
    u, v = [], []
    for _ in range(seeds):
        z = torch.randn(n, d, generator=g, dtype=torch.float64)
        state = g.get_state()
        u.append(mmd_unbiased_to_prior(z, generator=g))
        g.set_state(state)  # the same prior sample for both estimators
        v.append(mmd_to_prior(z, generator=g))
    se = torch.tensor(u).std().item() / math.sqrt(seeds)
    assert abs(sum(u) / seeds) < 3 * se
    assert sum(v) / seeds > 10 * se


def test_unbiased_mmd_chunked_equals_unchunked():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(257, 6, generator=g, dtype=torch.float64) * 1.2 + 0.3
    whole = mmd_unbiased_to_prior(z, generator=torch.Generator().manual_seed(0), block=4096)
    tiled = mmd_unbiased_to_prior(z, generator=torch.Generator().manual_seed(0), block=16)
    assert tiled == pytest.approx(whole, rel=1e-10, abs=1e-14) and whole > 0.01


def test_sample_codes_draws_from_the_posterior():
    g = torch.Generator().manual_seed(5)
    mean, std = torch.full((20000, 2), 3.0), torch.full((20000, 2), 0.5)
    z = sample_codes(mean, std, g)
    assert float(z.mean()) == pytest.approx(3.0, abs=0.02) and float(z.std()) == pytest.approx(0.5, abs=0.01)


def test_mutual_information_zero_when_encoder_ignores_x():
    g = torch.Generator().manual_seed(2)
    n, d = 2000, 4
    mean, std = torch.zeros(n, d), torch.ones(n, d)
    z = mean + std * torch.randn(n, d, generator=g)
    assert mutual_information(mean, std, z) == pytest.approx(0.0, abs=1e-9)


def test_mutual_information_log_n_for_separated_deterministic_codes():
    g = torch.Generator().manual_seed(3)
    n, d = 1000, 3
    mean = torch.randn(n, d, generator=g) * 10.0  # well separated...
    std = torch.full((n, d), 1e-3)  # ...and near-deterministic
    z = mean + std * torch.randn(n, d, generator=g)
    assert mutual_information(mean, std, z) == pytest.approx(math.log(n), abs=1e-3)


def test_mutual_information_matches_gaussian_channel():
    # x ~ N(0, s^2 I), z|x ~ N(x, I): I(x;z) = d/2 log(1 + s^2); the mixture estimate with
    # N samples approaches it from below when it is far from log N.
    g = torch.Generator().manual_seed(4)
    n, d, s = 4000, 2, 1.0
    mean = torch.randn(n, d, generator=g) * s
    std = torch.ones(n, d)
    z = mean + torch.randn(n, d, generator=g)
    assert mutual_information(mean, std, z, block=512) == pytest.approx(d / 2 * math.log(1 + s**2), abs=0.06)


def test_active_units():
    g = torch.Generator().manual_seed(5)
    mean = torch.cat([torch.randn(500, 3, generator=g), 0.01 * torch.randn(500, 2, generator=g)], 1)
    assert active_units(mean) == 3


def test_latent_diagnostics_keys_and_values():
    g = torch.Generator().manual_seed(6)
    mean = torch.randn(800, 4, generator=g) * 0.9
    std = torch.full((800, 4), 0.4)
    out = latent_diagnostics(mean, std, generator=g)
    assert set(out) == {"mmd", "logdet_cov", "mi", "active_units"}
    assert out["active_units"] == 4
    assert abs(out["logdet_cov"]) < 0.5 and out["mmd"] < 0.01 and 0 < out["mi"] < math.log(800)
