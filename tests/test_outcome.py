"""A cell whose training diverged (pipeline.train.outcome): the rule's known answers, and the
status DIVERGED from the evaluate stage's rows through the summary, the MLflow tags, the
report's tables and the claims, which never read such a cell's numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.evaluation import study as eval_study
from pipeline.evaluation.outputs import summary
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.params.vocab import ELBO_AUTHORS
from pipeline.report.claims import evaluate_claims, rules
from pipeline.report.tables import collapsed, not_evaluated
from pipeline.train.checkpoint import RunSpec
from pipeline.train.outcome import COIN_NATS, DIVERGED, diverged
from pipeline.train.trainer import Trainer
from tests.sweep_helpers import tiny_params

# --- the rule ---------------------------------------------------------------------------------


def test_the_bound_is_784_fair_coins():
    assert COIN_NATS == pytest.approx(543.4273, abs=1e-4)  # 784 ln 2
    assert COIN_NATS == pytest.approx(-784 * math.log(0.5))


@pytest.mark.parametrize("nelbo,loss,bad", [
    (90.0, 90.0, False),                 # a trained model
    (COIN_NATS, COIN_NATS, False),       # exactly the coins: not worse than them
    (COIN_NATS - 0.01, 1.0, False),
    (COIN_NATS + 0.01, 1.0, True),       # just worse than the coins
    (2272.0, -121.0, True),              # the laptop run's adversarial PixelCNN cell
    (4258.0, 4258.0, True), (330258.0, 1e5, True),  # its MLP cells
    (95.0, -40.0, False),                # a negative loss (a beaten adversary's term) alone is not divergence
    (float("nan"), 1.0, True), (float("inf"), 1.0, True),
    (95.0, float("nan"), True), (95.0, float("-inf"), True),
])
def test_rule_known_answers(nelbo, loss, bad):
    why = diverged({"val_nelbo": nelbo, "val_loss": loss})
    assert (why is not None) == bad, why


def test_reason_states_the_value_and_the_threshold():
    why = diverged({"val_nelbo": 2272.0, "val_loss": -121.0})
    assert "2272" in why and "543.4" in why and "784 log 2" in why
    assert "nan" in diverged({"val_nelbo": float("nan")})
    assert "validation loss is nan" in diverged({"val_nelbo": 90.0, "val_loss": float("nan")})


def test_absent_metrics_condemn_nothing():
    assert diverged({}) is None and diverged({"val_nelbo": None, "val_loss": "x"}) is None
    assert diverged({"val_loss": 3.0}) is None


def test_the_bound_follows_the_pixel_count():
    assert diverged({"val_nelbo": 100.0}, pixels=100) is not None  # 100 log 2 = 69.3
    assert diverged({"val_nelbo": 60.0}, pixels=100) is None


# --- claims and report tables -----------------------------------------------------------------


def _row(method: str, nll: float, **extra) -> dict:
    return {"cell": method, "cell_label": f"{method} pixelcnn", "grids": "table1", "method": method,
            "status": "EVALUATED", "error": None, "decoder": "pixelcnn", "latent_dim": 10,
            "train_size": 5000, "test_nll": nll, "test_nll_stderr": 0.1, **extra}


# C1 compares against the authors' ELBO row (as tests/test_claims.py).
PAPER = {ELBO_AUTHORS: 82.75, "MMD-VAE": 80.76, "Stein-VAE": 81.47, "Adversarial-VAE": 82.21}


def test_a_diverged_cell_is_named_and_never_judged():
    c1 = next(c for c in evaluate_claims(pd.DataFrame([_row(m, v) for m, v in PAPER.items()]))
              if c.spec.id == "c1")
    assert c1.verdict == rules.REPRODUCED
    # Its numbers, were they read, would decide C1 (the lowest NLL of all: MMD-VAE not lowest).
    why = diverged({"val_nelbo": 2272.0, "val_loss": -121.0})
    rows = [_row(m, v) for m, v in PAPER.items()]
    rows[3] = {**rows[3], "status": DIVERGED, "error": why, "test_nll": 50.0}
    c1 = next(c for c in evaluate_claims(pd.DataFrame(rows)) if c.spec.id == "c1")
    assert c1.verdict == rules.INCONCLUSIVE
    assert f"Adversarial-VAE: {DIVERGED}: training diverged" in c1.reason
    note = not_evaluated(pd.DataFrame(rows))
    assert note is not None and f"{DIVERGED}: training diverged: final validation NELBO 2272" in note.text


def test_a_collapsed_cell_is_named_and_kept():
    rows = [_row(m, v, active_units=0.0 if m == ELBO_AUTHORS else 10.0, mi=0.001) for m, v in PAPER.items()]
    frame = pd.DataFrame(rows)
    assert list(collapsed(frame)["method"]) == [ELBO_AUTHORS]
    c1 = next(c for c in evaluate_claims(frame) if c.spec.id == "c1")
    assert c1.verdict == rules.REPRODUCED  # its NLL is in the claim
    assert collapsed(pd.DataFrame([_row("ELBO", 1.0)])).empty  # no active_units column


# --- the evaluate stage -----------------------------------------------------------------------


@pytest.fixture
def diverged_study(prepared_mnist, tmp_path):
    """A sweep's output whose only cell trained but ran away (its history's last epoch edited)."""
    torch.set_num_threads(1)
    spec = RunSpec(ModelParams(hidden=[16], latent_dim=2), ObjectiveParams(divergence="kl"),
                   TrainParams(epochs=1, batch_size=50, train_size=100, validation_size=50,
                               diagnostics_size=0, threads=1, device="cpu"), str(prepared_mnist))
    trainer = Trainer(spec)
    trainer.run()
    assert diverged(trainer.history[-1]) is None
    trainer.save(tmp_path / "ray/ok/checkpoint_000000")
    trainer.history[-1].update(val_nelbo=2272.0, val_loss=-121.0)
    trainer.save(tmp_path / "ray/adv/checkpoint_000000")
    best = {cell: {"label": cell, "grids": ["g"], "overrides": {}, "method": method,
                   "trial_id": f"t-{cell}", "status": "FINISHED", "mlflow_run_id": f"run-{cell}",
                   "checkpoint": f"ray/{cell}/checkpoint_000000"}
            for cell, method in (("adv", "Adversarial-VAE"), ("ok", "ELBO"))}
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "best.json").write_text(json.dumps(best))
    return tmp_path


@pytest.mark.slow
def test_evaluate_stage_marks_tags_and_counts_a_diverged_cell(diverged_study, prepared_mnist, monkeypatch):
    tags = {}
    monkeypatch.setattr(eval_study.tracking, "client", lambda *a, **k: "client")
    monkeypatch.setattr(eval_study.tracking, "set_tags", lambda c, run, t: tags.setdefault(run, {}).update(t))

    monkeypatch.setattr(eval_study, "log_evaluation", lambda client, run, result: tags.setdefault(run, {}))
    models: list[str] = []  # cells given a logged model (pipeline.evaluation.models)
    monkeypatch.setattr(eval_study, "log_model", lambda client, entry, cell, *a: models.append(cell) or "m")

    def jobs_of_healthy_cells(jobs, *args, **kwargs):
        assert [j.cell for j in jobs] == ["ok"]  # a diverged cell is not measured
        return {"ok": {"test_nll": 90.0, "active_units": 2.0}}

    monkeypatch.setattr(eval_study, "run_jobs", jobs_of_healthy_cells)
    params = tiny_params(diverged_study, prepared_mnist, {"g": {"divergence": ["kl"]}},
                         extra={"evaluate.out_dir": str(diverged_study / "eval"),
                                "evaluate.summary": str(diverged_study / "eval/summary.json"),
                                "evaluate.plots_dir": str(diverged_study / "eval/plots")})
    lines: list[str] = []
    out = eval_study.evaluate_study(params, diverged_study, log=lines.append)
    assert out["diverged"] == 1 and out["evaluated"] == 1 and out["failed"] == 0
    rows = {r["cell"]: r for r in pq.read_table(diverged_study / "eval/metrics.parquet").to_pylist()}
    row = rows["adv"]
    assert row["status"] == DIVERGED and row["val_nelbo"] == 2272.0 and row["val_loss"] == -121.0
    assert "2272" in row["error"] and "543.4" in row["error"]
    assert row["test_nll"] is None  # the column is the healthy cell's
    assert rows["ok"]["status"] == "EVALUATED" and rows["ok"]["test_nll"] == 90.0
    assert any(DIVERGED in line and "adv" in line for line in lines)
    assert tags["run-adv"]["infovae.diverged"] == row["error"]
    assert tags["run-adv"]["infovae.eval.status"] == DIVERGED
    assert "infovae.diverged" not in tags["run-ok"]
    cells = json.loads((diverged_study / "eval/summary.json").read_text())["cells"]
    assert cells == {"evaluated": 1, "failed": 0, "diverged": 1}
    assert models == ["ok"] and out["models"] == 1  # a diverged cell's model is not offered


def test_summary_counts_each_status():
    rows = [{"status": s, "grids": "g"} for s in ("EVALUATED", "FAILED", DIVERGED, DIVERGED)]
    assert summary(rows, Path("/nonexistent"), 1.0)["cells"] == {"evaluated": 1, "failed": 1, "diverged": 2}


# --- the sweep's choice of a cell's best trial -------------------------------------------------


def test_the_sweep_does_not_choose_a_runaway_trial_for_its_low_loss():
    from types import SimpleNamespace

    from pipeline.params.grid import Cell
    from pipeline.sweep.outcome import Outcome
    from pipeline.sweep.summary import summarise

    spec = {"objective": {"divergence": "adversarial", "alpha": 1.0, "lambda": 100.0},
            "model": {"latent_dim": 10, "encoder": "mlp", "decoder": "pixelcnn"},
            "train": {"epochs": 1, "train_size": 5000, "lr": 1e-3}}

    def trial(tid, nelbo, loss):
        return SimpleNamespace(trial_id=tid, checkpoint=None, last_result={
            "epoch": 1, "val_loss": loss, "val_nelbo": nelbo},
            config={"cell": "c", "cell_label": "adv", "grids": ["table1"], "spec": spec})

    cell = Cell("c", {}, ("table1",), "adv", "Adversarial-VAE", "pixelcnn")
    ran_away, sane = trial("a", 2272.0, -121.0), trial("b", 95.0, 60.0)
    outcomes = {"a": Outcome("FINISHED"), "b": Outcome("FINISHED")}
    _, best = summarise([ran_away, sane], {}, [cell], outcomes, "val_loss", Path("."))
    assert best["c"]["trial_id"] == "b"
    # With no other trial, the cell keeps it: the evaluate stage names it DIVERGED.
    _, best = summarise([ran_away], {}, [cell], {"a": Outcome("FINISHED")}, "val_loss", Path("."))
    assert best["c"]["trial_id"] == "a"


def test_the_trials_section_names_diverged_and_collapsed_cells(tmp_path):
    from pipeline.report.data import StudyInputs
    from pipeline.report.tables import trials_section

    why = diverged({"val_nelbo": 2272.0, "val_loss": -121.0})
    metrics = pd.DataFrame([
        _row("Adversarial-VAE", None, status=DIVERGED, error=why, trial_id="t1", val_nelbo=2272.0,
             val_loss=-121.0, mlflow_run_id=None),
        _row(ELBO_AUTHORS, 85.0, trial_id="t2", active_units=0.0, mi=0.002, latent_n=1000,
             mlflow_run_id=None),
        _row("MMD-VAE", 84.0, trial_id="t3", active_units=9.0, mi=5.1, latent_n=1000, mlflow_run_id=None),
    ])
    trials = pd.DataFrame([{"trial_id": t, "cell": t, "status": "FINISHED", "grids": "table1"}
                           for t in ("t1", "t2", "t3")])
    inputs = StudyInputs(tmp_path, {"cells": 3}, {}, trials, metrics, pd.DataFrame(), tmp_path)
    tables = [b for b in trials_section(inputs).blocks if hasattr(b, "rows")]
    by_caption = {t.caption.split(":")[0]: t for t in tables}
    gone = by_caption["Cells whose training diverged"]
    assert [r[0] for r in gone.rows] == ["Adversarial-VAE pixelcnn"]
    assert gone.rows[0][2] == "2272.00" and "543.4" in gone.rows[0][4]
    flat = by_caption["Cells whose posterior collapsed (no active unit)"]
    assert [r[1] for r in flat.rows] == [ELBO_AUTHORS]
    assert not any(t.caption.startswith("Cells whose evaluation failed") for t in tables)


def test_a_gaussian_decoders_density_has_no_coin_bound():
    """An over-fitted Gaussian decoder's validation NELBO (18,695 nats at n = 500 in the laptop
    study's Fig. 4) is the result measured, not a divergence; a non-finite one still is."""
    from pipeline.train.outcome import diverged, likelihood_of

    assert diverged({"val_nelbo": 18694.7, "val_loss": 18694.7}, likelihood="gaussian") is None
    assert diverged({"val_nelbo": 18694.7, "val_loss": 18694.7}) is not None  # bernoulli: > 543.4
    assert "is nan" in diverged({"val_nelbo": float("nan")}, likelihood="gaussian")
    assert likelihood_of('{"model": {"likelihood": "gaussian"}}') == "gaussian"
    assert likelihood_of({"model": {}}) == likelihood_of(None) == "bernoulli"


