"""The InfoVAE authors' training settings as options (objective.scaling, model.std_param,
model.init, train.optimizer rmsprop_tf1, train.grad_clip_mode, train.weight_decay), each against
a known answer, and the `authors` profile that selects them."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from pipeline.model import build_decoder, build_encoder
from pipeline.model.base import apply_init
from pipeline.model.divergences.mmd import mmd
from pipeline.model.objective import InfoVAE
from pipeline.params.compose import compose
from pipeline.params.load import load_params
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.train.checkpoint import RunSpec
from pipeline.train.optim import RMSpropTF1, clip_gradients, decayed_weights, l2_penalty
from pipeline.train.trainer import Trainer
from tests.conftest import ROOT
from tests.test_objective import independent_terms

P, D = 784, 3
SMALL = dict(hidden=[32], latent_dim=D)


def build(objective: dict, seed: int = 0, **model):
    torch.manual_seed(seed)
    return InfoVAE.build(ModelParams(**{**SMALL, **model}), ObjectiveParams.model_validate(objective))


@pytest.mark.parametrize("objective", [
    {"divergence": "kl", "alpha": 0.0, "lambda": 1.0},  # ELBO
    {"divergence": "mmd", "alpha": 1.0, "lambda": 1.0},  # the authors' "kernel" run
    {"divergence": "mmd", "alpha": 0.5, "lambda": 3.0},
])
def test_authors_scaling_is_the_per_image_loss_over_784_with_kl_weighed_784_over_d(objective):
    """L_authors = (1/P) [recon + (1 - alpha) (P/d) KL + P (alpha + lambda - 1) D]."""
    ours, theirs = build(objective), build({**objective, "scaling": "authors"})
    theirs.load_state_dict(ours.state_dict())
    x = torch.bernoulli(torch.full((16, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))
    noise = torch.randn(16, D, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(7)
    t_ours = ours.terms(x, noise)
    torch.manual_seed(7)  # the same prior samples for the MMD
    t_theirs = theirs.terms(x, noise)
    z, recon, kl = independent_terms(ours, x, noise)
    a, lam = objective["alpha"], objective["lambda"]
    torch.manual_seed(7)
    mmd_run = objective["divergence"] == "mmd"
    div = mmd(z, torch.randn(200, D), "gaussian", "authors_v1", "biased") if mmd_run else torch.zeros(())
    w = 0.0 if objective["divergence"] == "kl" else a + lam - 1
    torch.testing.assert_close(t_ours.loss, recon.mean() + (1 - a) * kl.mean() + w * div)
    expected = (recon.mean() + (1 - a) * (P / D) * kl.mean() + P * w * div) / P
    torch.testing.assert_close(t_theirs.loss, expected)
    # The reported terms stay per-image nats: the scaling changes only what is minimised.
    torch.testing.assert_close(t_theirs.recon, t_ours.recon)
    torch.testing.assert_close(t_theirs.kl, t_ours.kl)


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_sigmoid_std_is_bounded_by_floor_and_one(encoder):
    params = ModelParams(**SMALL, encoder=encoder, conv_channels=[4, 8], conv_fc=16, std_param="sigmoid")
    enc = build_encoder(params).requires_grad_(False)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.5))
    _, std = enc(x)
    assert 0.3 < float(std.mean()) < 0.7  # sigmoid(~0): theirs starts at 0.5, not at the prior's 1
    with torch.no_grad():
        enc.head.bias[D:] = 60.0
        assert float(enc(x)[1].min()) == 1.0
        enc.head.bias[D:] = -60.0
        assert torch.equal(enc(x)[1], torch.full_like(std, params.std_floor))
    ours = build_encoder(ModelParams(**SMALL, encoder=encoder, conv_channels=[4, 8], conv_fc=16))
    ours.requires_grad_(False)
    assert 0.9 < float(ours(x)[1].mean()) < 1.1  # softplus starts at the prior's scale


def test_xavier_init_has_the_glorot_variance_and_zero_biases():
    torch.manual_seed(0)
    # sigmoid: every bias zero, as theirs (softplus would set its std bias for std ~ 1, below)
    params = ModelParams(hidden=[512, 256], latent_dim=10, init="xavier", std_param="sigmoid")
    for net in (build_encoder(params), build_decoder(params)):
        for m in net.modules():
            if isinstance(m, nn.Linear):
                fan = m.in_features + m.out_features
                assert float(m.weight.detach().abs().max()) <= math.sqrt(6 / fan)
                if m.weight.detach().numel() > 10_000:  # enough entries for a 5% check of the variance
                    assert float(m.weight.detach().var()) == pytest.approx(2 / fan, rel=0.05)
                assert torch.count_nonzero(m.bias) == 0
    head = build_encoder(ModelParams(**SMALL, init="xavier")).head
    assert torch.count_nonzero(head.bias[:D]) == 0
    torch.testing.assert_close(torch.nn.functional.softplus(head.bias[D:].detach()), torch.full((D,), 0.999))
    conv = ModelParams(**SMALL, encoder="conv", decoder="conv", conv_channels=[64, 128], init="xavier")
    first = build_encoder(conv).body[0]  # 1 -> 64 channels, 4x4: fans 16 and 1024
    assert float(first.weight.detach().var()) == pytest.approx(2 / (16 + 1024), rel=0.1)
    deconv = build_decoder(conv).net[-1]  # ConvTranspose 64 -> 1: fans 1024 and 16, the same sum
    assert float(deconv.weight.detach().var()) == pytest.approx(2 / (16 + 1024), rel=0.1)


def test_default_init_is_left_untouched():
    torch.manual_seed(0)
    a = build_encoder(ModelParams(**SMALL))
    torch.manual_seed(0)
    b = build_encoder(ModelParams(**SMALL, init="default"))
    lin = nn.Linear(784, 32)
    apply_init(lin, "default")
    for (_, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q)


def test_xavier_keeps_the_pixelcnn_causal():
    torch.manual_seed(0)
    dec = build_decoder(ModelParams(**SMALL, decoder="pixelcnn", pixelcnn_layers=3, pixelcnn_maps=8,
                                    pixelcnn_cond_maps=2, init="xavier"))
    x = torch.bernoulli(torch.full((1, 1, 28, 28), 0.5)).requires_grad_(True)
    logits = dec.logits(torch.randn(1, D), x)
    (g,) = torch.autograd.grad(logits[0, 0, 14, 14], x)
    assert g[0, 0, 14, 14:].abs().sum() == 0 and g[0, 0, 15:].abs().sum() == 0
    assert g[0, 0, 14, :14].abs().sum() > 0


def test_gradient_clipping_by_value_and_by_norm():
    p = nn.Parameter(torch.zeros(3))
    for mode, expected in [("value", [1.0, -1.0, 0.5]),
                           ("norm", [3 / math.sqrt(25.25), -4 / math.sqrt(25.25), 0.5 / math.sqrt(25.25)])]:
        p.grad = torch.tensor([3.0, -4.0, 0.5])
        clip_gradients([p], TrainParams(grad_clip=1.0, grad_clip_mode=mode))
        torch.testing.assert_close(p.grad, torch.tensor(expected))
    p.grad = torch.tensor([3.0, -4.0, 0.5])
    clip_gradients([p], TrainParams(grad_clip=None))
    torch.testing.assert_close(p.grad, torch.tensor([3.0, -4.0, 0.5]))


def test_weight_decay_is_an_l2_term_on_weights_only():
    model = build({"divergence": "kl"})
    weights = decayed_weights(model)
    assert weights and all(w.dim() == 2 for w in weights)
    assert len(weights) == sum(isinstance(m, nn.Linear) for m in model.modules())
    l2_penalty(weights, 2.5e-5).backward()  # gradient of wd/2 |W|^2 is wd W
    for w in weights:
        torch.testing.assert_close(w.grad, 2.5e-5 * w.detach())
    assert all(p.grad is None for p in model.parameters() if p.dim() == 1)  # biases untouched
    assert l2_penalty(weights, 0.0) == 0.0


def test_rmsprop_tf1_known_updates_and_resume():
    """ms_0 = 1, ms <- 0.9 ms + 0.1 g^2, w <- w - lr g / sqrt(ms + 1e-10)."""
    w = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = RMSpropTF1([w], lr=0.01)
    g = torch.tensor([0.5, -1.0], dtype=torch.float64)
    ms, expected = torch.ones(2, dtype=torch.float64), w.detach().clone()
    for _ in range(3):
        w.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g**2
        expected = expected - 0.01 * g / torch.sqrt(ms + 1e-10)
        torch.testing.assert_close(w.detach(), expected)
    w2 = nn.Parameter(w.detach().clone())
    opt2 = RMSpropTF1([w2], lr=0.01)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from a checkpoint file
    for p, o in ((w, opt), (w2, opt2)):
        p.grad = g.clone()
        o.step()
    assert torch.equal(w, w2)


def test_authors_profile_selects_every_setting():
    p = compose(ROOT, ["profile=authors"])  # conf/profile/authors.yaml over the study
    assert (p.model.std_param, p.model.init, p.objective.scaling) == ("sigmoid", "xavier", "authors")
    assert (p.train.optimizer, p.train.grad_clip, p.train.grad_clip_mode) == ("rmsprop_tf1", 1.0, "value")
    base = load_params(ROOT / "params.yaml")  # and the defaults stay ours
    assert (base.model.std_param, base.model.init, base.objective.scaling) == \
        ("softplus", "default", "per_image")
    assert (base.train.optimizer, base.train.grad_clip_mode, base.train.weight_decay) == \
        ("rmsprop", "norm", 0.0)


@pytest.mark.parametrize("decoder", ["mlp", "pixelcnn"])
def test_authors_settings_train(prepared_mnist, decoder):
    model = ModelParams(hidden=[64], latent_dim=5, decoder=decoder, pixelcnn_layers=2, pixelcnn_maps=8,
                        pixelcnn_cond_maps=4, std_param="sigmoid", init="xavier")
    objective = ObjectiveParams.model_validate({"divergence": "mmd", "alpha": 1.0, "lambda": 1.0,
                                                "scaling": "authors"})
    train = TrainParams(epochs=2, batch_size=50, train_size=500, validation_size=100, diagnostics_size=100,
                        optimizer="rmsprop_tf1", grad_clip=1.0, grad_clip_mode="value",
                        weight_decay=2.5e-5, threads=1)
    result = Trainer(RunSpec(model, objective, train, str(prepared_mnist))).run()
    recon = [h["val_recon"] for h in result.history]
    assert all(math.isfinite(r) for r in recon) and recon[-1] < recon[0]
    assert result.history[-1]["val_loss"] < 1.0  # per-pixel scale: ~0.2-0.7 nats per pixel
