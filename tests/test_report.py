"""The report stage on a synthetic study (the sweep's and the evaluation's outputs for all five
grids, with failed trials and unmeasured metrics): a self-contained HTML page and a Markdown
report with Table 1 and every figure, logged to the sweep's MLflow run, replaced atomically."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.infra import tracking
from pipeline.params.load import load_params, with_overrides
from pipeline.params.stages import stage_params
from pipeline.params.study import TrackingParams
from pipeline.params.vocab import method_name
from pipeline.report import study as report_study
from pipeline.report.doc import ML_VIEW, missing, num
from pipeline.report.study import build_report
from tests.conftest import ROOT

GRIDS = ("table1", "latent_dim", "train_size", "information_preference", "alpha_lambda")
# (divergence, alpha, lambda, objective.scaling); ELBO (784/d) is the authors' ELBO row (Fig. 3, Table 1)
METHODS = {"ELBO (784/d)": ("kl", 0.0, 1.0, "authors"), "ELBO": ("kl", 0.0, 1.0, "per_image"),
           "Unregularized": ("kl", 1.0, 0.0, "per_image"), "MMD-VAE": ("mmd", 1.0, 1000.0, "per_image"),
           "Stein-VAE": ("stein", 1.0, 1000.0, "per_image"),
           "Adversarial-VAE": ("adversarial", 1.0, 100.0, "per_image")}
TABLE1_NLL = {"ELBO (784/d)": 85.1234, "MMD-VAE": 83.4567, "Stein-VAE": 84.0049}  # Adversarial: all failed
DIVERGED = "pipeline.train.trainer.TrainingDiverged: loss is nan at epoch 1, step 3"
OOM = "RuntimeError: CUDA out of memory while allocating 2.00 GiB"


def _cells(grids: tuple[str, ...]) -> list[dict]:
    """The study's cells as pipeline.params.grid makes them: one cell per configuration, carrying
    the names of every grid that reaches it."""
    found: dict[tuple, dict] = {}

    def add(grid: str, div: str, alpha: float, lam: float, scaling: str = "per_image", d: int = 10,
            n: int | None = None, dec: str = "mlp") -> None:
        key = (div, alpha, lam, scaling, d, n, dec)
        label = f"{div} alpha={alpha:g} lambda={lam:g} d={d} n={n or 'all'} dec={dec}" + (
            " objective.scaling=authors" if scaling == "authors" else "")
        cell = found.setdefault(key, {"cell": f"cell-{len(found):03d}", "div": div, "alpha": alpha,
                                      "lambda": lam, "scaling": scaling, "d": d, "n": n, "dec": dec,
                                      "grids": [], "label": label})
        cell["grids"].append(grid)

    for grid in grids:
        if grid in ("table1", "information_preference"):
            names = list(TABLE1_NLL) + ["Adversarial-VAE"] if grid == "table1" else ["ELBO (784/d)",
                                                                                      "MMD-VAE"]
            for m in names:
                add(grid, *METHODS[m], dec="pixelcnn")
        elif grid == "latent_dim":  # the authors' Fig. 3: PixelCNN decoder (d = 10: Table 1's cells)
            for m in METHODS:
                if m != "ELBO":
                    for d in (2, 10, 40):
                        add(grid, *METHODS[m], d=d, dec="pixelcnn")
        elif grid == "train_size":
            for m in ("ELBO", "MMD-VAE"):
                for n in (500, 5000, 50000):
                    add(grid, *METHODS[m], n=n)
        elif grid == "alpha_lambda":
            for alpha in (-1.0, 0.0, 1.0):
                for lam in (100.0, 1000.0, 10000.0):
                    add(grid, "mmd", alpha, lam)
    return list(found.values())


def _failed(c: dict) -> bool:
    """Every trial of these cells diverged: Table 1's Adversarial-VAE and one alpha-lambda cell."""
    return (c["div"] == "adversarial" and c["dec"] == "pixelcnn" and c["d"] == 10) or \
        (c["alpha"], c["lambda"]) == (-1.0, 1e4)


