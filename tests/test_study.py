"""The smoke study end to end: `dvc repro` in a fresh copy of the repository, with real DVC,
Ray, MLflow (and its server over the study's store) and the report opened in Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import numpy as np
import pytest
from PIL import Image

from pipeline.infra.workspace import study_copy, venv_env
from pipeline.report.doc import ML_VIEW
from tests.browser import rendered_dom, screenshot
from tests.conftest import MNIST_DIR, ROOT, running_mlflow_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study_server(tmp_path_factory):
    """The MLflow tracking server the smoke study logs to (a real one, on 127.0.0.1)."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server"), venv_env()) as url:
        yield url


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory, study_server):
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST IDX files not found at {MNIST_DIR}")
    repo = study_copy(ROOT, tmp_path_factory.mktemp("study") / "repo", MNIST_DIR, ["profile=smoke"])
    params = repo / "params.yaml"
    text = params.read_text()
    assert "\n  uri: sqlite:///mlflow.db" in text
    params.write_text(text.replace("\n  uri: sqlite:///mlflow.db", f"\n  uri: {study_server}", 1))
    subprocess.run(["git", "-c", "user.name=study", "-c", "user.email=study@localhost", "commit", "-qam",
                    "track to the test's MLflow server"], cwd=repo, check=True, capture_output=True)
    done = subprocess.run(["dvc", "repro"], cwd=repo, env=venv_env(), capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return repo, done.stdout + done.stderr


def test_repro_produces_every_output(smoke_study):
    repo, log = smoke_study
    for stage in ("prepare", "sweep", "evaluate", "report"):
        assert f"Running stage '{stage}'" in log
    for path in ("data/prepared/train.parquet", "results/sweep/trials.parquet", "results/sweep/best.json",
                 "results/eval/metrics.parquet", "results/metrics/evaluate.json",
                 "report/index.html", "report/report.md", "dvc.lock"):
        assert (repo / path).is_file(), path


def test_console_has_no_line_per_checkpoint_and_no_warning_a_user_cannot_act_on(smoke_study):
    """Issue 24: Ray's "Checkpoint successfully created" (one per trial per epoch) and its
    token-authentication notice (the pipeline sets the mode itself) are gone."""
    _, log = smoke_study
    assert "Checkpoint successfully created" not in log
    assert "RAY_AUTH_MODE=disabled to opt out" not in log


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
    table = subprocess.run(["dvc", "metrics", "show", "--md"], cwd=repo, env=venv_env(), capture_output=True,
                           text=True, timeout=120, check=True).stdout
    header = next(line for line in table.splitlines() if line.startswith("|"))
    assert len(header.strip("|").split("|")) <= 40, header  # issue 24: fits a terminal
    claims = next(v["data"]["results/metrics/claims.json"]["data"]["claims"] for v in metrics.values())
    assert sorted(claims) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert all(c["verdict"] in ("reproduced", "not reproduced", "inconclusive") for c in claims.values())
    plots = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=repo,
                           env=venv_env(), capture_output=True, text=True, timeout=120)
    assert plots.returncode == 0, plots.stderr
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "table1_nll_csv" in html and "latent_mmd_csv" in html and "information_mi_csv" in html


def test_report_holds_the_table_and_every_figure(smoke_study, study_server):
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
    # run and experiment links go to the tracking server the study logged to (its MLflow UI)
    page = re.escape(study_server) + r"/#/(runs/[0-9a-f]{32}|experiments/\d+(/models)?)\?" + ML_VIEW
    assert links and all(re.fullmatch(page, h) for h in links)
    assert sum("/#/runs/" in h for h in links) > 1  # the trials' run pages among them
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


def _rest(url: str, endpoint: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}", data=data,
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


