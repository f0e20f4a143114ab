"""Each evaluated cell's trained model as an MLflow logged model (MLflow 3's Models view).

The evaluate stage logs the cell's best checkpoint once as an MLflow PyTorch model of
pipeline.model.exported.TrainedInfoVAE (forward: images -> codes, with that signature and two
test images as its input example; `sample(n)`: images from the prior), linked to the trial's run
and tagged with the cell, its label, the study (the sweep's parent run) and the checkpoint's
sha256. A model of the same run and checkpoint already logged is not logged again, so a rerun
of the stage adds nothing. Loading needs this package importable (the model pickles its
classes, not their code): `mlflow.pytorch.load_model(f"models:/{model_id}")` with the study's
tracking URI set, or by cell: `load_cell_model` (and `infovae sample --cell`).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.infra import tracking

CELL_TAG, CHECKPOINT_TAG, STUDY_TAG = "infovae.cell", "infovae.checkpoint_sha256", "infovae.study"


class ModelNotFound(PipelineError):
    pass


def model_name(method: str | None, cell: str) -> str:
    """A logged model's name: the method and the cell id (MLflow refuses / : . % and quotes;
    a cell's label, with its dotted keys, is too long to read anyway: it is a tag)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", method or "").strip("-")
    return f"{slug}-{cell}" if slug else cell


def log_cell_model(client, experiment_id: str, run_id: str, checkpoint: Path, entry: dict[str, Any],
                   cell: str, study: str | None, example) -> str:
    """The id of the cell's logged model, logging it unless this checkpoint's already is."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from pipeline.model.exported import TrainedInfoVAE
    from pipeline.train.checkpoint import FILENAME
    from pipeline.train.trainer import load_trained

    sha = entry.get("checkpoint_sha256") or ""
    found = tracking.retry(client.search_logged_models, [experiment_id],
                           filter_string=f"source_run_id = '{run_id}'", max_results=50)
    for m in found:
        if m.tags.get(CHECKPOINT_TAG) == sha and str(m.status).endswith("READY"):
            return m.model_id
    model = TrainedInfoVAE(load_trained(checkpoint / FILENAME)[0])
    x = example[:2].float()
    signature = infer_signature(x.numpy(), model(x).numpy())
    tags = {CELL_TAG: cell, "infovae.cell_label": entry.get("label", cell), CHECKPOINT_TAG: sha,
            **({STUDY_TAG: study} if study else {})}
    name = model_name(entry.get("method"), cell)
    logged = tracking.retry(client.create_logged_model, experiment_id, name=name, source_run_id=run_id,
                            tags=tags)
    with tempfile.TemporaryDirectory(prefix="infovae-model-") as tmp:
        # pickle, not MLflow 3's default pt2 (torch.export): a traced graph keeps forward only, and
        # the model's point is also sample()
        mlflow.pytorch.save_model(model, f"{tmp}/model", signature=signature, input_example=x.numpy(),
                                  serialization_format="pickle",
                                  pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        tracking.retry(client.log_model_artifacts, logged.model_id, f"{tmp}/model")
    tracking.retry(client.finalize_logged_model, logged.model_id, "READY")
    return logged.model_id


def load_cell_model(client, experiment_id: str, cell: str):
    """The newest READY logged model of a cell (a TrainedInfoVAE), or ModelNotFound."""
    import mlflow.pytorch

    found = [m for m in tracking.retry(client.search_logged_models, [experiment_id],
                                       filter_string=f"tags.`{CELL_TAG}` = '{cell}'", max_results=100)
             if str(m.status).endswith("READY")]
    if not found:
        raise ModelNotFound(f"no logged model of cell {cell} in this experiment: run the evaluate stage "
                            "(dvc repro) first")
    newest = max(found, key=lambda m: m.creation_timestamp)
    # Its artifacts' own URI: "models:/<id>" would resolve through MLflow's global tracking URI.
    return mlflow.pytorch.load_model(newest.artifact_location, map_location="cpu"), newest