def test_a_clean_re_evaluation_clears_the_diverged_mark_in_mlflow(tmp_path):
    """A run once marked diverged (an earlier rule, or a checkpoint since retrained in place) and
    now measured is shown as evaluated: the mark goes, the status tag says EVALUATED. A real
    MLflow store (SQLite in tmp_path), no server."""
    from mlflow.tracking import MlflowClient

    from pipeline.evaluation.study import diverged_tags
    from pipeline.evaluation.tracking_log import DIVERGED_TAG, STATUS_TAG, log_evaluation
    from pipeline.infra import tracking

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp).info.run_id
    tracking.set_tags(client, run, diverged_tags("training diverged: final validation NELBO 2272"))
    assert client.get_run(run).data.tags[STATUS_TAG] == DIVERGED
    log_evaluation(client, run, {"test_nll": 90.5, "test_k": 100})
    tags = client.get_run(run).data.tags
    assert DIVERGED_TAG not in tags and tags[STATUS_TAG] == "EVALUATED"
    assert tags["infovae.eval.test_k"] == "100"
    assert client.get_run(run).data.metrics["eval_test_nll"] == 90.5
    log_evaluation(client, run, {"test_nll": 90.4})  # again: nothing to delete, no error
    assert client.get_run(run).data.metrics["eval_test_nll"] == 90.4
