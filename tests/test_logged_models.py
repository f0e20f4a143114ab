"""A cell's trained model as an MLflow logged model (issue 24): logged once per checkpoint,
loaded back with mlflow.pytorch, the same encoder and decoder as the checkpoint, sampled by the
CLI. A real MLflow store (SQLite) in the test's directory."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.splits import load_split
from pipeline.evaluation.models import CELL_TAG, ModelNotFound, load_cell_model, log_cell_model
from pipeline.infra import tracking
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.params.study import TrackingParams
from pipeline.train.checkpoint import RunSpec
from pipeline.train.trainer import Trainer, load_trained


@pytest.fixture(scope="module")
def trained(prepared_mnist, tmp_path_factory):
    base = tmp_path_factory.mktemp("logged")
    spec = RunSpec(ModelParams(hidden=[32], latent_dim=3), ObjectiveParams(divergence="mmd", alpha=1.0),
                   TrainParams(epochs=1, batch_size=50, train_size=300, validation_size=100,
                               diagnostics_size=0, threads=1, device="cpu"), str(prepared_mnist))
    trainer = Trainer(spec)
    trainer.run()
    trainer.save(base / "ckpt")
    cfg = TrackingParams(uri=f"sqlite:///{base / 'mlflow.db'}", artifact_root=str(base / "artifacts"))
    client = tracking.client(cfg, base)
    exp = tracking.experiment_id(client, cfg, base)
    run = client.create_run(exp).info.run_id
    return base, client, exp, run, cfg


def test_a_cell_model_is_logged_once_and_loads_as_the_checkpoint(trained, prepared_mnist, monkeypatch):
    import mlflow.pytorch

    base, client, exp, run, cfg = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)  # models:/<id> resolves through it
    x = load_split(prepared_mnist, "test", limit=8).images
    entry = {"label": "mmd alpha=1 d=3 model.std_floor=0.001", "method": "ELBO (784/d)",
             "checkpoint_sha256": "abc"}
    first = log_cell_model(client, exp, run, base / "ckpt", entry, "cell-0123", "parent-run", x)
    again = log_cell_model(client, exp, run, base / "ckpt", entry, "cell-0123", "parent-run", x)
    assert again == first  # the same run and checkpoint: not logged twice
    models = client.search_logged_models([exp])
    assert len(models) == 1 and models[0].source_run_id == run and models[0].name == "ELBO-784-d-cell-0123"
    assert models[0].tags[CELL_TAG] == "cell-0123" and models[0].tags["infovae.study"] == "parent-run"

    loaded = mlflow.pytorch.load_model(f"models:/{first}", map_location="cpu")
    net, _ = load_trained(base / "ckpt" / "checkpoint.pt")
    assert torch.equal(loaded(x), net.encoder(x)[0])  # the codes: the mean of q(z|x)
    samples = loaded.sample(4, seed=1)
    assert samples.shape == (4, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, loaded.sample(4, seed=1))  # seeded
    assert not torch.equal(samples, loaded.sample(4, seed=2))
    info = mlflow.models.get_model_info(f"models:/{first}")
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 1, 28, 28)


def test_the_cli_samples_a_cell_s_model_and_names_a_cell_without_one(trained, tmp_path, monkeypatch):
    import yaml

    from pipeline.cli import main
    from tests.conftest import ROOT

    base, client, exp, run, cfg = trained
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["tracking"].update(uri=cfg.uri, artifact_root=cfg.artifact_root)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    main(["sample", "--cell", "cell-0123", "-n", "6", "--out", "six.png"])
    image = np.asarray(Image.open(tmp_path / "six.png"))
    assert image.shape[0] > 28 and os.path.getsize(tmp_path / "six.png") > 0
    with pytest.raises(ModelNotFound, match="no logged model of cell cell-none"):
        load_cell_model(client, exp, "cell-none")
