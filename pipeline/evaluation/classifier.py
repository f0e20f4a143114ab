"""The MNIST classifier that labels generated samples (class mismatch, Zhao et al. 2017 Fig. 3C).

A small CNN (conv 3x3x16 - pool - conv 3x3x32 - pool - fc 128 - 10) trained by the project on
the prepared train split and cached: the cache holds the weights, the key it was trained for
(data checksums recorded by prepare, architecture, training settings) and its test accuracy;
a missing, unreadable or stale cache is retrained. Loaded with weights_only=True.

Which images: generated samples are classified as binary images x ~ p(x|z) by default. For
dynamically binarized data each training image is, with probability 1/2, a fresh Bernoulli
sample of its grey levels (exactly the kind of binary image a factorized decoder samples) and
otherwise the grey levels themselves (pixel probabilities, what `mean` images look like), so
the classifier is accurate on both; the reported accuracy is on the test set binarized once
with a fixed seed, with the grey-level accuracy beside it. Fixed/threshold data are binary
already and used as they are.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.data.splits import load_split, read_metadata
from pipeline.errors import PipelineError
from pipeline.infra import atomic
from pipeline.params.evaluate import ClassifierParams

ARCH = "cnn16-32-fc128"
FORMAT_VERSION = 1
TEST_BINARIZATION_SEED = 2024


def build_classifier(n_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, n_classes),
    )


def cache_key(data_dir: str | Path, cfg: ClassifierParams) -> dict[str, Any]:
    """What a cached classifier must have been trained for to be reused."""
    meta = {s: read_metadata(Path(data_dir) / f"{s}.parquet") for s in ("train", "test")}
    return {
        "arch": ARCH,
        "dataset": meta["train"]["dataset"],
        "binarization": meta["train"]["binarization"],
        "train_sha256": meta["train"]["pixels_sha256"],
        "test_sha256": meta["test"]["pixels_sha256"],
        "train": cfg.identity(),
    }


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch: int = 2000) -> float:
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum())
                  for x, y in zip(images.split(batch), labels.split(batch)))
    return correct / len(labels)


def train_classifier(data_dir: str | Path, cfg: ClassifierParams, device: torch.device | None = None,
                     log: Callable[[str], None] = print) -> tuple[nn.Module, dict[str, Any]]:
    """Train the CNN with Adam on the train split; return it (eval mode) and its metadata."""
    device = device or torch.device("cpu")
    start = time.perf_counter()
    train = load_split(data_dir, "train", limit=cfg.train_size)
    test = load_split(data_dir, "test")
    torch.manual_seed(cfg.seed)
    model = build_classifier().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    images, labels = train.images.to(device), train.labels.to(device)
    steps = cfg.epochs * math.ceil(len(labels) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(labels), generator=g, device=device).split(cfg.batch_size):
            x = images[idx]
            if train.dynamic:  # half binary samples, half grey levels (see the module notes)
                binary = torch.rand(len(idx), 1, 1, 1, generator=g, device=device) < 0.5
                x = torch.where(binary, torch.bernoulli(x, generator=g), x)
            loss = loss_fn(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"classifier epoch {epoch + 1}/{cfg.epochs}: loss {loss.item():.4f}")
    test_x = test.images.to(device)
    binary_x = test_x
    if test.dynamic:
        binary_x = torch.bernoulli(test_x, generator=torch.Generator(device=device).manual_seed(
            TEST_BINARIZATION_SEED))
    meta = {
        "test_accuracy": accuracy(model, binary_x, test.labels.to(device)),
        "test_accuracy_grey": accuracy(model, test_x, test.labels.to(device)),
        "train_seconds": time.perf_counter() - start,
        "train_images": len(labels),
        "device": device.type,
    }
    log(f"classifier: test accuracy {meta['test_accuracy']:.4f} (binarized), "
        f"{meta['test_accuracy_grey']:.4f} (grey) after {meta['train_seconds']:.0f} s")
    return model.eval(), meta


def save_classifier(path: str | Path, model: nn.Module, key: dict, meta: dict) -> None:
    buf = io.BytesIO()
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"format_version": FORMAT_VERSION, "key": key, "meta": meta, "state_dict": state}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load_cached(path: str | Path, key: dict, device: torch.device) -> tuple[nn.Module, dict] | None:
    """The cached classifier if it exists, loads, and was trained for `key`; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("format_version") != FORMAT_VERSION or state.get("key") != key:
            return None
        model = build_classifier().to(device)
        model.load_state_dict(state["state_dict"])
    except Exception:  # unreadable or foreign file: a cache, so retrain rather than fail
        return None
    return model.eval(), dict(state["meta"])


def get_classifier(data_dir: str | Path, cfg: ClassifierParams, device: torch.device | None = None,
                   log: Callable[[str], None] = print) -> tuple[nn.Module, dict[str, Any]]:
    """The cached classifier for this data and these settings, trained (and cached) if needed.
    meta holds test_accuracy, test_accuracy_grey, train_seconds and cached (bool)."""
    device = device or torch.device("cpu")
    key = cache_key(data_dir, cfg)
    cached = load_cached(cfg.path, key, device)
    if cached is not None:
        model, meta = cached
        return model, {**meta, "cached": True}
    log(f"training the classifier for {key['dataset']} ({cfg.path} missing or stale)")
    model, meta = train_classifier(data_dir, cfg, device, log)
    try:
        save_classifier(cfg.path, model, key, meta)
    except OSError as err:
        raise PipelineError(f"cannot write the classifier cache {cfg.path}: {err}") from None
    return model, {**meta, "cached": False}
