"""The report's claims section on the synthetic study of tests/test_report.py: first in the report,
one row per claim with its verdict and a link to its figure's section, the same verdicts in
results/metrics/claims.json (DVC metrics) and on the sweep's parent MLflow run; and the
authors' reference figures shipped beside the report, or a note saying they are absent."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from PIL import Image

from pipeline.infra import tracking
from pipeline.params.report import ReportParams
from pipeline.params.study import TrackingParams
from pipeline.report.doc import ML_VIEW
from pipeline.report.study import build_report
from tests.test_report import _params, write_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    base = tmp_path_factory.mktemp("claims")
    client = tracking.client(TrackingParams(), base)
    parent = client.create_run(tracking.experiment_id(client, TrackingParams(), base)).info.run_id
    write_study(base, parent_run_id=parent)
    refs = base / "refs"
    refs.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(refs / "authors_logdet_vs_train_size.png")
    result = build_report(_params({"reference_dir": "refs"}), base, log=lambda _m: None)
    html = (base / "report/index.html").read_text()
    return SimpleNamespace(base=base, client=client, parent=parent, result=result, html=html,
                           claims=html[html.index('id="claims"'):html.index('id="table1"')])


def test_claims_open_the_report_and_link_to_their_figures(study):
    assert study.result["sections"][0] == "claims"
    assert study.html.index('<section id="claims">') < study.html.index('<section id="table1">')
    rows = re.findall(r"<tr><td>(C\d) \(([^)]*)\)</td>.*?</tr>", study.claims)
    assert [r[0] for r in rows] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    for anchor in ("table1", "train-size", "information-preference", "latent-dim"):
        assert f'<a href="#{anchor}">' in study.claims and f'<section id="{anchor}">' in study.html


def test_verdicts_follow_the_synthetic_numbers(study):
    verdicts = study.result["claims"]
    # Table 1: every Adversarial-VAE trial failed -> C1 cannot be decided
    assert verdicts["c1"] == "inconclusive" and "Adversarial-VAE: FAILED" in study.claims
    # train_size: ELBO 9.0 at n=500 falling to 5.8, MMD-VAE 0.1: Fig. 4 as the paper draws it
    assert verdicts["c2"] == "reproduced"
    # ELBO (784/d)'s MI 0.05 (< log 2), MMD-VAE's 6.0 (> log 2, by far more than 2 s.e.)
    assert verdicts["c3"] == "reproduced"
    assert verdicts["c5"] == "not reproduced"  # the synthetic ss error grows with the method's index
    # the authors' support for each claim stands beside its verdict
    assert "The authors&#x27; data" in study.claims or "The authors' data" in study.claims
    assert "contradicted by their own Fig. 3A" in study.claims


def test_claims_are_dvc_metrics_and_mlflow_tags(study):
    metrics = json.loads((study.base / "results/metrics/claims.json").read_text())["claims"]
    assert sorted(metrics) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert {k: v["verdict"] for k, v in metrics.items()} == study.result["claims"]
    assert metrics["c3"]["statistic"] > 0 and set(metrics["c3"]) == {"verdict", "statistic"}
    run = study.client.get_run(study.parent)
    assert run.data.metrics["claims_c3_stderr"] > 0  # the standard error: on the parent run
    assert run.data.tags["claims.c3.verdict"] == "reproduced"
    assert run.data.metrics["claims_c3_statistic"] == pytest.approx(metrics["c3"]["statistic"])


def test_reference_figures_are_shipped_beside_the_report(study):
    shipped = study.base / "report/figures/reference_authors_logdet_vs_train_size.png"
    assert shipped.read_bytes() == (study.base / "refs/authors_logdet_vs_train_size.png").read_bytes()
    section = study.html[study.html.index('<section id="reference">'):]
    assert 'id="fig-reference_authors_logdet_vs_train_size"' in section and "Source: refs/" in section
    # the captions that cite them link to them
    assert 'in <a href="#reference">Reference figures</a> below' in study.html


def test_absent_reference_figures_are_said_absent(tmp_path):
    write_study(tmp_path, ("train_size",))
    build_report(_params({"reference_dir": "no/such/dir"}), tmp_path, log=lambda _m: None)
    html = (tmp_path / "report/index.html").read_text()
    assert "reference figures were not found in no/such/dir (report.reference_dir)" in html


def test_run_links_go_to_the_tracking_server_or_to_mlflow_ui():
    from pipeline.report.doc import Link, run_link
    from pipeline.report.study import mlflow_ui

    cfg = ReportParams()
    assert mlflow_ui("http://10.0.0.5:5000/", cfg) == "http://10.0.0.5:5000"
    assert mlflow_ui("sqlite:///mlflow.db", cfg) == "http://127.0.0.1:5000"
    run = "ab" * 16
    assert run_link(run, "http://10.0.0.5:5000") == Link(run, f"http://10.0.0.5:5000/#/runs/{run}?{ML_VIEW}")
    assert run_link(None, "http://10.0.0.5:5000") == "—"
    from pipeline.report.doc import experiment_link

    ui = "http://10.0.0.5:5000"
    assert experiment_link("'infovae'", "7", ui) == Link("'infovae'", f"{ui}/#/experiments/7?{ML_VIEW}")
    models = Link("models", f"{ui}/#/experiments/7/models?{ML_VIEW}")
    assert experiment_link("models", "7", ui, "/models") == models
    assert experiment_link("'infovae'", None, ui) == "'infovae'"  # an older sweep.json: no id, no link


def test_the_study_experiment_opens_on_mlflow_s_model_training_pages(study):
    """MLflow 3's UI shows an experiment of unknown kind on its GenAI pages (traces, an
    assistant); the pipeline creates its experiment with the kind that opens the runs table."""
    exp = study.client.get_experiment_by_name(TrackingParams().experiment)
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"


def test_c1_is_paired_when_the_evaluate_stage_kept_per_image_nlls(tmp_path):
    """results/eval/per_image_nll.parquet, when present, reaches C1 (load_inputs -> evaluate_claims):
    its checks say they are paired; without it (the synthetic study above) they say unpaired."""
    import numpy as np
    import pandas as pd

    from pipeline.infra import atomic
    from pipeline.report.claims import evaluate_claims
    from pipeline.report.data import load_inputs

    write_study(tmp_path)
    inputs = load_inputs(tmp_path, "results/sweep", "results/eval")
    assert inputs.per_image is None
    c1 = evaluate_claims(inputs.metrics, per_image=inputs.per_image)[0]
    assert all("[unpaired: no per-image NLLs" in c.what for c in c1.checks if c.margin is not None)
    rows = inputs.metrics[inputs.metrics["status"] == "EVALUATED"]
    rng = np.random.default_rng(0)
    per_image = [{"cell": r.cell, "trial_id": r.trial_id, "split": "test", "estimator": "is", "image": i,
                  "image_digest": f"d{i}", "nll": float(v)}
                 for r in rows.itertuples() for i, v in enumerate(rng.normal(r.test_nll or 90.0, 1.0, 30))]
    atomic.write_parquet(tmp_path / "results/eval/per_image_nll.parquet", per_image)
    inputs = load_inputs(tmp_path, "results/sweep", "results/eval")
    assert isinstance(inputs.per_image, pd.DataFrame) and len(inputs.per_image) == 30 * len(rows)
    c1 = evaluate_claims(inputs.metrics, per_image=inputs.per_image)[0]
    measured = [c for c in c1.checks if c.margin is not None]
    assert measured and all("[paired over 30 test images]" in c.what for c in measured)
