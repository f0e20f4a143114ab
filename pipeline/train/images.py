"""Image grids as PNG bytes (samples and reconstructions for MLflow and the report)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from torch import Tensor


def grid(images: Tensor, nrow: int = 10, pad: int = 2) -> np.ndarray:
    """[N,1,H,W] in [0,1] -> uint8 [rows*(H+pad)+pad, nrow*(W+pad)+pad], white padding."""
    imgs = images.detach().float().clamp(0, 1).cpu().numpy()[:, 0]
    n, h, w = imgs.shape
    rows = -(-n // nrow)
    out = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad), np.float32)
    for i, img in enumerate(imgs):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return (out * 255).round().astype(np.uint8)


def png_bytes(array: np.ndarray, scale: int = 2) -> bytes:
    img = Image.fromarray(array, mode="L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
