"""Single-stack gated PixelCNN decoder conditioned on a spatial map of z (kept for ablation).

The study's flexible decoder is the two-stack model of pipeline.model.pixelcnn.gated
(`model.pixelcnn_arch: gated`). This one (`pixelcnn_arch: single`) is the masked-convolution
PixelCNN of van den Oord et al. (2016a), "Pixel Recurrent Neural Networks", with the gated units
of van den Oord et al. (2016b), "Conditional Image Generation with PixelCNN Decoders":

    p(x|z) = prod_i p(x_i | x_1..x_{i-1}, z)                       (raster order, eq. 1)
    h = tanh(W_f * x + V_f * s) . sigmoid(W_g * x + V_g * s)       (gated unit, eq. 2 and 5)

with s = m(z) a spatial conditioning map (their location-dependent variant, section 2.3): a small
deconvolutional network maps z once to [cond_maps, 28, 28], and V_f, V_g are 1x1 convolutions.
First layer a 7x7 mask-A convolution, then 3x3 mask-B convolutions with residual connections.
Its receptive field has the known "blind spot" up and to the right of each pixel (the stacked
masks never reach it; tests/test_models.py shows it by gradient). It earns its place as an
ablation: a weaker decoder with a different conditioning, to tell whether a finding (e.g. the
information preference, claim C3) depends on the decoder's power. Causality (logit i sees only
pixels j < i) holds, which is what an exact log p(x|z) needs: every mask zeroes the weights on
the centre row right of the centre (and on the centre itself for mask A) and on every row below.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.base import IMAGE_SHAPE, Decoder, at_least_fp32


def fp32_head(head: nn.Module, h: Tensor) -> Tensor:
    """The output 1x1 convolutions in fp32 even under bf16 autocast (pipeline.infra.accel): a
    bf16 logit is off by up to 2^-8 of itself, which summed over 784 pixels moved the NLL by
    ~0.06 nats in bench_gpu's agreement check; the head is a few percent of the compute."""
    with torch.autocast(h.device.type, enabled=False):
        return head(at_least_fp32(h))


