"""The smoke study end to end: `dvc repro` in a fresh copy of the repository, with real DVC,
Ray, MLflow (and its server over the study's store) and the report opened in Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from PIL import Image

from pipeline.infra.workspace import study_copy, venv_env
from tests.browser import rendered_dom, screenshot
from tests.conftest import MNIST_DIR, ROOT, free_port, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST IDX files not found at {MNIST_DIR}")
    repo = study_copy(ROOT, tmp_path_factory.mktemp("study") / "repo", MNIST_DIR, ["profile=smoke"])
    done = subprocess.run(["dvc", "repro"], cwd=repo, env=venv_env(), capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return repo, done.stdout


def test_repro_produces_every_output(smoke_study):
    repo, log = smoke_study
    for stage in ("prepare", "sweep", "evaluate", "report"):
        assert f"Running stage '{stage}'" in log
    for path in ("data/prepared/train.parquet", "results/sweep/trials.parquet", "results/sweep/best.json",
                 "results/eval/metrics.parquet", "results/metrics/evaluate.json",
                 "report/index.html", "report/report.md", "dvc.lock"):
        assert (repo / path).is_file(), path


def test_second_repro_does_nothing(smoke_study):
    repo, _ = smoke_study
    again = subprocess.run(["dvc", "repro"], cwd=repo, env=venv_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0
    assert "Data and pipelines are up to date." in again.stdout
    assert "Running stage" not in again.stdout


def test_dvc_metrics_and_plots(smoke_study, tmp_path):
    repo, _ = smoke_study
    shown = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=repo, env=venv_env(),
                           capture_output=True, text=True, timeout=120, check=True)
    metrics = json.loads(shown.stdout)
    flat = json.dumps(metrics)
    assert "test_nll" in flat and "mean_pixel" in flat
    claims = next(v["data"]["results/metrics/claims.json"]["data"]["claims"] for v in metrics.values())
    assert sorted(claims) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert all(c["verdict"] in ("reproduced", "not reproduced", "inconclusive") for c in claims.values())
    plots = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=repo,
                           env=venv_env(), capture_output=True, text=True, timeout=120)
    assert plots.returncode == 0, plots.stderr
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "plots_nll_csv" in html and "plots_latent_dim" in html and "plots_training" in html


def test_report_holds_the_table_and_every_figure(smoke_study):
    repo, _ = smoke_study
    html = (repo / "report" / "index.html").read_text()
    for value in ("82.75", "80.76", "81.47", "82.21"):  # the paper's Table 1
        assert value in html
    for section in ("Experiment 1", "Experiment 2", "Experiment 3", "Experiment 4", "Experiment 5",
                    "Samples and reconstructions", "Trials"):
        assert section in html, section
    assert "was not part of this sweep" not in html  # the smoke profile runs every experiment
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) >= 10 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'src="(https?:|file:|/)', html)  # self-contained: nothing loaded from elsewhere
    links = [h for h in re.findall(r'href="([^"#][^"]*)"', html)]
    assert links and all(re.fullmatch(r"http://127\.0\.0\.1:5000/#/runs/[0-9a-f]{32}", h) for h in links)
    assert html.index('id="claims"') < html.index('id="table1"')  # the claims table opens the report
    md = (repo / "report" / "report.md").read_text()
    assert "82.75" in md and all((repo / "report" / m).is_file()
                                 for m in re.findall(r"\]\((figures/[^)]+\.png)\)", md))


def test_report_renders_in_chromium(smoke_study, tmp_path):
    repo, _ = smoke_study
    page = repo / "report" / "index.html"
    png = screenshot(page, tmp_path / "report.png", tmp_path / "chrome")
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.std() > 20, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01  # text and figures, not just background
    dom = rendered_dom(page, tmp_path / "chrome2")
    claims = re.search(r"<table.*?</table>", dom, re.S)  # the first table: the claims' verdicts
    assert claims and all(f"<td>C{i} (" in claims.group(0) for i in range(1, 7))
    assert re.search(r"<td>(REPRODUCED|NOT REPRODUCED|INCONCLUSIVE)</td>", claims.group(0))
    table1 = re.search(r'<section id="table1">.*?(<table.*?</table>)', dom, re.S)
    assert table1 and "ELBO" in table1.group(1) and "82.75" in table1.group(1)


def test_mlflow_server_over_the_study_store_lists_the_runs(smoke_study, tmp_path):
    repo, _ = smoke_study
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}",
         "--artifacts-destination", str(repo / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], env={**venv_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc=proc)
        req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=infovae")
        exp = json.loads(urllib.request.urlopen(req, timeout=30).read())["experiment"]
        body = json.dumps({"experiment_ids": [exp["experiment_id"]], "max_results": 500}).encode()
        req = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
        runs = json.loads(urllib.request.urlopen(req, timeout=30).read())["runs"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    sweep = json.loads((repo / "results" / "sweep" / "sweep.json").read_text())
    children = [r for r in runs if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
    assert len(children) == sweep["trials"] and len(runs) == sweep["trials"] + 1
    assert all(r["info"]["status"] in ("FINISHED", "KILLED") for r in runs)
    assert any(m["key"] == "eval_test_nll" for r in children for m in r["data"].get("metrics", []))
    parent = next(r for r in runs if r["info"]["run_id"] == sweep["parent_run_id"])
    assert parent["info"]["status"] == "FINISHED"


def test_placement_settings_train_nothing_again(smoke_study):
    """Issue 11's identity check, end to end: after the finished smoke study, new values of
    settings that change no result (a download time-out, a mirror, torch threads, CPUs per
    trial, evaluation threads) make `dvc repro` train and evaluate nothing again, and open no
    new MLflow run. Last in this module: it changes the study's params."""
    import yaml
    from mlflow.tracking import MlflowClient

    repo, _ = smoke_study

    def starts() -> int:
        audits = (repo / "results" / "ray").glob("*/starts/*.jsonl")
        return sum(f.read_text().count('"start"') for f in audits)

    def runs() -> int:
        client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        exp = client.get_experiment_by_name("infovae")
        return len(client.search_runs([exp.experiment_id], max_results=5000))

    before_starts, before_runs = starts(), runs()
    assert before_starts > 0
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["data"].update(download_timeout_s=7.0, mirrors=["http://127.0.0.1:9/"])
    raw["train"]["threads"] = 2
    raw["sweep"]["cpus_per_trial"] = 2.0
    raw["evaluate"]["threads"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run(["dvc", "repro"], cwd=repo, env=venv_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert starts() == before_starts  # no trial started, so none trained again
    assert runs() == before_runs  # no new parent, no new trial run
    evaluated = re.findall(r'"evaluated_now": (\d+)', done.stdout)
    assert all(n == "0" for n in evaluated), done.stdout[-3000:]
