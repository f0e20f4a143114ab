"""Known-answer tests for the encoder and decoder families (small models, seeded, CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.model import (
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    PixelCNNDecoder,
    build_decoder,
    build_encoder,
)
from pipeline.model.base import Decoder, bernoulli_log_prob
from pipeline.model.pixelcnn.masked import MaskedConv2d
from pipeline.params.model import ModelParams

D = 3  # latent dim of the small test models
FLOOR = 1e-3


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def small_decoders() -> dict[str, Decoder]:
    return {
        "mlp": MLPDecoder(D, [16, 8]),
        "conv": ConvDecoder(D, [4, 8], 16),
        "pixelcnn": PixelCNNDecoder(D, layers=3, maps=8, cond_maps=4),
    }


def output_layer(dec: Decoder) -> nn.Module:
    return dec.head[-1] if isinstance(dec, PixelCNNDecoder) else dec.net[-1]


def images(b: int, p: float = 0.3) -> torch.Tensor:
    return torch.bernoulli(torch.full((b, 1, 28, 28), p))


# --- PixelCNN causality -------------------------------------------------------------------------


def test_mask_a_excludes_centre_mask_b_includes_it():
    a, b = MaskedConv2d(1, 1, 7, "A").mask[0, 0], MaskedConv2d(1, 1, 3, "B").mask[0, 0]
    assert a[3, 3] == 0 and a[3, :3].eq(1).all() and a[:3].eq(1).all() and a[4:].eq(0).all()
    assert a[3, 4:].eq(0).all()
    assert b[1, 1] == 1 and b[1, 2] == 0 and b[2].eq(0).all() and b[0].eq(1).all()


@pytest.mark.parametrize("pos", [(0, 0), (0, 5), (3, 0), (10, 13), (14, 27), (27, 27)])
def test_pixelcnn_logit_i_depends_only_on_earlier_pixels(pos):
    dec = PixelCNNDecoder(D, layers=4, maps=8, cond_maps=4)
    x = images(1, 0.5).requires_grad_(True)
    z = torch.randn(1, D, requires_grad=True)
    r, c = pos
    dec.logits(z, x)[0, 0, r, c].backward()
    grad = x.grad[0, 0].flatten()
    i = r * 28 + c
    assert grad[i:].abs().max().item() == 0.0, "logit i depends on pixel j >= i"
    if c > 0:
        assert grad[i - 1] != 0, "the pixel left of i must be in the receptive field"
    if r > 0:
        assert grad[i - 28] != 0, "the pixel above i must be in the receptive field"
    if i > 0:
        assert (grad[:i] != 0).sum() > 0
    assert z.grad.abs().sum() > 0, "the logits must depend on z (conditioning)"


def test_pixelcnn_logits_require_x():
    dec = PixelCNNDecoder(D, layers=2, maps=4, cond_maps=2)
    with pytest.raises(ValueError, match="needs the image x"):
        dec.logits(torch.randn(2, D))
    assert dec.autoregressive and not MLPDecoder(D, [8]).autoregressive


# --- decoder log-likelihoods --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "conv", "pixelcnn"])
@pytest.mark.parametrize("bias", [None, 50.0, -50.0])
def test_decoder_log_prob_matches_torch_bernoulli(name, bias):
    dec = small_decoders()[name]
    if bias is not None:  # extreme logits: every pixel's logit ~ +-50
        with torch.no_grad():
            output_layer(dec).weight.zero_()
            output_layer(dec).bias.fill_(bias)
    x, z = images(5), torch.randn(5, D)
    logits = dec.logits(z, x)
    assert logits.shape == (5, 1, 28, 28)
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    got = dec.log_prob(x, z)
    assert got.shape == (5,) and torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(bernoulli_log_prob(x, logits), ref, rtol=1e-5, atol=1e-3)
    if bias is not None:  # known answer: each pixel disagreeing with the sign costs ~50 nats
        wrong = (x == (0.0 if bias > 0 else 1.0)).flatten(1).sum(1).float()
        torch.testing.assert_close(got, -50.0 * wrong, rtol=1e-4, atol=1e-3)


def test_bernoulli_log_prob_known_values():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0, 50.0, -50.0]])
    # two fair coins: 2 log(1/2); two near-certain correct pixels: ~0
    torch.testing.assert_close(bernoulli_log_prob(x, logits), torch.tensor([-2 * 0.6931472]))


# --- encoders -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_encoder_shapes_floor_and_gradients(family):
    enc = MLPEncoder(D, [16, 8], FLOOR) if family == "mlp" else ConvEncoder(D, [4, 8], 16, FLOOR)
    x = images(4)
    mean, std = enc(x)
    assert mean.shape == std.shape == (4, D) and enc.latent_dim == D
    assert (std >= FLOOR).all() and torch.isfinite(mean).all()
    # a very negative raw std is floored, not zero: log q(z|x) stays finite
    with torch.no_grad():
        enc.head.bias[D:].fill_(-1e4)
    _, std_min = enc(x)
    assert torch.allclose(std_min, torch.full_like(std_min, FLOOR))
    with torch.no_grad():
        enc.head.bias[D:].fill_(0.5413)
    mean, std = enc(x)
    (mean.sum() + std.sum()).backward()
    for p in enc.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_encoder_starts_near_the_prior_on_full_images():
    """Default-size encoders on 784-pixel images: finite outputs; std ~ 1 at initialisation with
    softplus (its std bias is set for it), ~ sigmoid(0) = 0.5 and <= 1 with sigmoid (the default)."""
    x = images(8, 0.5)
    for family in ("mlp", "conv"):
        for std_param, low, high in (("softplus", 0.5, 1.5), ("sigmoid", 0.3, 0.7)):
            mean, std = build_encoder(ModelParams(encoder=family, std_param=std_param))(x)
            assert torch.isfinite(mean).all() and mean.abs().max() < 5
            assert low < std.mean() < high and (std_param == "softplus" or std.max() <= 1.0)


def test_conv_shapes_are_28_14_7_and_back():
    enc, dec = ConvEncoder(D, [4, 8], 16), ConvDecoder(D, [4, 8], 16)
    h = images(2)
    shapes = []
    for layer in enc.body:
        h = layer(h)
        if isinstance(layer, nn.Conv2d):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(4, 14, 14), (8, 7, 7)]
    h, shapes = torch.randn(2, D), []
    for layer in dec.net:
        h = layer(h)
        if isinstance(layer, (nn.Unflatten, nn.ConvTranspose2d)):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(8, 7, 7), (4, 14, 14), (1, 28, 28)]


# --- PixelCNN sampling --------------------------------------------------------------------------


def tiny_pixelcnn() -> PixelCNNDecoder:
    return PixelCNNDecoder(D, layers=2, maps=4, cond_maps=2)


@pytest.mark.parametrize("bias,value", [(-100.0, 0.0), (100.0, 1.0)])
def test_pixelcnn_samples_follow_forced_logits(bias, value):
    dec = tiny_pixelcnn()
    with torch.no_grad():
        dec.head[-1].bias.fill_(bias)
    x = dec.sample(torch.randn(2, D))
    assert x.shape == (2, 1, 28, 28) and x.eq(value).all()
    assert dec.mean_image(torch.randn(1, D)).eq(value).all()


def test_pixelcnn_sample_is_ancestral_in_raster_order():
    """Each pixel i is drawn from Bernoulli(sigmoid(logits(z, x_so_far))[i]): replay the same RNG
    stream through full-image teacher-forced logits and get the same image."""
    dec = tiny_pixelcnn()
    with torch.no_grad():  # sharpen the logits so that the context changes the draws
        dec.head[-1].weight.mul_(20.0)
    z = torch.randn(3, D)

    def replay(use_context: bool) -> torch.Tensor:
        torch.manual_seed(123)
        x = torch.zeros(3, 1, 28, 28)
        with torch.no_grad():
            for r in range(28):
                for c in range(28):
                    ctx = x if use_context else torch.zeros_like(x)
                    x[:, :, r, c] = torch.bernoulli(torch.sigmoid(dec.logits(z, ctx)[:, :, r, c]))
        return x

    torch.manual_seed(123)
    sample = dec.sample(z)
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(sample, replay(use_context=True))
    assert not torch.equal(sample, replay(use_context=False)), "test has no power: context unused"


@pytest.mark.parametrize("layers", [1, 2, 5, 12])
def test_pixelcnn_crop_windows_give_the_full_image_logits(layers):
    """Sampling passes the network over a crop around each pixel (PixelCNNDecoder.window): for
    every pixel, the crop's logit equals the full-image logit, for a real (non-zero) image."""
    dec = PixelCNNDecoder(D, layers=layers, maps=4, cond_maps=2).double()
    assert dec.reach == 3 + (layers - 1)
    z = torch.randn(2, D, dtype=torch.float64)
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.4, dtype=torch.float64))
    with torch.no_grad():
        for layer in dec.layers:  # larger weights: far pixels' influence must not fade to rounding
            layer.conv.weight.mul_(5.0)
        s = dec.conditioning(z)
        full = dec.forward(x, s)
        for r in range(28):
            for c in range(28):
                rows, cols = dec.window(r, c, dec.reach, 28, 28)
                crop = dec.forward(x[:, :, rows, cols], s[:, :, rows, cols])
                torch.testing.assert_close(crop[:, :, r - rows.start, c - cols.start], full[:, :, r, c],
                                           rtol=1e-12, atol=1e-12)
        # and a window one short of the reach is not enough (the test has power)
        rows, cols = dec.window(27, 14, dec.reach - 1, 28, 28)
        crop = dec.forward(x[:, :, rows, cols], s[:, :, rows, cols])
        assert (crop[:, :, 27 - rows.start, 14 - cols.start] - full[:, :, 27, 14]).abs().max() > 1e-10


