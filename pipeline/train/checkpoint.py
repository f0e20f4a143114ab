"""Checkpoints: everything needed to continue a run exactly, saved atomically, loaded safely.

A checkpoint holds only tensors and plain containers, so it loads with `weights_only=True`
(no pickle code runs when a checkpoint from elsewhere is opened).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.errors import PipelineError
from pipeline.infra import atomic

if TYPE_CHECKING:  # pydantic stays off the model/trainer path (bench/bench_gpu.py runs without it)
    from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams

FORMAT_VERSION = 1
FILENAME = "checkpoint.pt"


class CheckpointError(PipelineError):
    pass


def save(path: str | Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors, truncated files, foreign objects
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})") \
            from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unknown checkpoint format "
                              f"{state.get('format_version') if isinstance(state, dict) else '?'}")
    return state


@dataclass(frozen=True)
class RunSpec:
    """What one training run is: the three params sections and where its data lives."""

    model: ModelParams
    objective: ObjectiveParams
    train: TrainParams
    data_dir: str

    @property
    def family(self) -> str:
        """What a run's costs depend on besides sizes (the plans calibrate one run of each): its
        encoder, decoder and divergence, and a likelihood other than Bernoulli (twice the outputs)."""
        likelihood = self.model.likelihood
        tail = "" if likelihood == "bernoulli" else f"/{likelihood}"
        return f"{self.model.encoder}/{self.model.decoder}/{self.objective.divergence}{tail}"

    @property
    def method(self) -> str:
        """The paper's name for the run's objective (pipeline.params.vocab.method_name)."""
        from pipeline.params.vocab import method_name

        o = self.objective
        return method_name(o.divergence, o.alpha, o.lambda_, o.scaling)

    def columns(self) -> dict[str, Any]:
        """What the run is, as the flat columns the study's tables carry (the sweep's trials,
        evaluate's metrics): one place, so every table names a run the same way."""
        o, m, t = self.objective, self.model, self.train
        return {"divergence": o.divergence, "alpha": o.alpha, "lambda": o.lambda_, "method": self.method,
                "latent_dim": m.latent_dim, "encoder": m.encoder, "decoder": m.decoder,
                "likelihood": m.likelihood, "train_size": t.train_size, "lr": t.lr}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.model_dump(), "objective": self.objective.model_dump(by_alias=True),
                "train": self.train.model_dump(), "data_dir": self.data_dir}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams

        return cls(ModelParams.model_validate(d["model"]),
                   ObjectiveParams.model_validate(d["objective"]),
                   TrainParams.model_validate(d["train"]),
                   d.get("data_dir", ""))  # "": a spec shown without its data (a trial's config)
