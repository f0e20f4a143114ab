"""A trained InfoVAE as one module for MLflow's PyTorch flavour: `forward` encodes (the mean of
q(z|x), what a downstream user of the codes wants, and a tensor, as MLflow's pyfunc requires),
`sample` decodes draws from the prior. The trained InfoVAE is kept whole inside it (encoder,
decoder, divergence), so nothing of the checkpoint is lost."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.model.objective import InfoVAE


class TrainedInfoVAE(nn.Module):
    def __init__(self, model: InfoVAE):
        super().__init__()
        self.model = model.eval()

    @property
    def latent_dim(self) -> int:
        return self.model.encoder.latent_dim

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """x: images [N, 1, 28, 28] in [0, 1] -> codes [N, latent_dim] (the mean of q(z|x))."""
        return self.model.encoder(x)[0]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> Tensor:
        """n images [n, 1, 28, 28] decoded from z ~ N(0, I): pixel probabilities (a factorized
        decoder) or binary samples (PixelCNN), seeded."""
        device = next(self.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # the PixelCNN's pixel draws too
            return self.model.decoder.mean_image(torch.randn(n, self.latent_dim, device=device))
