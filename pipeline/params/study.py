"""The `sweep`, `cluster` and `tracking` sections: the grid of the study, how it is searched and
scheduled, where it runs, and where its runs are recorded."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator, model_validator

from pipeline.params.base import Section

REMOTE_SCHEMES = ("s3", "gs", "gcs")  # pyarrow's object-store filesystems (gcs: its alias of gs)
URI_SECRETS = ("access_key", "secret_key", "session_token")


def uri_scheme(value: str) -> str:
    """'' for a plain path, else the URI's scheme (lower case)."""
    return urlsplit(value).scheme.lower() if "://" in value else ""


def storage_problem(value: str) -> str | None:
    """What is wrong with `value` as a storage location (a path or a URI), or None. A check of
    the text only: whether the store answers is pipeline.infra.storage.probe's."""
    s = uri_scheme(value)
    if s and s not in (*REMOTE_SCHEMES, "file"):
        return (f"unsupported scheme {s!r} in {value!r}: use a path, file://, s3://bucket/prefix "
                "(S3 or an S3-compatible store: ?endpoint_override=host:port&scheme=http) or gs://bucket/prefix")
    parts = urlsplit(value)
    if s in REMOTE_SCHEMES and not parts.netloc:
        return f"{value!r} names no bucket (write {s}://bucket/prefix)"
    leaked = [k for k, _ in parse_qsl(parts.query) if k in URI_SECRETS]
    if leaked:
        return (f"{value!r} carries credentials ({', '.join(leaked)}), and the URI is written into results: "
                "give them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) instead")
    return None


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
    grace_period: int = Field(4, ge=1)  # epochs before a trial can be stopped
    reduction_factor: float = Field(2.0, gt=1.0)


class SweepParams(Section):
    # How trials are packed, retried and stored. The name is not among them: it names the Ray
    # experiment's directory (NAME-FINGERPRINT) and the MLflow parent run, so a new name is a
    # new study.
    placement = frozenset({"cpus_per_trial", "gpus_per_trial", "auto_gpu_share",
                           "max_concurrent_trials", "storage_path", "out_dir", "max_failures", "disk_margin"})

    name: str = Field("infovae", pattern=r"^[A-Za-z0-9_.-]+$")
    # Named grids; each is a Cartesian product of axes. An axis value may be a mapping that
    # sets several keys at once (a "method": divergence with its alpha and lambda).
    # No default grid: a study declares its own (a default would be merged into every study's
    # grids by the composition of conf/, since mappings merge key by key).
    # A profile drops a grid of the base study by setting it to null (profile/ablation.yaml).
    # grid name -> axis -> values (see conf/config.yaml); a null grid is dropped
    grids: dict[str, dict[str, list[Any]]] = {}
    trials_per_cell: int = Field(1, ge=1)  # Optuna (TPE) trials in every grid cell
    search: dict[str, SearchDim] = {}  # dotted params key -> distribution
    startup_trials: int = Field(2, ge=1)  # random trials per cell before TPE models the rest
    # The first trial of every cell runs the searched keys at the cell's own values (the study's
    # settings), then TPE explores: a one-trial cell is then a fair comparison, not a random draw.
    first_trial_at_base: bool = True  # the first trial of every cell runs the searched keys' base values
    seed: int = Field(0, ge=0)
    metric: str = "val_loss"  # selects the best trial per cell; ASHA compares within a cell
    scheduler: Literal["asha", "none"] = "asha"  # asha | none
    asha: ASHAParams = ASHAParams()
    cpus_per_trial: float = Field(1.0, gt=0)
    # A fraction shares a GPU between trials; "auto": auto_gpu_share when the cluster has
    # GPUs, else 0 (the same params run on a laptop and on a GPU cluster).
    # a number (fractions share a GPU) or auto: auto_gpu_share if the cluster has GPUs, else 0
    gpus_per_trial: Literal["auto"] | float = "auto"
    # 4 trials per GPU; a trial given a GPU uses it, one without CUDA its CPUs
    auto_gpu_share: float = Field(0.25, gt=0, le=8)
    max_concurrent_trials: int | None = Field(None, ge=1)
    # Ray's results and the trials' checkpoints (pipeline.infra.storage, docs/cluster.md)
    storage_path: str = "results/ray"  # a path, or an object store: s3://bucket/prefix, gs://bucket/prefix
    out_dir: str = "results/sweep"  # trials.parquet and best.json (DVC outs)
    max_failures: int = Field(1, ge=0)  # retries of a trial whose process died
    # Free space needed before a sweep starts = this x the estimated checkpoints and Ray state
    # (pipeline.sweep.space); 0 skips the check.
    disk_margin: float = Field(1.5, ge=0.0)

    @field_validator("grids", mode="before")
    @classmethod
    def _drop_null_grids(cls, grids: Any) -> Any:
        return {k: v for k, v in grids.items() if v is not None} if isinstance(grids, dict) else grids

    @field_validator("storage_path")
    @classmethod
    def _storage(cls, value: str) -> str:
        problem = storage_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check(self) -> SweepParams:
        if isinstance(self.gpus_per_trial, float) and self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial must be >= 0 or 'auto', got {self.gpus_per_trial}")
        for name, axes in self.grids.items():
            if not axes:
                raise ValueError(f"grids.{name}: an empty grid (no axes)")
            for axis, values in axes.items():
                if not values:
                    raise ValueError(f"grids.{name}.{axis}: an empty axis (no values) empties the grid")
        return self


class ClusterParams(Section):
    """Where Ray runs, for the sweep's trials and the evaluation's tasks alike. Where, not what:
    no setting here changes a result, so none enters the study's identity."""

    address: str | None = None  # Ray cluster ("host:port" or "auto"); RAY_ADDRESS also works
    num_cpus: int | None = Field(None, ge=1)  # local Ray only: CPUs offered (default: all)
    num_gpus: int | None = Field(None, ge=0)  # local Ray only: GPUs declared (default: detected)


class TrackingParams(Section):
    # sqlite:///mlflow.db is the embedded default; an http(s):// URI names a tracking server.
    uri: str = "sqlite:///mlflow.db"  # or http://host:port of an MLflow tracking server
    experiment: str = Field("infovae", min_length=1)
    artifact_root: str = "mlartifacts"  # for a local store: where run artifacts are written
    connect_timeout_s: float = Field(5.0, gt=0)
    # MLflow system metrics (CPU, memory, GPU) of every trial, sampled at this period; 0: off
    system_metrics_s: float = Field(10.0, ge=0)
    # A tracking server that stops answering: MLflow's HTTP retries are bounded to about this
    # many seconds in all (then the sweep stops, naming the URI); 0 < value.
    retry_total_s: float = Field(20.0, gt=0)
