"""The Gaussian decoder (model.likelihood: gaussian) on continuous pixels: known answers for its
log p(x|z) and floor, the estimators' fast paths against it, a tiny continuous training run
through the trainer and the estimators, and the params checks that refuse what it cannot do.
No prepared data needed: the splits are synthetic grey-level images."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.data.splits import Split
from pipeline.errors import PipelineError
from pipeline.evaluation.context import binarize_once
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.evaluation.loglik import decoder_log_lik, decoder_log_lik_table
from pipeline.evaluation.outputs import method, summary
from pipeline.model import build_decoder
from pipeline.model.likelihood import binarize_inputs, gaussian_log_prob_table, gaussian_pixels
from pipeline.params.load import ParamsError, parse_params
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.train.checkpoint import RunSpec
from pipeline.train.trainer import Trainer

SMALL = dict(hidden=[32], conv_channels=[4, 8], conv_fc=16, latent_dim=3)


def decoder(kind: str, floor: float = 0.005):
    torch.manual_seed(0)
    return build_decoder(ModelParams(**SMALL, decoder=kind, likelihood="gaussian",
                                     decoder_std_floor=floor)).eval()


def grey_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_log_prob_is_the_normal_density_summed_over_pixels(kind):
    dec = decoder(kind)
    z, x = torch.randn(5, 3), grey_images(5)
    logits = dec.logits(z)
    assert logits.shape == (5, 2, 28, 28)
    mean = torch.sigmoid(logits[:, :1])
    std = torch.sigmoid(logits[:, 1:]).clamp_min(0.005)
    want = torch.distributions.Normal(mean, std).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(dec.log_prob(x, z), want, rtol=1e-5, atol=1e-3)
    assert torch.equal(dec.mean_image(z), mean)
    torch.manual_seed(1)
    sample = dec.sample(z)
    torch.manual_seed(1)
    torch.testing.assert_close(sample, mean + std * torch.randn_like(mean))


def test_the_std_floor_bounds_sigma_and_the_density():
    logits = torch.full((2, 2, 28, 28), -30.0)  # sigmoid ~ 1e-13: far below any floor
    mean, std = gaussian_pixels(logits, 0.005)
    assert torch.all(std == 0.005) and torch.all(mean < 1e-12)
    dec = decoder("mlp", floor=0.1)
    z = torch.randn(64, 3)
    _, std = gaussian_pixels(dec.logits(z), dec.std_floor)
    assert std.min() >= 0.1
    # at the floor, log p(x|z) <= 784 (-log floor - log(2 pi)/2) whatever x and z
    x = dec.mean_image(z)  # x = mu: the density's maximum for this z
    assert torch.all(dec.log_prob(x, z) <= 784 * (-math.log(0.1) - 0.5 * math.log(2 * math.pi)) + 1e-3)


def test_gradients_reach_the_mean_and_the_std_heads():
    dec = decoder("conv").train()
    z, x = torch.randn(4, 3), grey_images(4)
    (-dec.log_prob(x, z).mean()).backward()
    last = dec.net[-1].weight.grad  # ConvTranspose2d [in, out=2, 4, 4]: both heads learn
    assert last[:, 0].abs().sum() > 0 and last[:, 1].abs().sum() > 0


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_the_estimators_fast_paths_equal_log_prob(kind):
    dec = decoder(kind)
    x, z = grey_images(3), torch.randn(3, 4, 3)
    per_pair = torch.stack([dec.log_prob(x[i:i + 1].expand(4, -1, -1, -1), z[i]) for i in range(3)])
    torch.testing.assert_close(decoder_log_lik(dec)(x, z), per_pair, rtol=1e-5, atol=1e-3)
    zm = torch.randn(6, 3)  # prior sampling's table: every (x_b, z_m) pair
    table = decoder_log_lik_table(dec)(x, zm)
    want = torch.stack([dec.log_prob(xi.expand(6, -1, -1, -1), zm) for xi in x]).double()
    torch.testing.assert_close(table, want, rtol=1e-6, atol=1e-2)


def test_the_table_is_exact_in_float64_at_the_floor():
    mean = torch.rand(4, 784, dtype=torch.float64)
    std = torch.full((4, 784), 0.005, dtype=torch.float64)
    x = (mean[:2] + 0.01 * torch.randn(2, 784, dtype=torch.float64)).clamp(0, 1)
    want = torch.distributions.Normal(mean[None], std[None]).log_prob(x[:, None]).sum(-1)
    torch.testing.assert_close(gaussian_log_prob_table(x, mean, std), want, rtol=1e-9, atol=1e-6)


def grey_split(n: int, seed: int, binarization: str = "dynamic") -> Split:
    return Split(grey_images(n, seed), torch.arange(n) % 10, torch.arange(n), binarization)


def test_continuous_cell_trains_and_the_estimators_give_finite_values():
    model = ModelParams(**SMALL, encoder="conv", decoder="conv", likelihood="gaussian")
    train = TrainParams(epochs=1, batch_size=20, optimizer="adam", lr=1e-4, threads=1, seed=0,
                        diagnostics_size=20, device="cpu")
    objective = ObjectiveParams.model_validate({"divergence": "mmd", "alpha": 1.0, "lambda": 39200.0})
    trainer = Trainer(RunSpec(model, objective, train, "unused"),
                      splits=(grey_split(60, 0), grey_split(20, 1)))
    assert not trainer.dynamic  # no per-batch binarization: the grey levels as they are
    assert torch.equal(trainer.val_x, grey_split(20, 1).images)
    result = trainer.run()
    final = result.final
    assert all(math.isfinite(final[k]) for k in ("train_loss", "val_loss", "val_recon", "val_nelbo"))
    net = trainer.model.eval()
    x = trainer.val_x[:3]
    est = model_log_likelihood(net, x, "is", 16, seed=0, rows=8)
    assert torch.isfinite(est.per_example).all()
    prior = model_log_likelihood(net, x, "prior", 32, seed=0)
    assert torch.isfinite(prior.per_example).all()
    ais = model_log_likelihood(net, x[:2], "ais", 2, seed=0, steps=3, leapfrog=2)
    assert torch.isfinite(ais.per_example).all()


def test_evaluation_images_are_the_grey_levels_for_a_gaussian_cell():
    split = grey_split(8, 2)
    assert torch.equal(binarize_once(split, 0, "test", "gaussian"), split.images)
    binary = binarize_once(split, 0, "test", "bernoulli")
    assert set(binary.unique().tolist()) <= {0.0, 1.0}


def test_binary_data_are_refused_for_a_gaussian_decoder():
    assert binarize_inputs("dynamic", "bernoulli") and not binarize_inputs("dynamic", "gaussian")
    with pytest.raises(PipelineError, match="data.binarization: dynamic"):
        binarize_inputs("threshold", "gaussian")


def test_params_refuse_pixelcnn_with_a_gaussian_likelihood_naming_the_key():
    with pytest.raises(ParamsError, match=r"model\.likelihood 'gaussian'.*factorized decoders"):
        parse_params({"model": {"decoder": "pixelcnn", "likelihood": "gaussian"}})
    with pytest.raises(ParamsError, match=r"model\.likelihood.*data\.binarization 'threshold'"):
        parse_params({"model": {"likelihood": "gaussian"}, "data": {"binarization": "threshold"}})
    with pytest.raises(ParamsError, match="decoder_std_floor"):
        parse_params({"model": {"likelihood": "gaussian", "decoder_std_floor": 0.0}})
    # a grid cell is validated the same way, before any compute
    from pipeline.params.grid import expand

    grid = {"g": {"decoder": ["conv", "pixelcnn"], "likelihood": ["gaussian"]}}
    with pytest.raises(ParamsError, match=r"model\.likelihood"):
        expand(parse_params({"sweep": {"grids": grid}}))
    (cell,) = expand(parse_params({"sweep": {"grids": {"g": {"decoder": ["conv"],
                                                             "model.likelihood": ["gaussian"]}}}}))
    assert cell.overrides["model.likelihood"] == "gaussian" and "p(x|z)=gaussian" in cell.label


def test_outputs_name_the_likelihood_of_a_non_bernoulli_cell():
    rows = [{"status": "EVALUATED", "grids": "table1", "method": "MMD-VAE", "likelihood": lk,
             "test_nll": nll} for lk, nll in (("bernoulli", 80.0), ("gaussian", -900.0))]
    assert method(rows[0]) == "MMD-VAE" and method(rows[1]) == "MMD-VAE, Gaussian p(x|z)"
    table = summary(rows, Path("/nonexistent"), 0.0)["table1"]
    assert table["mmd_vae"]["test_nll"] == 80.0 and table["mmd_vae_gaussian_p_x_z"]["test_nll"] == -900.0


def test_a_gaussian_checkpoint_evaluates_on_grey_levels(prepared_mnist, tmp_path):
    """Real MNIST (skipped without ../shared): every metric of the list runs on a Gaussian cell,
    on the grey levels, and the row says which likelihood its NLL is of."""
    from pipeline.evaluation.evaluate import evaluate_checkpoint
    from pipeline.params.evaluate import ClassifierParams, EvaluateParams

    spec = RunSpec(ModelParams(hidden=[64], latent_dim=4, likelihood="gaussian"), ObjectiveParams(),
                   TrainParams(epochs=1, batch_size=50, train_size=1000, validation_size=100,
                               diagnostics_size=0, threads=1, device="cpu"), str(prepared_mnist))
    trainer = Trainer(spec)
    assert not set(trainer.train_images.unique().tolist()) <= {0.0, 1.0}  # grey levels
    trainer.run()
    ckpt = trainer.save(tmp_path / "run")
    settings = EvaluateParams(loglik_k=20, loglik_test_size=20, loglik_train_size=10, prior_samples=200,
                              latent_size=200, semisupervised_labels=[20], semisupervised_repeats=1,
                              semisupervised_pool=200, class_mismatch_samples=100, threads=1,
                              ais_test_size=2, ais_chains=2, ais_steps=3, ais_leapfrog=2,
                              classifier=ClassifierParams(path=str(tmp_path / "clf.pt"), epochs=1,
                                                          train_size=1000))
    row = evaluate_checkpoint(ckpt, settings, prepared_mnist)
    assert row["likelihood"] == "gaussian" and row["binarization"] == "none (grey levels)"
    assert row["class_images"] == "mean"
    for key in ("test_nll", "train_nll", "test_prior_nll", "test_ais_nll", "logdet_cov", "mi",
                "class_mismatch", "ss_error_20"):
        assert math.isfinite(row[key]), key
