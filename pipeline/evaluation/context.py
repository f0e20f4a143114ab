"""What every metric of one checkpoint reads: the trained model with its spec, and the data.

A metric is a function `(model: Trained, data: EvalData, settings: EvaluateParams) -> dict`
(pipeline.evaluation.metrics). EvalData binarizes each split once, with a seed, on the CPU:
stochastic binarization of the test set is the convention for dynamically binarized MNIST
(Burda et al. 2016), and the seed makes every model see the same binary images whatever
device evaluates it. A model with a Gaussian decoder (model.likelihood) sees every split's grey
levels as they are instead (EvalData.likelihood). Encodings are cached, so the latent and
semi-supervised metrics encode the test set once between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from pipeline.data.splits import Split, load_split
from pipeline.model.likelihood import binarize_inputs
from pipeline.model.objective import InfoVAE
from pipeline.train.checkpoint import RunSpec

SPLIT_SEED_OFFSET = {"test": 0, "train": 1_000_003}  # distinct binarization streams per split


def binarize_once(split: Split, seed: int, name: str, likelihood: str = "bernoulli") -> Tensor:
    """Binary images of a split: one seeded Bernoulli sample for dynamic data (CPU generator,
    so the result does not depend on the device), the stored binary images otherwise; for a
    Gaussian likelihood, the grey levels as they are."""
    if not binarize_inputs(split.binarization, likelihood):
        return split.images
    g = torch.Generator().manual_seed(seed + SPLIT_SEED_OFFSET[name])
    return torch.bernoulli(split.images, generator=g)


@torch.no_grad()
def encode(encoder: torch.nn.Module, x: Tensor, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Posterior means and stds [N, d] (on the CPU) of images x, encoded in batches on device."""
    parts = [encoder(xb.to(device)) for xb in x.split(batch)]
    return torch.cat([m for m, _ in parts]).cpu(), torch.cat([s for _, s in parts]).cpu()


@dataclass(frozen=True)
class Trained:
    """A trained model in eval mode on its device, with the spec it was trained from."""

    net: InfoVAE
    spec: RunSpec
    device: torch.device
    rows: int  # z's per decoder call in the log-likelihood estimators (from free GPU memory on CUDA)
    amp: torch.dtype | None = None  # autocast dtype of the decoder network (pipeline.infra.accel)


@dataclass
class EvalData:
    data_dir: Path
    seed: int
    batch_size: int  # encoder batch
    progress_every_s: float | None = None  # log-likelihood progress on stderr (the CLI)
    likelihood: str = "bernoulli"  # the model's (model.likelihood): gaussian reads grey levels
    _splits: dict = field(default_factory=dict)
    _codes: dict = field(default_factory=dict)

    def split(self, name: str, limit: int | None = None) -> tuple[Split, Tensor]:
        """A split's first `limit` rows (all: None) and the images the model sees (binary, or
        grey levels for a Gaussian decoder), loaded once."""
        key = (name, limit)
        if key not in self._splits:
            split = load_split(self.data_dir, name, limit=limit)
            self._splits[key] = (split, binarize_once(split, self.seed, name, self.likelihood))
        return self._splits[key]

    def encodings(self, model: Trained, name: str, limit: int | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x) means and stds of a split's first `limit` images, encoded once."""
        key = (name, limit)
        if key not in self._codes:
            _, x = self.split(name, limit)
            self._codes[key] = encode(model.net.encoder, x, self.batch_size, model.device)
        return self._codes[key]