# --- dispatch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,cls", [("mlp", MLPEncoder), ("conv", ConvEncoder)])
def test_build_encoder(name, cls):
    p = ModelParams(encoder=name, latent_dim=4, hidden=[8], conv_channels=[2, 3], conv_fc=5,
                    std_floor=0.01)
    enc = build_encoder(p)
    assert type(enc) is cls and enc.latent_dim == 4 and enc.std_floor == 0.01
    assert enc(images(2))[0].shape == (2, 4)


@pytest.mark.parametrize(
    "name,cls", [("mlp", MLPDecoder), ("conv", ConvDecoder), ("pixelcnn", PixelCNNDecoder)]
)
def test_build_decoder(name, cls):
    p = ModelParams(decoder=name, pixelcnn_arch="single", latent_dim=4, hidden=[8], conv_channels=[2, 3],
                    conv_fc=5,
                    pixelcnn_layers=3, pixelcnn_maps=4, pixelcnn_cond_maps=2)
    dec = build_decoder(p)
    assert type(dec) is cls
    assert dec.logits(torch.randn(2, 4), images(2)).shape == (2, 1, 28, 28)
    if name == "pixelcnn":
        assert len(dec.layers) == 3 and dec.layers[0].conv.kernel_size == (7, 7)
        assert all(layer.conv.kernel_size == (3, 3) for layer in dec.layers[1:])
        assert dec.layers[1].conv.out_channels == 8 and dec.layers[1].cond.in_channels == 2