def _metrics(c: dict, method: str) -> dict:
    elbo, d = c["div"] == "kl" and c["alpha"] == 0, c["d"]
    k = list(METHODS).index(method) if method in METHODS else 0  # tells the methods' lines apart
    spread = k * d / 10 if c["n"] is None else 0.0
    n = c["n"] or 55000
    logdet = (9.0 - 1.6 * math.log10(n / 500)) if elbo else 0.1 - 0.02 * math.log10(n / 500)
    nll = TABLE1_NLL.get(method) if c["dec"] == "pixelcnn" else 95.0 + d / 10 + abs(c["alpha"])
    return {
        "test_nll": nll, "test_nll_stderr": None if method == "Stein-VAE" else 0.1234,
        "test_k": 5000, "test_n": 10000, "loglik_proposal": "defensive",
        "train_nll": (nll or 90) - 1, "train_k": 5000, "train_n": 1000,
        "mmd": (1e-4 if elbo else 1e-3) * d * (1 + k), "logdet_cov": logdet - 0.3 - spread,
        "train_logdet_cov": logdet - spread,
        "mi": 0.05 if elbo and c["dec"] == "pixelcnn" else 5.0 + c["alpha"], "active_units": min(d, 8),
        "latent_n": 5000, "train_latent_n": min(n, 5000),
        "ss_error_100": 0.5 * (1 + k / 3) / d, "ss_error_100_std": 0.02,
        "ss_error_1000": 0.2 * (1 + k / 3) / d, "ss_error_1000_std": 0.01, "ss_repeats": 5,
        "class_mismatch": None if method == "Unregularized" else 0.02 + (k + d) / 1000,  # None: skipped
        "class_empty": 0.0, "class_max_freq": 0.12, "class_samples": 10000, "classifier_accuracy": 0.99,
        "divergence": c["div"], "alpha": c["alpha"], "lambda": c["lambda"], "encoder": "mlp",
        "decoder": c["dec"],
        "latent_dim": d, "train_size": n, "device": "cpu", "seed": 0, "binarization": "dynamic",
        "checkpoint": f"results/ray/{c['cell']}/checkpoint", "seconds_loglik_test": 1.0,
    }


