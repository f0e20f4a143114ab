"""Two-stack gated PixelCNN p(x|z) with z as a global conditioning vector (the flexible decoder).

van den Oord et al. (2016b), "Conditional Image Generation with PixelCNN Decoders", section 2:

    p(x|z) = prod_i p(x_i | x_1..x_{i-1}, z)                                 (raster order)
    y = tanh(W_f * x + V_f z) . sigmoid(W_g * x + V_g z)                     (eq. 2 and 4)

in two stacks per layer. The vertical stack sees the rows above and the current row (a
(k//2+1) x k kernel over rows r-k//2..r); its pre-activations, shifted down one row, reach the
horizontal stack through a 1x1 convolution, so the horizontal stack at (r, c) sees the vertical
stack of rows < r only. The horizontal stack sees the current row to the left: a 1 x k//2 kernel
over columns c-k//2..c-1 in the first layer ("mask A", x_i itself excluded), a 1 x (k//2+1)
kernel over c-k//2..c afterwards ("mask B"), with a residual 1x1 convolution. Kernels are cut to
their causal part and padded on the causal side only: nothing is masked, and no weight is ever
multiplied by zero. The receptive field of logit (r, c) is the full rectangle of rows
r-R-1..r-1, columns c-R..c+R, plus the row-r pixels c-R..c-1, with R the sum of the kernels'
half-widths: no blind spot (tests/test_models.py checks the gradient support pixel by pixel).

Sizes and conditioning as the InfoVAE authors' decoder (ShengjiaZhao/PixelCNN, models.py and
layers.py): 12 layers of 32 maps, a 7-wide first kernel then 3-wide ones, the latent code fed
to every gated unit of both stacks as a learned per-channel bias V z (their `conditional`
argument), a residual in the horizontal stack only, and a ReLU 1x1-conv head to one Bernoulli
logit per pixel. Where their code differs from the paper we follow the paper: their vertical
stack is a raster-masked square convolution (mask A, then mask B), so their model keeps the blind
spot the two stacks exist to remove; ours is the paper's. Their 1x1 convolutions after each
stack carry a ReLU; the paper's (Fig. 2) do not, and neither do ours.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.base import IMAGE_SHAPE, Decoder
from pipeline.model.pixelcnn.masked import PixelCNNDecoder, crop_sample, fp32_head, gate


class StackLayer(nn.Module):
    """One gated layer: (v, h) -> (v', h'). `first`: the input is the image (one channel), the
    horizontal kernel excludes the current pixel and there is no residual."""

    def __init__(self, in_channels: int, maps: int, kernel: int, first: bool):
        super().__init__()
        if kernel % 2 == 0 or kernel < 3:
            raise ValueError(f"kernel must be odd and >= 3, got {kernel}")
        self.half, self.first, self.maps = kernel // 2, first, maps
        self.v_conv = nn.Conv2d(in_channels, 2 * maps, (self.half + 1, kernel))
        self.h_conv = nn.Conv2d(in_channels, 2 * maps, (1, self.half if first else self.half + 1))
        self.v_to_h = nn.Conv2d(2 * maps, 2 * maps, 1)
        self.h_out = nn.Conv2d(maps, maps, 1)

    def forward(self, v: Tensor, h: Tensor, cond_v: Tensor, cond_h: Tensor) -> tuple[Tensor, Tensor]:
        """cond_v, cond_h [B, 2*maps, 1, 1]: V z of the two stacks."""
        k = self.half
        v_pre = self.v_conv(F.pad(v, (k, k, k, 0))) + cond_v  # rows r-k..r, columns c-k..c+k
        down = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # row r gets row r-1: the rows above only
        h_in = F.pad(h, (k, 0))[..., :-1] if self.first else F.pad(h, (k, 0))  # c-k..c-1 | c-k..c
        h_pre = self.h_conv(h_in) + self.v_to_h(down) + cond_h
        out = self.h_out(gate(h_pre))
        return gate(v_pre), out if self.first else h + out


class GatedPixelCNNDecoder(Decoder):
    """Two-stack gated PixelCNN: `layers` layers of `maps` maps, first kernel 7, then 3."""

    autoregressive = True
    fast_forward: Callable[[Tensor, Tensor], Tensor] | None = None

    def __init__(self, latent_dim: int, layers: int = 12, maps: int = 32, first_kernel: int = 7,
                 kernel: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.latent_dim, self.maps = latent_dim, maps
        c = IMAGE_SHAPE[0]
        self.layers = nn.ModuleList([StackLayer(c, maps, first_kernel, True)]
                                    + [StackLayer(maps, maps, kernel, False) for _ in range(layers - 1)])
        # V_f, V_g of both stacks of every layer in one matrix: z -> [B, layers, 2 stacks, 2*maps]
        self.cond = nn.Linear(latent_dim, layers * 2 * 2 * maps, bias=False)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(maps, maps, 1), nn.ReLU(), nn.Conv2d(maps, c, 1))

    def conditioning(self, z: Tensor) -> Tensor:
        """V z for every gated unit: [B, layers, 2 (vertical, horizontal), 2*maps]."""
        return self.cond(z).view(z.shape[0], len(self.layers), 2, 2 * self.maps)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """Logits [B,1,H,W] of images x [B,1,H,W] (any H, W: crops too) given s = conditioning(z)."""
        v = h = x
        for i, layer in enumerate(self.layers):
            v, h = layer(v, h, s[:, i, 0, :, None, None], s[:, i, 1, :, None, None])
        return fp32_head(self.head, h)

    def logits(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        if x is None:
            raise ValueError("GatedPixelCNNDecoder.logits needs the image x (teacher forcing: the "
                             "logit of pixel i depends on the pixels before i); use sample(z) to generate")
        # fast_forward: the torch.compile'd network when pipeline.infra.accel set one
        return (self.fast_forward or self)(x, self.conditioning(z))

    @property
    def reach(self) -> int:
        """R = the sum of the kernels' half-widths: columns either way, and rows up - 1."""
        return sum(layer.half for layer in self.layers)

    @property
    def reach_up(self) -> int:
        return self.reach + 1  # the vertical stack covers R rows, the down shift one more

    window = staticmethod(PixelCNNDecoder.window)

    def crop_condition(self, s: Tensor, rows: slice, cols: slice) -> Tensor:
        return s  # global: the same for every crop

    def receptive_field(self, r: int, c: int, height: int = 28, width: int = 28) -> Tensor:
        """Bool [H, W]: the pixels logit (r, c) depends on (see the module docstring)."""
        rf = torch.zeros(height, width, dtype=torch.bool)
        big = self.reach
        rf[max(0, r - big - 1):r, max(0, c - big):c + big + 1] = True
        rf[r, max(0, c - big):c] = True
        return rf

    @torch.no_grad()
    def sample(self, z: Tensor, method: str = "cached") -> Tensor:
        """x ~ p(x|z) in raster order. "cached": each new pixel computes only the activations
        that change (pipeline.model.pixelcnn.cache); "crops": a network pass per pixel on its
        receptive-field crop (the baseline; the same draws from the same RNG state)."""
        if method == "cached":
            from pipeline.model.pixelcnn.cache import cached_sample

            return cached_sample(self, z)
        if method == "crops":
            return crop_sample(self, z)
        raise ValueError(f"unknown sampling method {method!r}: 'cached' or 'crops'")

    @torch.no_grad()
    def mean_image(self, z: Tensor) -> Tensor:
        # Per-pixel means of an autoregressive model need the unknown previous pixels: show a sample.
        return self.sample(z)
