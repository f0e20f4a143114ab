"""Fast ancestral sampling of the two-stack PixelCNN by caching (Ramachandran et al. 2017, "Fast
Generation for Convolutional Image Models"): for each new pixel, compute only what changes.

Row-wise scheme. Drawing pixel (r, c) changes nothing the vertical stack feeds to row r: the
horizontal stack at row r sees the vertical stack of rows < r only (shifted down one row). So,
once per row r, every layer's vertical stack is advanced by ONE row (row r-1, a conv over the
last k//2+1 rows of its cached input) and its contribution to row r,

    b_l(r, :) = v_to_h(v_pre_l(r-1, :)) + h_conv bias + V_h z                 [W, B, 2*maps]

is kept. Then, for each pixel c of the row, each layer's horizontal unit at (r, c) alone is
computed from the cached row of the layer below (its k//2 or k//2+1 columns to the left) as one
matrix product, h_pre = b_l(r, c) + [window] W^T, gated, through the 1x1 output and residual; the
head gives the logit and x_(r,c) ~ Bernoulli(sigmoid(logit)) with the same call as the crop
sampler, so both draw the same images from the same RNG state (tests/test_models.py checks it
bit for bit in float64). Cost per image: the vertical stack once (28 one-row passes) and
784 x layers small matrix products, instead of 784 network passes over a crop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.model.base import IMAGE_SHAPE
from pipeline.model.pixelcnn.masked import gate

if TYPE_CHECKING:  # the sampler's argument only: gated.py imports this module when it samples
    from pipeline.model.pixelcnn.gated import GatedPixelCNNDecoder


def _row_major(weight: Tensor) -> Tensor:
    """A 1 x w conv weight [out, C, 1, w] as the matrix [w * C, out] that maps a window stored
    (column, channel)-major, [B, w, C] flattened, to the conv's output at its right end."""
    return weight.permute(0, 3, 1, 2).reshape(weight.shape[0], -1).t().contiguous()


@torch.no_grad()
def cached_sample(dec: GatedPixelCNNDecoder, z: Tensor) -> Tensor:
    """x ~ p(x|z) [B,1,28,28], binary, drawn from torch's global RNG in raster order."""
    _, height, width = IMAGE_SHAPE
    b, dtype, device = z.shape[0], z.dtype, z.device
    s = dec.conditioning(z)  # [B, L, 2, 2*maps]
    layers = list(dec.layers)
    maps = dec.maps
    x = torch.zeros(b, *IMAGE_SHAPE, device=device, dtype=dtype)
    # Vertical inputs: the image for layer 0, layer l-1's gated vertical output for layer l,
    # filled one row at a time (a row is complete before any row below reads it).
    v_in = [x] + [torch.zeros(b, maps, height, width, device=device, dtype=dtype) for _ in layers[1:]]
    w_h = [_row_major(layer.h_conv.weight) for layer in layers]
    w_out = [layer.h_out.weight.flatten(1).t().contiguous() for layer in layers]
    b_out = [layer.h_out.bias for layer in layers]
    head1, head2 = dec.head[1], dec.head[3]
    w1, w2 = head1.weight.flatten(1).t().contiguous(), head2.weight.flatten(1).t().contiguous()
    # The row below the first has no vertical context: v_to_h of a zero row (its bias), as the
    # full pass's zero padding gives.
    zero_row = torch.zeros(b, 2 * maps, 1, width, device=device, dtype=dtype)
    for r in range(height):
        bias_rows = []
        for i, layer in enumerate(layers):
            if r == 0:
                v_pre_above = zero_row
            else:  # advance the vertical stack by one row: v_pre_l(r-1, :)
                k = layer.half
                lo = max(0, r - 1 - k)
                slab = F.pad(v_in[i][:, :, lo:r], (k, k, k - (r - 1 - lo), 0))
                v_pre_above = layer.v_conv(slab) + s[:, i, 0, :, None, None]  # [B, 2m, 1, W]
                if i + 1 < len(layers):
                    v_in[i + 1][:, :, r - 1] = gate(v_pre_above)[:, :, 0]
            contrib = layer.v_to_h(v_pre_above)[:, :, 0]  # [B, 2m, W]
            row_bias = contrib + layer.h_conv.bias[:, None] + s[:, i, 1, :, None]
            bias_rows.append(row_bias.permute(2, 0, 1).contiguous())  # [W, B, 2m]: column c contiguous
        # Horizontal rows, left-padded with zeros: the image row (for layer 0), then each layer's
        # output row, stored (column, channel)-major so a window is a [B, w * C] view.
        k0 = layers[0].half
        h_rows = [torch.zeros(b, k0 + width, 1, device=device, dtype=dtype)]
        h_rows += [torch.zeros(b, layer.half + width, maps, device=device, dtype=dtype)
                   for layer in layers[1:]]
        for c in range(width):
            out = None
            for i, layer in enumerate(layers):
                k, row = layer.half, h_rows[i]
                if layer.first:  # columns c-k..c-1 of the image
                    window = row[:, c:c + k]
                else:  # columns c-k..c of the layer below, the last one the residual input
                    window = row[:, c:c + k + 1]
                pre = torch.addmm(bias_rows[i][c], window.reshape(b, -1), w_h[i])
                out = torch.addmm(b_out[i], gate(pre), w_out[i])
                if not layer.first:
                    out = out + row[:, c + k]
                if i + 1 < len(layers):
                    h_rows[i + 1][:, c + layers[i + 1].half] = out
            hidden = torch.relu(torch.addmm(head1.bias, torch.relu(out), w1))
            logit = torch.addmm(head2.bias, hidden, w2)  # [B, 1]
            pixel = torch.bernoulli(torch.sigmoid(logit))
            x[:, :, r, c] = pixel
            h_rows[0][:, c + k0] = pixel
    return x