def write_study(base: Path, grids: tuple[str, ...] = GRIDS, parent_run_id: str | None = None) -> None:
    """results/sweep/{trials.parquet, best.json, sweep.json} and results/eval/{metrics.parquet,
    history.parquet, images/} with plausible values."""
    sweep_dir, eval_dir = base / "results/sweep", base / "results/eval"
    sweep_dir.mkdir(parents=True)
    (eval_dir / "images").mkdir(parents=True)
    trials, best, metrics, history = [], {}, [], []
    for i, c in enumerate(_cells(grids)):
        method = method_name(c["div"], c["alpha"], c["lambda"], c["scaling"])
        failed = _failed(c)
        statuses = ["FAILED", "FAILED"] if failed else ["FINISHED", "KILLED"] + (["FAILED"] if i == 4 else [])
        spec = {"model": {"latent_dim": c["d"], "decoder": c["dec"]}, "train": {"diagnostics_size": 1000}}
        for j, status in enumerate(statuses):
            trials.append({
                "trial_id": f"t{i:03d}_{j}", "cell": c["cell"], "cell_label": c["label"],
                "grids": ",".join(c["grids"]), "status": status,
                "error": (OOM if i == 4 else DIVERGED) if status == "FAILED" else None,
                "epochs_done": {"FINISHED": 5, "KILLED": 2, "FAILED": 1}[status],
                "mlflow_run_id": f"{i * 10 + j:032x}",
                "divergence": c["div"], "alpha": c["alpha"], "lambda": c["lambda"], "latent_dim": c["d"],
                "decoder": c["dec"], "train_size": c["n"], "lr": 1e-3, "spec": json.dumps(spec),
                "val_loss": 100.0 + j, "val_recon": 80.0 + c["alpha"]})
        meta = {"cell": c["cell"], "cell_label": c["label"], "grids": ",".join(c["grids"]), "method": method}
        entry = {"label": c["label"], "grids": c["grids"], "trials": len(statuses),
                 "failed": statuses.count("FAILED"),
                 "overrides": {"objective.divergence": c["div"], "objective.alpha": c["alpha"],
                               "objective.lambda": c["lambda"], "model.latent_dim": c["d"]}}
        if failed:
            best[c["cell"]] = {**entry, "trial_id": None, "status": "FAILED", "errors": [DIVERGED]}
            metrics.append({**meta, "trial_id": None, "trial_status": "FAILED", "mlflow_run_id": None,
                            "status": "FAILED", "error": DIVERGED})
            continue
        run_id = f"{i * 10:032x}"
        best[c["cell"]] = {**entry, "trial_id": f"t{i:03d}_0", "status": "FINISHED", "metric": "val_loss",
                           "value": 100.0, "checkpoint": f"results/ray/{c['cell']}", "mlflow_run_id": run_id}
        metrics.append({**meta, "trial_id": f"t{i:03d}_0", "trial_status": "FINISHED",
                        "mlflow_run_id": run_id, "status": "EVALUATED", "error": None, **_metrics(c, method)})
        elbo = c["div"] == "kl" and c["alpha"] == 0
        for epoch in range(1, 6):
            history.append({"cell": c["cell"], "epoch": float(epoch), "val_loss": 100.0 - epoch,
                            "val_recon": 85.0 - epoch + c["alpha"],
                            "val_mmd": (1e-4 if elbo else 1e-3) * (1 + i % 3) / epoch,
                            "val_mi": 2.0 / epoch if elbo and c["dec"] == "pixelcnn" else 4.0 + epoch / 5})
        if c["d"] == 10 and c["n"] is None:  # image grids for some cells only
            for name, shade in (("samples.png", 90), ("reconstructions.png", 200)):
                (eval_dir / "images" / c["cell"]).mkdir(exist_ok=True)
                Image.new("L", (56, 56), shade).save(eval_dir / "images" / c["cell"] / name)
    pd.DataFrame(trials).to_parquet(sweep_dir / "trials.parquet")
    pd.DataFrame(metrics).to_parquet(eval_dir / "metrics.parquet")
    pd.DataFrame(history).to_parquet(eval_dir / "history.parquet")
    (sweep_dir / "best.json").write_text(json.dumps(best))
    counts = {s.lower(): sum(t["status"] == s for t in trials) for s in ("FINISHED", "KILLED", "FAILED")}
    (sweep_dir / "sweep.json").write_text(json.dumps({
        "name": "infovae", "experiment": "infovae-0123456789", "fingerprint": "0123456789",
        "parent_run_id": parent_run_id, "mlflow_experiment": "infovae", "cells": len(best),
        "trials": len(trials), **counts, "epochs": 5, "grids": {g: ["method"] for g in grids}}))


def _params(report: dict | None = None, **tracking_args):
    """The report stage's view of the study's params: small figures, these report keys, this
    tracking store."""
    overrides = {"report.dpi": 50, **{f"report.{k}": v for k, v in (report or {}).items()},
                 **{f"tracking.{k}": v for k, v in tracking_args.items()}}
    return stage_params(with_overrides(load_params(ROOT / "params.yaml"), overrides), "report")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    client = tracking.client(TrackingParams(), base)
    exp = tracking.experiment_id(client, TrackingParams(), base)
    parent = client.create_run(exp, run_name="sweep infovae").info.run_id
    write_study(base, parent_run_id=parent)
    lines: list[str] = []
    result = build_report(_params(), base, log=lines.append)
    html = (base / "report/index.html").read_text()
    md = (base / "report/report.md").read_text()
    return SimpleNamespace(base=base, client=client, parent=parent, result=result, html=html, md=md,
                           log=lines)


def test_report_is_self_contained(study):
    html = study.html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""src\s*=\s*["']?(https?:|//|file:)""", html)  # nothing loaded from elsewhere
    assert "<link" not in html and "<script" not in html and "url(" not in html and "@import" not in html
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == study.result["figures"] >= 8
    assert all('src="data:image/png;base64,' in img for img in images)
    assert study.result["html_bytes"] < 5e6
    hrefs = re.findall(r'href="([^"]*)"', html)
    runs = [h for h in hrefs if not h.startswith("#")]
    # links only: to the report's own sections, or to a run's page in the MLflow UI (`mlflow ui`'s address)
    page = r"http://127\.0\.0\.1:5000/#/runs/[0-9a-f]{32}\?" + ML_VIEW
    assert runs and all(re.fullmatch(page, h) for h in runs)
    for href in hrefs:
        assert not href.startswith("#") or f'id="{href[1:]}"' in html


