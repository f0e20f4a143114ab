"""The `sweep` and `tracking` sections: the grid of the study, how it is searched and scheduled,
where it runs, and where its runs are recorded."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.params.base import Section

# Grid axis names accepted as shorthand for a params key; any dotted key works as well.
AXIS_KEYS = {
    "divergence": "objective.divergence",
    "alpha": "objective.alpha",
    "lambda": "objective.lambda",
    "latent_dim": "model.latent_dim",
    "train_size": "train.train_size",
    "decoder": "model.decoder",
    "encoder": "model.encoder",
}


class SearchDim(Section):
    """One hyperparameter Optuna searches inside every grid cell."""

    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchDim:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical search dimension needs a non-empty 'choices'")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"needs low < high, got low={self.low} high={self.high}")
        elif self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self


class ASHAParams(Section):
    grace_period: int = Field(1, ge=1)  # epochs before a trial can be stopped
    reduction_factor: float = Field(2.0, gt=1.0)


class SweepParams(Section):
    name: str = Field("infovae", pattern=r"^[A-Za-z0-9_.-]+$")
    # Named grids; each is a Cartesian product of axes. An axis value may be a mapping that
    # sets several keys at once (a "method": divergence with its alpha and lambda).
    grids: dict[str, dict[str, list[Any]]] = {
        "elbo": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0]}}
    trials_per_cell: int = Field(1, ge=1)  # Optuna (TPE) trials in every grid cell
    search: dict[str, SearchDim] = {}  # dotted params key -> distribution
    startup_trials: int = Field(5, ge=1)  # random trials per cell before TPE models the rest
    seed: int = Field(0, ge=0)
    metric: str = "val_loss"  # selects the best trial per cell; ASHA compares within a cell
    scheduler: Literal["asha", "none"] = "asha"
    asha: ASHAParams = ASHAParams()
    cpus_per_trial: float = Field(1.0, gt=0)
    # A fraction shares a GPU between trials; "auto": auto_gpu_share when the cluster has
    # GPUs, else 0 (the same params run on a laptop and on a GPU cluster).
    gpus_per_trial: Literal["auto"] | float = "auto"
    auto_gpu_share: float = Field(0.25, gt=0, le=8)
    max_concurrent_trials: int | None = Field(None, ge=1)
    address: str | None = None  # Ray cluster ("host:port" or "auto"); RAY_ADDRESS also works
    num_cpus: int | None = Field(None, ge=1)  # local Ray only: CPUs offered (default: all)
    num_gpus: int | None = Field(None, ge=0)  # local Ray only: GPUs declared (default: detected)
    storage_path: str = "results/ray"  # Ray's results; on a cluster, a path every node sees
    out_dir: str = "results/sweep"  # trials.parquet and best.json (DVC outs)
    max_failures: int = Field(0, ge=0)  # retries of a trial whose process died
    # Free space needed before a sweep starts = this x the estimated checkpoints and Ray state
    # (pipeline.sweep.space); 0 skips the check.
    disk_margin: float = Field(1.5, ge=0.0)

    @model_validator(mode="after")
    def _check(self) -> SweepParams:
        if isinstance(self.gpus_per_trial, float) and self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial must be >= 0 or 'auto', got {self.gpus_per_trial}")
        if not self.grids:
            raise ValueError("grids: no grid declared: the sweep would run nothing")
        for name, axes in self.grids.items():
            if not axes:
                raise ValueError(f"grids.{name}: an empty grid (no axes)")
            for axis, values in axes.items():
                if not values:
                    raise ValueError(f"grids.{name}.{axis}: an empty axis (no values) empties the grid")
        return self


class TrackingParams(Section):
    # sqlite:///mlflow.db is the embedded default; an http(s):// URI names a tracking server.
    uri: str = "sqlite:///mlflow.db"
    experiment: str = Field("infovae", min_length=1)
    artifact_root: str = "mlartifacts"  # for a local store: where run artifacts are written
    connect_timeout_s: float = Field(5.0, gt=0)
    # A tracking server that stops answering: MLflow's HTTP retries are bounded to about this
    # many seconds in all (then the sweep stops, naming the URI); 0 < value.
    retry_total_s: float = Field(20.0, gt=0)