def gate(pre: Tensor) -> Tensor:
    """tanh(f) . sigmoid(g) for pre = [f, g] stacked on the channel dimension (dim 1)."""
    f, g = pre.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class MaskedConv2d(nn.Conv2d):
    """A same-padded conv whose kernel sees only pixels before the centre in raster order.

    Mask A (first layer) excludes the centre pixel, so output i never depends on input i; mask B
    (later layers) includes it, which is safe because their input at i already excludes x_i. One
    image channel, so no colour-channel masking (van den Oord et al. 2016a, section 3.4).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        if mask_type not in ("A", "B") or kernel_size % 2 == 0:
            raise ValueError(f"mask_type must be 'A' or 'B' and kernel_size odd, got "
                             f"{mask_type!r}, {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.ones(kernel_size, kernel_size)
        mask[c, c + (mask_type == "B"):] = 0  # centre row: right of the centre (and centre for A)
        mask[c + 1:] = 0  # all rows below
        # A buffer, not a parameter: it follows .to(device), and is rebuilt from the constructor.
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        # Masking the weight (not the output) makes the gradient to masked inputs exactly zero.
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class GatedLayer(nn.Module):
    """h = tanh(W_f * x + V_f s) . sigmoid(W_g * x + V_g s); with a residual, x + 1x1conv(h)."""

    def __init__(self, in_channels: int, maps: int, kernel_size: int, mask_type: str,
                 cond_maps: int, residual: bool):
        super().__init__()
        self.conv = MaskedConv2d(in_channels, 2 * maps, kernel_size, mask_type)
        self.cond = nn.Conv2d(cond_maps, 2 * maps, 1, bias=False)  # V_f, V_g (eq. 5)
        # The residual branch's 1x1 conv as in van den Oord et al. (2016b), Fig. 2.
        self.out = nn.Conv2d(maps, maps, 1) if residual else None

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        f, g = (self.conv(x) + self.cond(s)).chunk(2, dim=1)
        h = torch.tanh(f) * torch.sigmoid(g)
        return h if self.out is None else x + self.out(h)


class PixelCNNDecoder(Decoder):
    """Gated PixelCNN p(x|z): `layers` gated layers (1 mask-A 7x7, layers-1 mask-B 3x3)."""

    autoregressive = True
    fast_forward: Callable[[Tensor, Tensor], Tensor] | None = None

    def __init__(self, latent_dim: int, layers: int = 12, maps: int = 32, cond_maps: int = 16):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.latent_dim = latent_dim
        c, h, w = IMAGE_SHAPE
        # s = m(z): z -> FC -> 7x7 -> deconv 14x14 -> deconv 28x28, computed once per z.
        self.cond_net = nn.Sequential(
            nn.Linear(latent_dim, maps * (h // 4) * (w // 4)), nn.ReLU(),
            nn.Unflatten(1, (maps, h // 4, w // 4)),
            nn.ConvTranspose2d(maps, maps, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(maps, cond_maps, 4, stride=2, padding=1),  # 14 -> 28
        )
        self.layers = nn.ModuleList(
            [GatedLayer(c, maps, 7, "A", cond_maps, residual=False)]
            + [GatedLayer(maps, maps, 3, "B", cond_maps, residual=True) for _ in range(layers - 1)]
        )
        # Output: ReLU + 1x1 convs down to one Bernoulli logit per pixel (van den Oord et al. 2016a, Table 1).
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(maps, maps, 1), nn.ReLU(), nn.Conv2d(maps, c, 1))

    def conditioning(self, z: Tensor) -> Tensor:
        """s = m(z) [B, cond_maps, 28, 28]."""
        return self.cond_net(z)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """Logits [B,1,H,W] of images x [B,1,H,W] (any H, W: crops too) given the map s."""
        h = x
        for layer in self.layers:
            h = layer(h, s)
        return fp32_head(self.head, h)

    def logits(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        if x is None:
            raise ValueError("PixelCNNDecoder.logits needs the image x (teacher forcing: the logit of "
                             "pixel i depends on the pixels before i); use sample(z) to generate")
        # fast_forward: the torch.compile'd network when pipeline.infra.accel set one
        return (self.fast_forward or self)(x, self.conditioning(z))

    @property
    def reach(self) -> int:
        """How far the logit of a pixel looks: rows up, and columns either way on those rows.
        Each layer adds its kernel's half-width (3 for the 7x7 mask A, 1 per 3x3 mask B)."""
        return sum(layer.conv.kernel_size[0] // 2 for layer in self.layers)

    @staticmethod
    def window(r: int, c: int, reach: int, height: int, width: int, up: int | None = None
               ) -> tuple[slice, slice]:
        """The crop around pixel (r, c) whose network pass gives (r, c) its exact logit: `up`
        rows up (default `reach`), `reach` columns either way."""
        up = reach if up is None else up
        return slice(max(0, r - up), r + 1), slice(max(0, c - reach), min(width, c + reach + 1))

    @property
    def reach_up(self) -> int:
        return self.reach

    def crop_condition(self, s: Tensor, rows: slice, cols: slice) -> Tensor:
        return s[:, :, rows, cols]  # a spatial map: cropped with the image

    @torch.no_grad()
    def sample(self, z: Tensor) -> Tensor:
        """Ancestral sampling in raster order on receptive-field crops (crop_sample)."""
        return crop_sample(self, z)

    @torch.no_grad()
    def mean_image(self, z: Tensor) -> Tensor:
        # Per-pixel means of an autoregressive model need the unknown previous pixels: show a sample.
        return self.sample(z)


def crop_sample(dec: Decoder, z: Tensor) -> Tensor:
    """Ancestral sampling in raster order: 784 network passes, x_i ~ Bernoulli(sigmoid(l_i)).

    Each pass runs on a crop around the pixel, not the whole image (`dec` provides conditioning,
    _logits, window, reach, reach_up and crop_condition). Every kernel is zero below its centre
    row, so the logit of (r, c) depends on rows <= r only, and at most `reach_up` rows up and
    `reach` columns aside. Zero padding at a crop edge is wrong only for positions near it, and
    the wrong band grows by one layer's half-width per layer: after all layers it spans fewer
    rows or columns than the reach, so (r, c), a reach from every crop edge that is not the
    image's, gets the logit of a full-image pass (tests/test_models.py checks every pixel).
    """
    s = dec.conditioning(z)
    x = torch.zeros(z.shape[0], *IMAGE_SHAPE, device=z.device, dtype=z.dtype)
    _, h, w = IMAGE_SHAPE
    for r in range(h):
        for c in range(w):
            rows, cols = dec.window(r, c, dec.reach, h, w, dec.reach_up)
            # .forward, not __call__: a compiled forward would recompile for every crop shape
            logits = dec.forward(x[:, :, rows, cols], dec.crop_condition(s, rows, cols))
            logit = logits[:, :, r - rows.start, c - cols.start]
            x[:, :, r, c] = torch.bernoulli(torch.sigmoid(logit))
    return x
