"""What a finished run shows: a grid of samples from the prior and of reconstructions."""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.model.objective import InfoVAE
from pipeline.train.images import grid, png_bytes


@torch.no_grad()
def sample_grid(model: InfoVAE, n: int = 100, seed: int = 0) -> bytes:
    """n images decoded from z ~ p(z) (pixel probabilities, or samples for PixelCNN)."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        z = torch.randn(n, model.encoder.latent_dim, device=device)
        return png_bytes(grid(model.decoder.mean_image(z)))


@torch.no_grad()
def reconstruction_grid(model: InfoVAE, x: Tensor, n: int = 50, seed: int = 0) -> bytes:
    """Rows of 10 inputs, each followed by a row of their reconstructions from the mean code."""
    device = next(model.parameters()).device
    x = x[:n].to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        mean, _ = model.encoder(x)
        recon = model.decoder.mean_image(mean)
    rows = [t for i in range(0, len(x), 10) for t in (x[i:i + 10], recon[i:i + 10])]
    return png_bytes(grid(torch.cat(rows)))