def _study_runs(url: str) -> tuple[str, list[dict]]:
    exp = _rest(url, "experiments/get-by-name?experiment_name=infovae")["experiment"]
    runs = _rest(url, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 500})["runs"]
    return exp["experiment_id"], runs


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_mlflow_server_holds_the_runs_with_their_context(smoke_study, study_server):
    repo, _ = smoke_study
    _, runs = _study_runs(study_server)
    sweep = json.loads((repo / "results" / "sweep" / "sweep.json").read_text())
    children = [r for r in runs if "mlflow.parentRunId" in _tags(r)]
    assert len(children) == sweep["trials"] and len(runs) == sweep["trials"] + 1
    assert all(r["info"]["status"] in ("FINISHED", "KILLED") for r in runs)
    parent = next(r for r in runs if r["info"]["run_id"] == sweep["parent_run_id"])
    assert parent["info"]["status"] == "FINISHED"
    assert any(p["key"].startswith("sweep.grids.") for p in parent["data"]["params"])
    assert "plan: " in _tags(parent)["mlflow.note.content"]
    evaluated = [r for r in children
                 if any(m["key"] == "eval_test_nll" for m in r["data"].get("metrics", []))]
    assert evaluated and all("infovae.eval.test_k" in _tags(r) for r in evaluated)
    assert not any(m["key"] in ("eval_seed", "eval_test_k", "eval_alpha") for r in children
                   for m in r["data"].get("metrics", []))
    for r in children:  # dataset inputs, system metrics, description, source
        names = {d["dataset"]["name"] for d in r.get("inputs", {}).get("dataset_inputs", [])}
        assert names == {"mnist-train", "mnist-validation"}
        assert any(m["key"] == "system/cpu_utilization_percentage" for m in r["data"]["metrics"])
        assert "Cell **" in _tags(r)["mlflow.note.content"] and "mlflow.source.git.commit" in _tags(r)


def test_every_evaluated_cell_has_a_logged_model_that_loads_and_samples(
        smoke_study, study_server, monkeypatch):
    """Issue 24: MLflow's logged models (its Models view) hold one model per evaluated cell,
    linked to the cell's best trial run and tagged with the study; one loads and samples."""
    import pyarrow.parquet as pq
    from mlflow import MlflowClient

    from pipeline.evaluation.models import CELL_TAG, STUDY_TAG, load_cell_model

    repo, _ = smoke_study
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study_server)  # the server's proxied artifacts
    client = MlflowClient(study_server)
    exp, _ = _study_runs(study_server)
    rows = [r for r in pq.read_table(repo / "results" / "eval" / "metrics.parquet").to_pylist()
            if r["status"] == "EVALUATED"]
    models = client.search_logged_models([exp], max_results=500)
    assert sorted(m.tags[CELL_TAG] for m in models) == sorted(r["cell"] for r in rows)
    assert {m.source_run_id for m in models} == {r["mlflow_run_id"] for r in rows}
    parent = json.loads((repo / "results" / "sweep" / "sweep.json").read_text())["parent_run_id"]
    assert {m.tags[STUDY_TAG] for m in models} == {parent}
    mlp = next(r for r in rows if r["decoder"] != "pixelcnn")
    model, _ = load_cell_model(client, exp, mlp["cell"])
    images = model.sample(3)
    assert images.shape == (3, 1, 28, 28) and 0 <= float(images.min()) <= float(images.max()) <= 1