def test_table1_holds_the_papers_values_and_ours(study):
    table = study.html[study.html.index('id="table1"'):study.html.index('id="latent-dim"')]
    for value in ("82.75", "80.76", "81.47", "82.21"):  # the paper
        assert f"<td>{value}</td>" in table
    for ours, diff in (("85.12", "+2.37"), ("83.46", "+2.70"), ("84.00", "+2.53")):
        assert f"<td>{ours}</td>" in table and f"<td>{diff}</td>" in table
    assert "<td>0.12</td>" in table and "<td>5,000</td>" in table and "<td>10,000</td>" in table
    assert "not measured" in table  # Stein-VAE's standard error
    assert "FAILED: " + DIVERGED in table  # Adversarial-VAE: every trial diverged
    assert "mlp/pixelcnn, d=10, 5/5 epochs, dynamic binarization, n=55,000" in table
    assert "| ELBO (784/d) | 82.75 | 85.12 | 0.12 | 5,000 | 10,000 | +2.37 |" in study.md
    assert "q(z|x) mixed half and half with N(mean(x), I)" in table  # the IS proposal the rows used


def test_every_experiment_has_its_section_and_sources(study):
    assert study.result["sections"] == ["claims", "table1", "latent-dim", "train-size",
                                        "information-preference", "alpha-lambda", "samples", "reference",
                                        "trials", "timing"]
    for sid in study.result["sections"]:
        assert f'<section id="{sid}">' in study.html
    for fig in ("latent_dim", "logdet_vs_train_size", "mutual_information", "alpha_lambda_mmd",
                "samples_kl", "reconstructions_mmd", "samples_stein"):
        assert f'id="fig-{fig}"' in study.html and f"](figures/{fig}.png)" in study.md
        assert (study.base / "report/figures" / f"{fig}.png").is_file()
    run = f"{0:032x}"
    assert study.html.count('class="source"') >= 6
    anchor = f'MLflow run <a href="http://127.0.0.1:5000/#/runs/{run}?{ML_VIEW}">{run}</a>'
    assert anchor in study.html and anchor in study.md  # <sub> HTML in the Markdown
    assert "not part of this sweep" not in study.html
    assert "about 9 at 500 training samples down to 2 at 50k" in study.html  # the paper's finding
    assert "ELBO train 9.00 at n=500 to 5.80 at n=50,000, test 8.70 at n=500 to 5.50 at n=50,000" \
        in study.html
    assert "N = 1,000 validation encodings" in study.html
    info = study.html[study.html.index('id="information-preference"'):study.html.index('id="alpha-lambda"')]
    assert "<td>5,000</td><td>8.52</td>" in info and "N = 5,000 for every cell here" in info  # log 5000
    assert "9.21" not in info
    assert "Not measured for any cell" not in study.html  # class mismatch: missing for one method only


def test_trials_section_lists_failures(study):
    trials = study.html[study.html.index('id="trials"'):]
    assert DIVERGED in trials and OOM in trials
    assert "stopped early by ASHA" in trials
    assert "Cells without a usable trial" in trials
    assert "infovae-0123456789" in study.html and "0123456789" in study.html
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in study.html


def test_report_logged_to_the_parent_run(study):
    names = {a.path for a in study.client.list_artifacts(study.parent, "report")}
    assert {"report/index.html", "report/report.md"} <= names
    assert study.result["mlflow_run_id"] == study.parent
    assert any("logged to MLflow run" in line for line in study.log)


@pytest.fixture(scope="module")
def without_info(tmp_path_factory):
    """A sweep without the information_preference grid and without an MLflow parent run."""
    base = tmp_path_factory.mktemp("partial")
    write_study(base, tuple(g for g in GRIDS if g != "information_preference"))
    lines: list[str] = []
    result = build_report(_params(), base, log=lines.append)
    return SimpleNamespace(base=base, result=result, log=lines)


