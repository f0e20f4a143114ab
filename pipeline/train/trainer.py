"""One training run: a configuration (RunSpec) trained on the prepared Parquet data.

Used standalone (`infovae train`) and inside Ray Tune (pipeline.sweep). Batches come from
tensors held on the device (no per-sample Python); dynamic binarization draws a fresh
Bernoulli sample of every batch (a Gaussian decoder, model.likelihood, gets the grey levels as
they are); a non-finite loss stops the run with TrainingDiverged; a
checkpoint after an epoch holds everything needed to continue exactly (model, optimisers,
adversary, RNG states, history), so stop-restore-continue equals an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pipeline.data.splits import Split, load_split
from pipeline.errors import PipelineError
from pipeline.infra import accel
from pipeline.infra.env import pin_malloc_thresholds
from pipeline.model.latent_stats import latent_diagnostics
from pipeline.model.likelihood import binarize_inputs
from pipeline.model.objective import InfoVAE
from pipeline.train import checkpoint as ckpt
from pipeline.train.optim import clip_gradients, decayed_weights, l2_penalty, make_optimizer

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    pass

# on_epoch(epoch, metrics, checkpoint_dir or None) -> True to stop after this epoch
EpochCallback = Callable[[int, dict[str, float], Path | None], bool | None]
OBJECTIVE_METRICS = ("train_loss", "val_loss", "val_recon", "val_kl", "val_div", "val_nelbo")
VALIDATION_SEED = 12345  # fixes the validation binarization and its z samples across epochs


class TrainingDiverged(PipelineError):
    """The loss became NaN or infinite; the run cannot continue."""


@dataclass
class RunResult:
    status: str  # "finished" or "stopped" (by the callback)
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def batches(order: Tensor, size: int, least: int = 1) -> list[Tensor]:
    """The epoch's index batches; a last batch smaller than `least` joins the one before it (a
    BatchNorm layer cannot train on one image: its batch variance is undefined)."""
    parts = list(order.split(size))
    if len(parts) > 1 and len(parts[-1]) < least:
        last = parts.pop()
        parts[-1] = torch.cat([parts[-1], last])
    return parts


def choose_device(pref: str) -> torch.device:
    """CUDA when asked for or visible ("auto"), else CPU; a missing GPU is not an error for auto."""
    if pref == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device is 'cuda' but no CUDA device is visible; use 'auto'")
    if pref == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def _fixed_binarization(split: Split, device: torch.device, binarize: bool | None = None) -> Tensor:
    """Validation data: one seeded Bernoulli sample for dynamic data, so epochs compare (binarize
    False: the grey levels as they are, for a Gaussian decoder)."""
    images = split.images.to(device)
    if not (split.dynamic if binarize is None else binarize):
        return images
    g = torch.Generator(device=device).manual_seed(VALIDATION_SEED)
    return torch.bernoulli(images, generator=g)


class Trainer:
    """Holds a run's state; `run` trains to the configured number of epochs."""

    def __init__(self, spec: ckpt.RunSpec, device: torch.device | None = None,
                 splits: tuple[Split, Split] | None = None):
        """`splits`: (train, validation) already in memory instead of spec.data_dir's files
        (bench/bench_gpu.py, on a machine without the prepared data)."""
        self.spec = spec
        cfg = spec.train
        torch.set_num_threads(cfg.threads)
        pin_malloc_thresholds()
        self.device = device or choose_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = InfoVAE.build(spec.model, spec.objective).to(self.device)
        norms = (nn.BatchNorm1d, nn.BatchNorm2d)
        self.min_batch = 2 if any(isinstance(m, norms) for m in self.model.modules()) else 1
        self.accel = accel.prepare(self.model, self.device, cfg.accel)  # GPU fast paths (auto: CUDA)
        self.optimizer = make_optimizer(self.model.model_parameters(), cfg)
        self.data_rng = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        train, val = splits or (load_split(spec.data_dir, "train", limit=cfg.train_size),
                                load_split(spec.data_dir, "validation", limit=cfg.validation_size))
        # Resident on the device (no per-batch copy), unless accel.data_on_device is off
        self.train_images = train.images.to(self.device) if cfg.accel.data_on_device else train.images
        # Bernoulli: a fresh binary sample of dynamic data per batch; Gaussian: the grey levels as
        # they are (pipeline.model.likelihood)
        likelihood = getattr(spec.model, "likelihood", "bernoulli")
        self.dynamic = binarize_inputs(train.binarization, likelihood)
        self.val_x = _fixed_binarization(val, self.device, binarize_inputs(val.binarization, likelihood))
        self.epoch = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        rng = {"cpu": torch.get_rng_state(), "data": self.data_rng.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "spec": self.spec.to_dict(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["cpu"])
        self.data_rng.set_state(state["rng"]["data"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        ckpt.save(directory / ckpt.FILENAME, self.state_dict())
        return directory

    # ------------------------------------------------------------------ training

    def train_epoch(self) -> dict[str, float]:
        cfg = self.spec.train
        model, n = self.model, self.train_images.shape[0]
        model.train()
        params = model.model_parameters()
        decayed = decayed_weights(model) if cfg.weight_decay else []
        order = torch.randperm(n, generator=self.data_rng, device=self.device)
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)
        extra: dict[str, float] = {}
        steps = 0
        start = time.perf_counter()
        for idx in batches(order, cfg.batch_size, self.min_batch):
            x = self.train_images[idx.to(self.train_images.device)].to(self.device, non_blocking=True)
            if self.dynamic:  # a fresh binarization of every batch (the authors' setting)
                x = torch.bernoulli(x, generator=self.data_rng)
            terms = model.terms(x)
            if not torch.isfinite(terms.loss):
                raise TrainingDiverged(
                    f"loss is {terms.loss.item()} at epoch {self.epoch + 1}, step {steps + 1} "
                    f"(recon {terms.recon.mean().item():.4g}, kl {terms.kl.mean().item():.4g}, "
                    f"div {terms.div.item():.4g}); lower train.lr or check the objective weights"
                )
            self.optimizer.zero_grad(set_to_none=True)
            # The L2 penalty trains but is not reported: train_loss stays the objective, as val_loss.
            (terms.loss + l2_penalty(decayed, cfg.weight_decay)).backward()
            clip_gradients(params, cfg)
            self.optimizer.step()
            extra = model.divergence.update(terms.z.detach())
            with torch.no_grad():
                sums += torch.stack([terms.loss, terms.recon.mean(), terms.kl.mean(), terms.div])
            steps += 1
        seconds = time.perf_counter() - start
        loss, recon, kl, div = (sums / steps).tolist()
        out = {"train_loss": loss, "train_recon": recon, "train_kl": kl, "train_div": div,
               "epoch_seconds": seconds, "images_per_second": n / seconds}
        out.update({f"train_{k}": float(v) for k, v in extra.items()})
        return out

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Objective terms on the (fixed) validation set and latent diagnostics; does not
        disturb the training RNG streams, so validating never changes what training does."""
        model, cfg = self.model, self.spec.train
        model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(VALIDATION_SEED)
            totals = torch.zeros(5, dtype=torch.float64, device=self.device)
            means, stds = [], []
            batches = 0
            for x in self.val_x.split(max(cfg.batch_size, 500)):
                t = model.terms(x)
                totals += torch.stack([t.loss, t.recon.mean(), t.kl.mean(), t.div, t.nelbo.mean()]) \
                    * x.shape[0]
                batches += x.shape[0]
                means.append(t.mean)
                stds.append(t.std)
            loss, recon, kl, div, nelbo = (totals / batches).tolist()
            out = {"val_loss": loss, "val_recon": recon, "val_kl": kl, "val_div": div,
                   "val_nelbo": nelbo}
            if cfg.diagnostics_size:
                k = cfg.diagnostics_size
                diag = latent_diagnostics(torch.cat(means)[:k], torch.cat(stds)[:k])
                out.update({f"val_{name}": value for name, value in diag.items()})
        return out

    def run(self, on_epoch: EpochCallback | None = None,
            checkpoint_dir: str | Path | None = None) -> RunResult:
        cfg = self.spec.train
        while self.epoch < cfg.epochs:
            metrics = self.train_epoch()
            metrics.update(self.validate())
            self.epoch += 1
            metrics["epoch"] = self.epoch
            bad = sorted(k for k in OBJECTIVE_METRICS if not math.isfinite(metrics[k]))
            if bad:
                raise TrainingDiverged(f"non-finite {', '.join(bad)} after epoch {self.epoch}; "
                                       "lower train.lr or check the objective weights")
            self.history.append(metrics)
            saved = None
            if checkpoint_dir is not None and (self.epoch % cfg.checkpoint_every == 0
                                               or self.epoch == cfg.epochs):
                saved = self.save(checkpoint_dir)
            if on_epoch is not None and on_epoch(self.epoch, metrics, saved):
                return RunResult("stopped", self.epoch, self.history)
        return RunResult("finished", self.epoch, self.history)


def resume(spec_or_state: dict[str, Any], device: torch.device | None = None) -> Trainer:
    """A Trainer continuing from a checkpoint's state (as returned by checkpoint.load)."""
    trainer = Trainer(ckpt.RunSpec.from_dict(spec_or_state["spec"]), device=device)
    trainer.load_state_dict(spec_or_state)
    return trainer


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[InfoVAE, ckpt.RunSpec]:
    """The trained model of a checkpoint (eval mode) and its spec; no data is loaded."""
    state = ckpt.load(path, map_location=device)
    spec = ckpt.RunSpec.from_dict(state["spec"])
    model = InfoVAE.build(spec.model, spec.objective).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), spec
