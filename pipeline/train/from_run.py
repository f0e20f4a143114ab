"""A trained model back from its MLflow run in one call:

    from pipeline.train.from_run import load_run
    model, spec = load_run("<run id>")          # tracking URI: params.yaml's tracking.uri

The sweep logs every trial's final checkpoint as the run's artifact `checkpoint/checkpoint.pt`
(pipeline.sweep.logger); this downloads it and rebuilds the model with
pipeline.train.trainer.load_trained (tensors only, loaded with weights_only=True).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.train.checkpoint import FILENAME, CheckpointError

ARTIFACT = f"checkpoint/{FILENAME}"


def download_checkpoint(run_id: str, dest: str | Path, tracking_uri: str | None = None,
                        params_file: str | Path = "params.yaml") -> Path:
    """The run's checkpoint file, downloaded into `dest`."""
    from mlflow.exceptions import MlflowException

    from pipeline.infra import tracking

    client = _client(tracking_uri, params_file)
    try:
        path = tracking.retry(client.download_artifacts, run_id, ARTIFACT, str(dest))
    except MlflowException as err:
        raise CheckpointError(f"MLflow run {run_id} has no artifact {ARTIFACT} in "
                              f"{tracking.redact(client.tracking_uri)}: {err.message}") from None
    return Path(path)


def load_run(run_id: str, tracking_uri: str | None = None, device: str = "cpu",
             params_file: str | Path = "params.yaml"):
    """(model in eval mode, RunSpec) of the trial logged as MLflow run `run_id`."""
    from pipeline.train.trainer import load_trained

    with tempfile.TemporaryDirectory(prefix="infovae-run-") as tmp:
        return load_trained(download_checkpoint(run_id, tmp, tracking_uri, params_file), device)


def _client(tracking_uri: str | None, params_file: str | Path):
    from pipeline.infra import tracking
    from pipeline.params.study import TrackingParams

    if tracking_uri is None:
        from pipeline.params.load import load_params

        path = Path(params_file)
        cfg = load_params(path).tracking if path.is_file() else TrackingParams()
        return tracking.client(cfg, path.resolve().parent)
    return tracking.client(TrackingParams(uri=tracking_uri), Path.cwd())