def test_dvc_push_carries_every_best_checkpoint(smoke_study, tmp_path):
    """Issue 24: the best checkpoint of every cell is a DVC-tracked output (results/sweep/models),
    so `dvc push` to a remote (here a local one, set in the copy's config.local) carries the
    exact bytes of each, found in the remote under its md5 as DVC stores files."""
    import hashlib

    from pipeline.sweep.models import MODELS

    repo, _ = smoke_study
    best = json.loads((repo / "results" / "sweep" / "best.json").read_text())
    cells = {c: e for c, e in best.items() if e.get("checkpoint")}
    assert cells
    remote = tmp_path / "remote"
    for cmd in (["remote", "add", "--local", "-d", "study-remote", str(remote)], ["push"]):
        done = subprocess.run(["dvc", *cmd], cwd=repo, env=venv_env(), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for cell, entry in cells.items():
        data = (repo / "results" / "sweep" / MODELS / cell / "checkpoint.pt").read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["checkpoint_sha256"], cell
        md5 = hashlib.md5(data).hexdigest()
        pushed = remote / "files" / "md5" / md5[:2] / md5[2:]
        assert pushed.is_file() and pushed.read_bytes() == data, cell


def test_plan_line_and_projected_vs_actual_time(smoke_study):
    repo, log = smoke_study
    plan = json.loads((repo / "results" / "sweep" / "plan.json").read_text())
    assert plan["line"] in log and "epoch/2" in log and "time left <= " in log
    html = (repo / "report" / "index.html").read_text()
    assert "Plan and time" in html and "actual / projected" in html


def test_dvc_exp_show_fits_a_terminal(smoke_study):
    """The smoke study (workspace) beside the commit it ran from, which has no results, so every
    metric and every dependency "changed". Dropped here: what two runs of the same code on the
    same data share, which --only-changed hides when comparing real experiments (the code's
    dependency hashes)."""
    repo, _ = smoke_study
    shown = subprocess.run(["dvc", "exp", "show", "--only-changed", "--md", "--no-pager",
                            "--drop", r"^(pipeline|stages)/"], cwd=repo,
                           env=venv_env(), capture_output=True, text=True, timeout=120, check=True)
    header = next(line for line in shown.stdout.splitlines() if line.startswith("|"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert len(columns) <= 40, columns
    assert "table1.elbo.test_nll" in columns and "time.evaluate_s" in columns


def test_trial_page_shows_its_sample_image(smoke_study, study_server, tmp_path):
    repo, _ = smoke_study
    exp_id, runs = _study_runs(study_server)
    best = json.loads((repo / "results" / "sweep" / "best.json").read_text())
    run_id = next(e["mlflow_run_id"] for e in best.values() if e.get("mlflow_run_id"))
    url = f"{study_server}/#/experiments/{exp_id}/runs/{run_id}/artifactPath/images/samples.png"
    dom = rendered_dom(url, tmp_path / "chrome", wait_ms=20000)
    images = re.findall(r"<img [^>]*>", dom)  # MLflow's artifact viewer: the PNG fetched as a blob
    assert any('alt="images/samples.png"' in img and 'src="blob:' in img for img in images), images


def test_parent_run_page_shows_the_report(smoke_study, study_server, tmp_path):
    repo, _ = smoke_study
    exp_id, _ = _study_runs(study_server)
    parent = json.loads((repo / "results" / "sweep" / "sweep.json").read_text())["parent_run_id"]
    url = f"{study_server}/#/experiments/{exp_id}/runs/{parent}/artifactPath/report/index.html"
    dom = rendered_dom(url, tmp_path / "chrome", wait_ms=25000)
    # MLflow shows an HTML artifact in a sandboxed iframe of the fetched file (a blob), whose
    # document a DOM dump does not include: the iframe is checked in the DOM, its page by pixels.
    frame = re.search(r'<iframe [^>]*class="mlflow-html-iframe"[^>]*>', dom)
    assert frame and 'src="blob:' in frame.group(0) and "report/index.html" in dom
    # The artifact pane renders the fetched report after the page itself, and Chromium's virtual
    # time does not wait for a server that answers slowly: a loaded machine needs a longer budget
    # (seen blank at 25 s with five other jobs on 2 cores, and once at 45 s in CI), so a blank
    # pane is tried again with a longer budget, each in a fresh profile, before it fails.
    for attempt, wait_ms in enumerate((45000, 90000, 180000)):
        png = screenshot(url, tmp_path / f"parent{attempt}.png", tmp_path / f"chrome{attempt + 2}",
                         size="1400,1000", wait_ms=wait_ms)
        pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
        h, w = pixels.shape
        report = pixels[int(0.25 * h):, int(0.30 * w):int(0.68 * w)]  # the artifact pane, below its header
        if (report < 100).mean() > 0.02:
            break
    assert (report < 100).mean() > 0.02, "the report's iframe is blank"


def test_report_links_to_the_runs_table_and_the_models_view(smoke_study, study_server, tmp_path):
    """Issue 24: from the report's header, a fresh browser profile follows the MLflow experiment
    link to the runs table (the study's sweep run in it, not MLflow 3's GenAI pages) and the
    models link to the logged models of every evaluated cell."""
    from mlflow import MlflowClient

    repo, _ = smoke_study
    sweep = json.loads((repo / "results" / "sweep" / "sweep.json").read_text())
    exp_id, parent = sweep["mlflow_experiment_id"], sweep["parent_run_id"]
    html = (repo / "report" / "index.html").read_text()
    runs_url = f"{study_server}/#/experiments/{exp_id}?{ML_VIEW}"
    models_url = f"{study_server}/#/experiments/{exp_id}/models?{ML_VIEW}"
    assert f'href="{runs_url}"' in html and f'href="{models_url}"' in html
    names = {m.name for m in MlflowClient(study_server).search_logged_models([exp_id], max_results=500)}
    assert names
    for attempt, wait_ms in enumerate((20000, 60000)):  # a loaded machine answers slowly
        runs = rendered_dom(runs_url, tmp_path / f"runs{attempt}", wait_ms=wait_ms)
        models = rendered_dom(models_url, tmp_path / f"models{attempt}", wait_ms=wait_ms)
        shown = set(re.findall(r">([^<>]*-cell-[0-9a-f]+)<", models))  # a model's name: <method>-<cell>
        if f"#/experiments/{exp_id}/runs/{parent}" in runs and shown:
            break
    assert 'role="grid"' in runs and "Run Name" in runs
    assert f"#/experiments/{exp_id}/runs/{parent}" in runs  # the study's sweep run is in the table
    # The view lists the study's models by name (the first page of them: it renders about 15).
    assert shown and shown <= names, (sorted(shown), sorted(names))


def test_dvc_plots_render_offline(smoke_study, tmp_path):
    repo, _ = smoke_study
    done = subprocess.run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], cwd=repo,
                          env=venv_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "plots" / "index.html"
    assert '<meta charset="utf-8">' in page.read_text()
    dom = rendered_dom(page, tmp_path / "chrome", offline=True, wait_ms=10000)
    assert dom.count('class="marks"') == 9  # one chart per figure, each drawn by vega
    for title in ("Table 1: test NLL per method", "Fig. 3 A", "Fig. 4", "Sec. 5.4"):
        assert title in page.read_text()
    # The control: DVC's own page (vega from a CDN) stays blank with the network off.
    cdn = tmp_path / "cdn.html"
    cdn.write_text("<html><head>{scripts}</head><body>{plot_divs}</body></html>")
    subprocess.run(["dvc", "plots", "show", "--html-template", str(cdn), "-o", str(tmp_path / "cdn")],
                   cwd=repo, env=venv_env(), capture_output=True, text=True, timeout=120, check=True)
    assert "cdn.jsdelivr.net" in (tmp_path / "cdn" / "index.html").read_text()
    blank = rendered_dom(tmp_path / "cdn" / "index.html", tmp_path / "chrome2", offline=True, wait_ms=10000)
    assert 'class="marks"' not in blank


def test_placement_settings_train_nothing_again(smoke_study, study_server):
    """Issue 11's identity check, end to end: after the finished smoke study, new values of
    settings that change no result (a download time-out, a mirror, torch threads, CPUs per
    trial, evaluation threads) make `dvc repro` train and evaluate nothing again, and open no
    new MLflow run. Last in this module: it changes the study's params."""
    import yaml

    repo, _ = smoke_study

    def starts() -> int:
        audits = (repo / "results" / "ray").glob("*/starts/*.jsonl")
        return sum(f.read_text().count('"start"') for f in audits)

    def runs() -> int:
        return len(_study_runs(study_server)[1])

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
