"""Queued DVC experiments (`dvc exp run --queue`, `dvc queue start`): DVC runs each in a temporary
copy under .dvc/tmp/exps/ and deletes it, so the study's own stores (a relative MLflow store, the
git-ignored raw data) are the repository's it was queued from (pipeline.infra.env.study_home)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.infra.env import in_study_home, study_home
from pipeline.infra.tracking import resolve_uri
from pipeline.infra.workspace import study_copy, venv_env
from tests.browser import screenshot
from tests.conftest import FASHION_DIR, MNIST_DIR, ROOT, link_raw


def test_a_queued_experiment_keeps_its_stores_in_the_repository_it_was_queued_from(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpab12" / "run"  # where DVC's tempdir executor runs
    copy.mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    assert study_home(copy) == repo.resolve()
    assert resolve_uri("sqlite:///mlflow.db", copy) == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    assert resolve_uri("sqlite:////abs/mlflow.db", copy) == "sqlite:////abs/mlflow.db"  # absolute: as given
    assert resolve_uri("http://127.0.0.1:5000", copy) == "http://127.0.0.1:5000"
    monkeypatch.chdir(copy)
    assert in_study_home("data/raw") == repo.resolve() / "data" / "raw"
    assert in_study_home("/srv/raw") == Path("/srv/raw")


def test_a_plain_run_keeps_its_stores_where_it_runs(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(repo))  # `dvc repro` sets it to the repository it runs in
    assert study_home(repo) == repo.resolve()
    assert resolve_uri("sqlite:///mlflow.db", repo) == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    monkeypatch.chdir(repo)
    assert in_study_home("data/raw") == Path("data/raw")  # as the user wrote it, in messages too
    monkeypatch.delenv("DVC_ROOT")
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert study_home(other) == other.resolve()


@pytest.mark.slow
def test_two_queued_smoke_experiments_land_in_mlflow_and_dvc_exp_show(tmp_path):
    """Issue 24: the smoke study queued twice, on MNIST and on Fashion-MNIST, and run by `dvc
    queue start`: both experiments are in `dvc exp show` with their metrics, both studies' runs
    and logged models in the repository's own MLflow store (sqlite:///mlflow.db, relative), and
    the Fashion-MNIST study's report, applied to the workspace, renders."""
    from mlflow import MlflowClient

    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST IDX files not found at {MNIST_DIR}")
    if not FASHION_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not found at {FASHION_DIR} (Debian package dataset-fashion-mnist)")
    repo = study_copy(ROOT, tmp_path / "repo", MNIST_DIR, ["profile=smoke"])
    link_raw(repo / "data" / "raw", "fashion_mnist", FASHION_DIR)
    queued = {"q-mnist": ["-S", "profile=smoke"],
              "q-fashion": ["-S", "profile=smoke", "-S", "data.dataset=fashion_mnist"]}
    try:
        for name, overrides in queued.items():
            _dvc(repo, "exp", "run", "--queue", "-n", name, *overrides)
        _dvc(repo, "queue", "start")
        deadline = time.time() + 1500
        while re.search(r"\b(Queued|Running)\b", status := _dvc(repo, "queue", "status").stdout):
            assert time.time() < deadline, status
            time.sleep(5)
        for name in queued:
            log = _dvc(repo, "queue", "logs", name).stdout[-4000:]
            assert re.search(rf"\b{name}\s.*\bSuccess\b", status), (status, log)
    finally:
        subprocess.run(["dvc", "queue", "stop"], cwd=repo, env=venv_env(), capture_output=True, timeout=120)

    shown = json.loads(_dvc(repo, "exp", "show", "--json").stdout)
    exps = {e["name"]: e for row in shown for e in (row.get("experiments") or [])
            for e in [e["revs"][0]] if e.get("name") in queued}
    assert set(exps) == set(queued), shown
    for name, e in exps.items():
        metrics = e["data"]["metrics"]["results/metrics/evaluate.json"]["data"]
        assert metrics["cells"]["evaluated"] > 0 and metrics["cells"]["failed"] == 0, name
        assert "c1" in e["data"]["metrics"]["results/metrics/claims.json"]["data"]["claims"], name

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")  # the repository's own store
    exp = client.get_experiment_by_name("infovae")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags
               and r.info.run_name.startswith("sweep")]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in parents)
    datasets = {d.dataset.name for r in runs for d in r.inputs.dataset_inputs}
    assert {"mnist-train", "fashion_mnist-train"} <= datasets
    models = client.search_logged_models([exp.experiment_id], max_results=1000)
    assert {m.tags["infovae.study"] for m in models} == {r.info.run_id for r in parents}

    _dvc(repo, "exp", "apply", "q-fashion")
    page = repo / "report" / "index.html"
    assert "<dt>Dataset</dt><dd>fashion_mnist</dd>" in page.read_text()  # the header names it
    png = screenshot(page, tmp_path / "fashion.png", tmp_path / "chrome")
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01, "the Fashion-MNIST report is blank"


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["dvc", *args], cwd=repo, env=venv_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done
