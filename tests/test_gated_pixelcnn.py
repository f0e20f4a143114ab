"""Known-answer tests for the two-stack gated PixelCNN (the flexible decoder) and its samplers."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.model import GatedPixelCNNDecoder, PixelCNNDecoder, build_decoder
from pipeline.params.model import ModelParams

D = 3
POSITIONS = [(0, 0), (0, 5), (5, 0), (10, 13), (14, 27), (27, 27), (27, 0), (20, 8)]


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def gated(layers: int = 3, maps: int = 4) -> GatedPixelCNNDecoder:
    return GatedPixelCNNDecoder(D, layers=layers, maps=maps).double()


def gradient_support(dec, r: int, c: int) -> torch.Tensor:
    """Bool [28, 28]: the pixels whose value moves logit (r, c) of image 0 (float64 gradient)."""
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.5, dtype=torch.float64)).requires_grad_(True)
    z = torch.randn(2, D, dtype=torch.float64)
    grad, = torch.autograd.grad(dec.logits(z, x)[0, 0, r, c], x)
    assert not grad[1].any(), "logit of image 0 depends on image 1"
    return grad[0, 0] != 0


def earlier_in_window(r: int, c: int, up: int, side: int) -> torch.Tensor:
    """The pixels before (r, c) in raster order within `up` rows up and `side` columns aside."""
    m = torch.zeros(28, 28, dtype=torch.bool)
    m[max(0, r - up):r, max(0, c - side):c + side + 1] = True
    m[r, max(0, c - side):c] = True
    return m


@pytest.mark.parametrize("layers", [1, 3, 6])
@pytest.mark.parametrize("pos", POSITIONS)
def test_gated_logit_reaches_every_earlier_pixel_of_its_field_and_no_later_one(layers, pos):
    dec = gated(layers)
    r, c = pos
    support = gradient_support(dec, r, c)
    field = earlier_in_window(r, c, dec.reach_up, dec.reach)
    assert dec.reach == 3 + (layers - 1)
    assert torch.equal(dec.receptive_field(r, c), field)
    later = torch.zeros(28 * 28, dtype=torch.bool)
    later[r * 28 + c:] = True
    assert not (support.flatten() & later).any(), "logit i depends on a pixel j >= i"
    assert torch.equal(support, field), f"unreached: {(field & ~support).nonzero().tolist()[:5]}"


@pytest.mark.parametrize("pos", [(10, 13), (27, 14)])
def test_single_stack_blind_spot_fails_the_same_check(pos):
    """The single-stack PixelCNN is causal, but misses pixels up and to the right inside its
    own window: the blind spot the two stacks remove."""
    dec = PixelCNNDecoder(D, layers=4, maps=4, cond_maps=2).double()
    r, c = pos
    support = gradient_support(dec, r, c)
    field = earlier_in_window(r, c, dec.reach, dec.reach)
    assert not (support & ~field).any()  # causal, within its window
    blind = field & ~support
    assert blind.any()
    assert (blind.nonzero()[:, 1] > c).all(), "the missed pixels are right of the column"
    assert blind[r - 1, c + 2:].any()  # e.g. two columns right on the row above


def test_log_prob_is_the_sum_of_the_bernoulli_terms():
    dec = gated(3)
    z = torch.randn(2, D, dtype=torch.float64)
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.3, dtype=torch.float64))
    p = torch.sigmoid(dec.logits(z, x)).flatten(1).tolist()
    hand = [sum(math.log(pi if xi else 1.0 - pi) for pi, xi in zip(p[b], x[b].flatten().tolist()))
            for b in range(2)]
    torch.testing.assert_close(dec.log_prob(x, z), torch.tensor(hand, dtype=torch.float64),
                               rtol=1e-12, atol=1e-9)


def test_log_prob_known_answer_with_a_constant_logit():
    """Zero output weights, bias b: log p(x|z) = n1 log sigmoid(b) + n0 log(1 - sigmoid(b))."""
    dec = gated(2)
    with torch.no_grad():
        dec.head[-1].weight.zero_()
        dec.head[-1].bias.fill_(0.7)
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.4, dtype=torch.float64))
    n1 = x.flatten(1).sum(1)
    want = n1 * math.log(1 / (1 + math.exp(-0.7))) + (784 - n1) * math.log(1 - 1 / (1 + math.exp(-0.7)))
    torch.testing.assert_close(dec.log_prob(x, torch.randn(3, D, dtype=torch.float64)), want)


def test_logits_depend_on_z_globally():
    dec = gated(2)
    x = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
    z = torch.randn(1, D, dtype=torch.float64, requires_grad=True)
    dec.logits(z, x)[0, 0, 0, 0].backward()  # the first pixel sees no image, only z
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("layers", [1, 2, 5])
def test_gated_crop_windows_give_the_full_image_logits(layers):
    dec = gated(layers)
    with torch.no_grad():  # larger weights: far pixels' influence must not fade to rounding
        for layer in dec.layers:
            layer.v_conv.weight.mul_(4.0)
            layer.h_conv.weight.mul_(4.0)
    z = torch.randn(2, D, dtype=torch.float64)
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.4, dtype=torch.float64))
    with torch.no_grad():
        s = dec.conditioning(z)
        full = dec(x, s)
        for r in range(28):
            for c in range(28):
                rows, cols = dec.window(r, c, dec.reach, 28, 28, dec.reach_up)
                crop = dec.forward(x[:, :, rows, cols], s)
                torch.testing.assert_close(crop[:, :, r - rows.start, c - cols.start], full[:, :, r, c],
                                           rtol=1e-12, atol=1e-12)
        rows, cols = dec.window(27, 14, dec.reach, 28, 28, dec.reach_up - 1)  # one row short
        crop = dec.forward(x[:, :, rows, cols], s)
        assert (crop[:, :, 27 - rows.start, 14 - cols.start] - full[:, :, 27, 14]).abs().max() > 1e-10


def sharpened(layers: int) -> GatedPixelCNNDecoder:
    """Weights scaled up so that draws depend strongly on the context (the tests have power)."""
    dec = gated(layers, maps=6)
    with torch.no_grad():
        for p in dec.parameters():
            p.mul_(3.0)
    return dec


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_cached_sampler_draws_exactly_what_the_crop_sampler_draws(layers):
    dec = sharpened(layers)
    z = torch.randn(4, D, dtype=torch.float64)
    torch.manual_seed(7)
    crops = dec.sample(z, method="crops")
    torch.manual_seed(7)
    cached = dec.sample(z, method="cached")
    assert torch.equal(cached, crops)
    assert set(cached.unique().tolist()) == {0.0, 1.0}
    torch.manual_seed(8)
    assert not torch.equal(dec.sample(z), cached), "test has no power: the seed does not matter"


def test_cached_sample_is_ancestral_in_raster_order():
    """Replaying the RNG stream through full-image teacher-forced logits gives the same image;
    with the context zeroed it does not (the draws depend on the previous pixels)."""
    dec = sharpened(2)
    z = torch.randn(3, D, dtype=torch.float64)

    def replay(use_context: bool) -> torch.Tensor:
        torch.manual_seed(123)
        x = torch.zeros(3, 1, 28, 28, dtype=torch.float64)
        with torch.no_grad():
            for r in range(28):
                for c in range(28):
                    ctx = x if use_context else torch.zeros_like(x)
                    x[:, :, r, c] = torch.bernoulli(torch.sigmoid(dec.logits(z, ctx)[:, :, r, c]))
        return x

    torch.manual_seed(123)
    sample = dec.sample(z)
    assert torch.equal(sample, replay(use_context=True))
    assert not torch.equal(sample, replay(use_context=False))


@pytest.mark.parametrize("bias,value", [(-100.0, 0.0), (100.0, 1.0)])
def test_samples_follow_forced_logits(bias, value):
    dec = GatedPixelCNNDecoder(D, layers=2, maps=4)
    with torch.no_grad():
        dec.head[-1].bias.fill_(bias)
    assert dec.sample(torch.randn(2, D)).eq(value).all()
    assert dec.mean_image(torch.randn(1, D)).eq(value).all()
    with pytest.raises(ValueError, match="unknown sampling method"):
        dec.sample(torch.randn(1, D), method="nope")


def test_build_decoder_defaults_to_the_gated_two_stack_model():
    p = ModelParams(decoder="pixelcnn", latent_dim=4, pixelcnn_layers=3, pixelcnn_maps=4)
    dec = build_decoder(p)
    assert type(dec) is GatedPixelCNNDecoder and len(dec.layers) == 3 and dec.maps == 4
    assert dec.layers[0].v_conv.kernel_size == (4, 7) and dec.layers[0].h_conv.kernel_size == (1, 3)
    assert all(la.v_conv.kernel_size == (2, 3) and la.h_conv.kernel_size == (1, 2) for la in dec.layers[1:])
    assert type(build_decoder(p.model_copy(update={"pixelcnn_arch": "single"}))) is PixelCNNDecoder
    with pytest.raises(ValueError):
        ModelParams(pixelcnn_arch="double")
