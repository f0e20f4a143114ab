"""Known answers for the latent metrics (pipeline.evaluation.metrics.latent)."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.evaluation.metrics.latent import (
    active_units,
    latent_diagnostics,
    logdet_covariance,
    mmd_to_prior,
    mutual_information,
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