def test_an_absent_experiment_says_so(without_info):
    html = (without_info.base / "report/index.html").read_text()
    section = html[html.index('id="information-preference"'):html.index('id="alpha-lambda"')]
    assert ("Experiment 4 (mutual information with a PixelCNN decoder) was not part of this sweep: no grid "
            "named &#x27;information_preference&#x27; in params.yaml") in section
    assert "<img" not in section
    assert "not part of this sweep" in (without_info.base / "report/report.md").read_text()
    assert without_info.result["mlflow_run_id"] is None
    assert any("not logged to MLflow" in line for line in without_info.log)


def _snapshot(base: Path) -> dict[str, bytes]:
    files = sorted((base / "report").rglob("*"))
    return {str(p.relative_to(base)): p.read_bytes() for p in files if p.is_file()}


def test_failures_leave_the_previous_report(without_info, monkeypatch):
    base = without_info.base
    before = _snapshot(base)

    def half_written(report, out):  # fails after writing part of the new report
        (out / "index.html").write_text("partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_study, "write_report", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report(_params(), base, log=lambda _m: None)
    monkeypatch.undo()
    metrics = base / "results/eval/metrics.parquet"
    good = metrics.read_bytes()
    metrics.write_bytes(b"PAR1 this is not parquet")
    try:
        with pytest.raises(PipelineError, match=r"cannot read results/eval/metrics\.parquet"):
            build_report(_params(), base, log=lambda _m: None)
    finally:
        metrics.write_bytes(good)
    assert _snapshot(base) == before
    assert not [p.name for p in base.iterdir() if p.name.startswith(".report")]  # no temporary left


def test_unreachable_tracking_server_is_a_clear_error(tmp_path):
    write_study(tmp_path, ("table1",), parent_run_id="0" * 32)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(tracking.TrackingError, match=f"127.0.0.1:{port} is unreachable"):
        build_report(_params(uri=f"http://127.0.0.1:{port}", connect_timeout_s=0.5), tmp_path)
    assert not (tmp_path / "report").exists()


def test_unknown_parent_run_is_a_clear_error(tmp_path):
    write_study(tmp_path, ("table1",), parent_run_id="f" * 32)
    with pytest.raises(PipelineError, match=f"parent MLflow run {'f' * 32} .* is not in the tracking store"):
        build_report(_params(), tmp_path, log=lambda _m: None)
    assert not (tmp_path / "report").exists()


def test_missing_inputs_name_the_stage(tmp_path):
    with pytest.raises(PipelineError, match=r"missing results/sweep/sweep\.json: run the sweep stage"):
        build_report(_params(), tmp_path)


def test_unmeasured_metrics_are_reported_as_such(tmp_path):
    """A metrics table without any metric column (e.g. the first cell failed and the table kept its
    columns only), an empty history and no images: every figure says what was not measured."""
    write_study(tmp_path, ("table1", "latent_dim", "train_size"))
    metrics_path = tmp_path / "results/eval/metrics.parquet"
    keep = ["cell", "cell_label", "grids", "trial_id", "trial_status", "mlflow_run_id", "method", "status",
            "error"]
    pd.read_parquet(metrics_path)[keep].to_parquet(metrics_path)
    history = tmp_path / "results/eval/history.parquet"
    pd.DataFrame({"cell": pd.Series([], dtype="string")}).to_parquet(history)
    shutil.rmtree(tmp_path / "results/eval/images")
    result = build_report(_params(), tmp_path, log=lambda _m: None)
    html = (tmp_path / "report/index.html").read_text()
    assert "Not measured for any cell: (A), (B), (C), (D), (E)." in html
    assert "Ours: MMD-VAE not measured; ELBO not measured." in html
    assert "<td>ELBO (784/d)</td><td>82.75</td><td>not measured</td>" in html
    assert "no sample or reconstruction grid was saved" in html
    assert result["figures"] == 2


def test_formatting_of_unmeasured_values():
    values = (None, float("nan"), float("inf"), pd.NA, 0.0, "x")
    assert [missing(v) for v in values] == [True] * 4 + [False] * 2
    assert num(None) == "not measured" and num(2.0, signed=True) == "+2.00" and num(82.749) == "82.75"


def test_figures_are_pngs(study):
    png = (study.base / "report/figures/latent_dim.png").read_bytes()
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size[0] > 400
