"""Evaluating a trained checkpoint on real MNIST, shrunk: the library call, the table it
writes, determinism, and the `infovae evaluate` command."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from pipeline.data.splits import load_split
from pipeline.errors import PipelineError
from pipeline.evaluation.context import binarize_once
from pipeline.evaluation.estimate import model_log_likelihood
from pipeline.evaluation.evaluate import METRICS, evaluate_checkpoint, write_row
from pipeline.evaluation.per_image import PER_IMAGE
from pipeline.params.evaluate import ClassifierParams, EvaluateParams
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.train.checkpoint import RunSpec
from pipeline.train.trainer import Trainer, load_trained

SHRUNK = dict(loglik_k=40, loglik_test_size=60, loglik_train_size=30, prior_samples=500,
              latent_size=400, mmd_samples=500, semisupervised_labels=[20, 100], semisupervised_repeats=2,
              semisupervised_pool=300, class_mismatch_samples=200, threads=1,
              ais_test_size=4, ais_chains=2, ais_steps=5, ais_leapfrog=2)


@pytest.fixture(scope="module")
def checkpoint(prepared_mnist, tmp_path_factory):
    spec = RunSpec(ModelParams(hidden=[64], latent_dim=4), ObjectiveParams(),
                   TrainParams(epochs=1, batch_size=50, train_size=1000, validation_size=100,
                               diagnostics_size=0, threads=1, device="cpu"), str(prepared_mnist))
    trainer = Trainer(spec)
    trainer.run()
    return trainer.save(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def classifier_params(tmp_path_factory):
    return ClassifierParams(path=str(tmp_path_factory.mktemp("clf") / "clf.pt"), epochs=1, train_size=1000)


def test_evaluate_checkpoint_row(checkpoint, prepared_mnist, classifier_params):
    params = EvaluateParams(**SHRUNK, classifier=classifier_params)
    lines: list[str] = []
    row = evaluate_checkpoint(checkpoint, params, prepared_mnist, log=lines.append)
    assert row["divergence"] == "kl" and row["latent_dim"] == 4 and row["device"] == "cpu"
    assert row["test_k"] == 40 and row["test_n"] == 60 and row["train_n"] == 30
    assert row["test_prior_k"] == 500 and row["binarization"] == "dynamic"
    for key in ("test_nll", "test_nll_stderr", "train_nll", "test_prior_nll", "mmd", "logdet_cov", "mi",
                "active_units", "ss_error_20", "ss_error_100_std", "class_mismatch", "classifier_accuracy"):
        assert math.isfinite(row[key]), key
    assert 60 < row["test_nll"] < 400 and row["test_nll_stderr"] > 0
    assert row["test_ais_n"] == 4 and row["test_ais_k"] == 2 and math.isfinite(row["test_ais_nll"])
    assert math.isfinite(row["test_ais_minus_is"]) and row["test_ais_minus_is_stderr"] > 0
    # prior sampling with 500 z is a far looser estimate than IS for a 4-d latent
    assert row["test_prior_nll"] > row["test_nll"]
    assert 0 <= row["class_mismatch"] < 7 and row["class_samples"] == 200
    assert 0 <= row["ss_error_100"] <= 1 and 0 <= row["mi"] <= math.log(400) + 1e-9
    # per-image NLLs beside the means, on the same images (index and pixels) for IS and AIS
    per = row[PER_IMAGE]
    assert len(per["test/is"]["nll"]) == 60 and len(per["train/is"]["nll"]) == 30
    assert sum(per["test/is"]["nll"]) / 60 == pytest.approx(row["test_nll"], rel=1e-9)
    assert per["test/ais"]["digest"] == per["test/is"]["digest"][:4] == per["test/is_ais"]["digest"]
    assert per["test/is_ais"]["nll"] == pytest.approx(per["test/is"]["nll"][:4], rel=1e-6)
    assert row["mmd_n"] == 500 and math.isfinite(row["mmd_biased"]) and row["ss_codes"] == "sampled"
    # every metric of the list ran (prior and class mismatch are on here), each timed
    assert {k for k in row if k.startswith("seconds_")} == {f"seconds_{m.name}" for m in METRICS}
    assert [line.split(":")[0] for line in lines] == [m.name for m in METRICS]
    # deterministic given the seed
    again = evaluate_checkpoint(checkpoint, params, prepared_mnist)
    assert {k: v for k, v in again.items() if not k.startswith("seconds_")} == \
        {k: v for k, v in row.items() if not k.startswith("seconds_")}


def test_is_estimate_is_tighter_than_the_elbo(checkpoint, prepared_mnist):
    model, _ = load_trained(checkpoint)
    x = binarize_once(load_split(prepared_mnist, "test", limit=50), 0, "test")
    k1 = model_log_likelihood(model, x, "is", 1, seed=0).mean  # a one-sample ELBO estimate
    k100 = model_log_likelihood(model, x, "is", 100, seed=0).mean
    assert k100 > k1 + 0.5


def test_test_binarization_is_fixed(prepared_mnist):
    split = load_split(prepared_mnist, "test", limit=20)
    a, b = binarize_once(split, 0, "test"), binarize_once(split, 0, "test")
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, binarize_once(split, 1, "test"))


def test_write_row(tmp_path):
    row = {"a": 1.5, "b": "x", "c": 3, "d": -math.inf}
    write_row(row, tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").to_pylist() == [row]
    write_row(row, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {**row, "d": None}
    with pytest.raises(PipelineError, match="parquet or .json"):
        write_row(row, tmp_path / "r.csv")


def test_cli_evaluate(checkpoint, prepared_mnist, classifier_params, tmp_path):
    from pipeline.cli import main

    raw = {"data": {"out_dir": str(prepared_mnist)},
           "evaluate": {**SHRUNK, "prior_samples": 0, "loglik_train_size": 0, "class_mismatch_samples": 0,
                        "classifier": classifier_params.model_dump()}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "metrics.parquet"
    main(["evaluate", "--checkpoint", str(checkpoint), "--params", str(tmp_path / "params.yaml"),
          "--out", str(out), "--set", "evaluate.loglik_k=10"])
    (row,) = pq.read_table(out).to_pylist()
    assert row["test_k"] == 10 and math.isfinite(row["test_nll"]) and "train_nll" not in row
