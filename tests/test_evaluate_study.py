"""The evaluate stage over several cells: in-process and as Ray tasks (evaluate.max_concurrent),
with Ray's declared GPUs, the per-cell cache that makes an interrupted stage resume, and the
errors a user gets before (or instead of) a silent hang."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
import ray

from pipeline.evaluation.remote import RemoteEvaluationError
from pipeline.evaluation.study import evaluate_study
from pipeline.infra.cluster import ClusterError
from pipeline.infra.cluster import shutdown as stop_ray
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.train.checkpoint import RunSpec
from pipeline.train.trainer import Trainer
from tests.sweep_helpers import tiny_params

SHRUNK = {"evaluate.loglik_k": 20, "evaluate.loglik_test_size": 40, "evaluate.loglik_train_size": 20,
          "evaluate.latent_size": 200, "evaluate.semisupervised_labels": [20],
          "evaluate.semisupervised_repeats": 1, "evaluate.semisupervised_pool": 200,
          "evaluate.class_mismatch_samples": 100, "evaluate.threads": 1,
          "evaluate.classifier.epochs": 1, "evaluate.classifier.train_size": 1000}
CELLS = {"kl-d2": ("kl", 2), "mmd-d3": ("mmd", 3), "kl-d4": ("kl", 4)}
VOLATILE = ("seconds_", "ray_gpu_ids", "ray_node_id")


@pytest.fixture(scope="module")
def study(prepared_mnist, tmp_path_factory):
    """A repository-like directory: three trained cells and the best.json a sweep would write."""
    base = tmp_path_factory.mktemp("eval-study")
    best = {}
    for n, (cell, (divergence, d)) in enumerate(CELLS.items()):
        spec = RunSpec(ModelParams(hidden=[32], latent_dim=d), ObjectiveParams(divergence=divergence),
                       TrainParams(epochs=1, batch_size=50, train_size=500, validation_size=100,
                                   diagnostics_size=0, threads=1, device="cpu", seed=n), str(prepared_mnist))
        trainer = Trainer(spec)
        trainer.run()
        rel = f"ray/{cell}/checkpoint_000000"
        trainer.save(base / rel)
        best[cell] = {"label": cell, "grids": ["g"], "overrides": {"objective.divergence": divergence},
                      "trial_id": f"t{n}", "status": "FINISHED", "checkpoint": rel, "mlflow_run_id": None}
    best["broken"] = {"label": "broken", "grids": ["g"], "overrides": {}, "trial_id": None,
                      "status": "FAILED", "errors": ["loss is nan at epoch 1"]}
    (base / "sweep").mkdir()
    (base / "sweep" / "best.json").write_text(json.dumps(best))
    return base


@pytest.fixture
def ray_with_two_gpus():
    # declared GPUs (CUDA is absent here); a Ray of its own even beside a `ray start` cluster
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False)
    yield
    stop_ray()


def _params(base, data, **extra):
    return tiny_params(base, data, {"g": {"divergence": ["kl"]}},
                       extra={**SHRUNK, "evaluate.classifier.path": "classifier/clf.pt", **extra})


def _rows(base, out_dir):
    rows = pq.read_table(base / out_dir / "metrics.parquet").to_pylist()
    return {r["cell"]: {k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows}


def _eval(params, base, out_dir, lines=None):
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={
        "out_dir": out_dir, "summary": f"{out_dir}/summary.json", "plots_dir": f"{out_dir}/plots"})})
    return evaluate_study(params, base, log=(lines.append if lines is not None else print))


@pytest.mark.slow
def test_ray_tasks_give_the_rows_of_the_in_process_evaluation(study, prepared_mnist, ray_with_two_gpus):
    params = _params(study, prepared_mnist)
    lines: list[str] = []
    local = _eval(params, study, "eval-local", lines)
    assert local == {**local, "cells": 4, "evaluated": 3, "evaluated_now": 3, "failed": 1}
    assert not any("Ray tasks" in ln for ln in lines)

    parallel = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={
        "max_concurrent": 2, "gpus_per_cell": 0.5})})
    lines = []
    remote = _eval(parallel, study, "eval-ray", lines)
    assert remote["evaluated_now"] == 3 and any("as Ray tasks, at most 2 at once" in ln for ln in lines)
    a, b = _rows(study, "eval-local"), _rows(study, "eval-ray")
    assert a.keys() == b.keys() == {*CELLS, "broken"}
    for cell in CELLS:  # the same numbers wherever the cell ran (same seeds, same thread count)
        for key, value in a[cell].items():
            if isinstance(value, float) and math.isfinite(value):
                assert b[cell][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (cell, key)
            else:
                assert b[cell][key] == value, (cell, key)
    assert b["broken"]["status"] == "FAILED" and "nan" in b["broken"]["error"]
    # Each task held half of a declared GPU, and fell back to the CPU as CUDA is absent here.
    gpu_rows = pq.read_table(study / "eval-ray" / "metrics.parquet").to_pylist()
    assert all(r["ray_gpu_ids"] in ("0", "1") for r in gpu_rows if r["cell"] in CELLS)
    assert all(r["device"] == "cpu" for r in gpu_rows if r["cell"] in CELLS)
    assert (study / "classifier" / "clf.pt").is_file()  # made once, under the repository

    # The cache: a finished cell is never measured again, an interrupted one is.
    cache = sorted((study / "eval-ray" / "cache").glob("*.json"))
    assert len(cache) == 3
    cache[0].unlink()
    again = _eval(parallel, study, "eval-ray")
    assert again["evaluated_now"] == 1 and again["evaluated"] == 3
    assert _rows(study, "eval-ray") == b


@pytest.mark.slow
def test_resources_no_node_offers_are_rejected_before_evaluating(study, prepared_mnist, ray_with_two_gpus):
    for extra, message in (({"evaluate.threads": 3},
                            r"evaluate.threads = 3 but the largest Ray node offers 2 CPUs"),
                           ({"evaluate.gpus_per_cell": 4.0},
                            r"evaluate.gpus_per_cell = 4 but the largest Ray node offers 2 GPUs")):
        params = _params(study, prepared_mnist, **{"evaluate.max_concurrent": 2, **extra})
        with pytest.raises(ClusterError, match=message):
            _eval(params, study, "eval-too-big")
        assert not list((study / "eval-too-big" / "cache").glob("*.json"))


@pytest.mark.slow
def test_a_cell_that_fails_on_a_worker_names_the_cell(study, prepared_mnist, ray_with_two_gpus, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(study, bad)
    ckpt = next((bad / "ray" / "mmd-d3").glob("*/*.pt"), None) or next((bad / "ray" / "mmd-d3").rglob("*.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    params = _params(bad, prepared_mnist, **{"evaluate.max_concurrent": 2,
                                              "evaluate.class_mismatch_samples": 0})
    with pytest.raises(RemoteEvaluationError, match=r"evaluating \[2/4\] mmd-d3 failed"):
        _eval(params, bad, "eval-bad")
