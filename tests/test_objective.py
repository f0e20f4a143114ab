"""The InfoVAE objective against its special cases, computed independently."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from pipeline.model.divergences.mmd import mmd
from pipeline.model.objective import InfoVAE
from pipeline.params.model import ModelParams, ObjectiveParams

MODEL = ModelParams(hidden=[32], latent_dim=3)


def model_and_batch(objective: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = InfoVAE.build(MODEL, ObjectiveParams.model_validate(objective))
    x = torch.bernoulli(torch.full((16, 1, 28, 28), 0.3))
    noise = torch.randn(16, 3)
    return model, x, noise


def independent_terms(model, x, noise):
    """-log p(x|z) and KL(q(z|x)||p(z)) per image, with torch.distributions only."""
    mean, std = model.encoder(x)
    z = mean + std * noise
    logits = model.decoder.logits(z, x)
    recon = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    kl = kl_divergence(Normal(mean, std), Normal(torch.zeros_like(mean), torch.ones_like(std))).sum(1)
    return z, recon, kl


def test_alpha0_lambda1_is_the_negative_elbo():
    model, x, noise = model_and_batch({"divergence": "kl", "alpha": 0.0, "lambda": 1.0})
    terms = model.terms(x, noise)
    _, recon, kl = independent_terms(model, x, noise)
    torch.testing.assert_close(terms.loss, (recon + kl).mean())
    torch.testing.assert_close(terms.nelbo, recon + kl)


@pytest.mark.parametrize("beta", [0.5, 4.0])
@pytest.mark.parametrize("divergence", ["kl", "mmd", "adversarial"])
def test_beta_vae_when_the_divergence_weight_vanishes(beta, divergence):
    # alpha + lambda - 1 = 0 with beta = 1 - alpha: L = recon + beta KL, whatever D is.
    model, x, noise = model_and_batch({"divergence": divergence, "alpha": 1 - beta, "lambda": beta})
    terms = model.terms(x, noise)
    _, recon, kl = independent_terms(model, x, noise)
    torch.testing.assert_close(terms.loss, (recon + beta * kl).mean())


@pytest.mark.parametrize("lam", [1.0, 1000.0])
def test_mmd_vae_is_reconstruction_plus_lambda_mmd(lam):
    model, x, noise = model_and_batch({"divergence": "mmd", "alpha": 1.0, "lambda": lam})
    torch.manual_seed(7)
    terms = model.terms(x, noise)
    z, recon, _ = independent_terms(model, x, noise)
    torch.manual_seed(7)  # the same prior samples the divergence drew
    prior = torch.randn(200, 3)
    expected = recon.mean() + lam * mmd(z, prior, "gaussian", "authors_v1", "biased")
    torch.testing.assert_close(terms.loss, expected)


def test_general_infovae_weights():
    alpha, lam = -1.0, 100.0
    model, x, noise = model_and_batch({"divergence": "mmd", "alpha": alpha, "lambda": lam})
    torch.manual_seed(3)
    terms = model.terms(x, noise)
    z, recon, kl = independent_terms(model, x, noise)
    torch.manual_seed(3)
    d = mmd(z, torch.randn(200, 3))
    torch.testing.assert_close(terms.div, d)
    torch.testing.assert_close(terms.loss, recon.mean() + (1 - alpha) * kl.mean() + (alpha + lam - 1) * d)


def test_unregularized_autoencoder_is_reconstruction_only():
    model, x, noise = model_and_batch({"divergence": "kl", "alpha": 1.0, "lambda": 0.0})
    terms = model.terms(x, noise)
    _, recon, _ = independent_terms(model, x, noise)
    torch.testing.assert_close(terms.loss, recon.mean())


def test_only_encoder_and_decoder_are_model_parameters():
    model, _, _ = model_and_batch({"divergence": "adversarial", "alpha": 1.0, "lambda": 10.0})
    ids = {id(p) for p in model.model_parameters()}
    assert ids == {id(p) for p in [*model.encoder.parameters(), *model.decoder.parameters()]}
    assert not ids & {id(p) for p in model.divergence.parameters()}
