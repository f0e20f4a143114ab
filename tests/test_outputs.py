"""The evaluate stage's DVC outputs: the compact summary's stable keys and the plot files'
rows (one file per figure, only that figure's grid), from hand-made rows with known values."""

from __future__ import annotations

import csv
import json

from pipeline.evaluation.outputs import PLOTS, slug, summary, write_plots
from pipeline.evaluation.progress import EvalProgress


def _row(cell, method, grids, **kw):
    return {"cell": cell, "cell_label": cell, "method": method, "grids": grids, "status": "EVALUATED",
            "alpha": 1.0, "lambda": 100.0, "latent_dim": 5, "train_size": 1000, **kw}


ROWS = [
    _row("a", "ELBO", "table1,information_preference", test_nll=90.0, test_nll_stderr=0.5, test_k=50),
    _row("b", "MMD-VAE", "table1", test_nll=88.25, test_nll_stderr=0.4, test_prior_nll=95.0),
    _row("b2", "MMD-VAE", "table1", test_nll=87.0, test_nll_stderr=0.3),  # the lower NLL wins
    _row("c", "ELBO", "latent_dim", latent_dim=2, mmd=0.1, ss_error_100=0.3, logdet_cov=-1.0),
    _row("d", "ELBO", "latent_dim", latent_dim=5, mmd=0.2, ss_error_100=0.2, logdet_cov=-2.0),
    _row("e", "InfoVAE-mmd (alpha=0, lambda=100)", "alpha_lambda", alpha=0.0, test_nll=99.0),
    {"cell": "f", "cell_label": "f", "method": "ELBO", "grids": "table1", "status": "FAILED"},
]


def test_summary_keys_are_per_method_and_estimator(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"seconds": {"fit": 12.34}}))
    (tmp_path / "plan.json").write_text(json.dumps({"sweep_s": 10.0, "evaluate_s": 5.0}))
    s = summary(ROWS, tmp_path, 6.06)
    assert s["table1"] == {"elbo": {"test_nll": 90.0}, "mmd_vae": {"test_nll": 87.0}}  # s.e.: parquet
    assert s["cells"] == {"evaluated": 6, "failed": 1, "diverged": 0}
    assert s["time"] == {"sweep_s": 12.3, "evaluate_s": 6.1}  # projections stay in plan.json
    assert slug("beta-VAE (beta=0.5)") == "beta_vae_beta_0.5"


def test_plot_files_hold_only_their_grid(tmp_path):
    history = [{"cell": "a", "epoch": e, "val_mi": 0.5 * e, "val_mmd": 0.1} for e in (1, 2)] + \
              [{"cell": "c", "epoch": 1, "val_mi": 9.0, "val_mmd": 0.3}]
    write_plots(tmp_path / "plots", ROWS, history)
    read = {n: list(csv.DictReader(open(tmp_path / "plots" / n))) for n in PLOTS}
    assert [(r["series"], float(r["test_nll"])) for r in read["table1_nll.csv"]] == \
        [("ELBO", 90.0), ("MMD-VAE", 88.25), ("MMD-VAE", 87.0)]
    assert [(r["latent_dim"], r["mmd"]) for r in read["latent_mmd.csv"]] == [("2", "0.1"), ("5", "0.2")]
    assert {r["series"] for r in read["latent_ss_error.csv"]} == {"ELBO, 100 labels"}
    assert [(r["series"], r["epoch"], r["val_mi"]) for r in read["information_mi.csv"]] == \
        [("ELBO", "1", "0.5"), ("ELBO", "2", "1.0")]  # cell c (latent_dim grid) is not in it
    assert [(r["series"], r["val_mmd"]) for r in read["latent_mmd_training.csv"]] == \
        [("ELBO, d = 2", "0.3")]  # every latent dim's curves, named by it (cell d has no history)
    assert read["alpha_lambda_nll.csv"] == [{"series": "alpha=0", "lambda": "100.0", "test_nll": "99.0"}]
    assert read["train_size_logdet.csv"] == []  # no such grid: a header only
    assert (tmp_path / "plots" / "train_size_logdet.csv").read_text() == "series,train_size,logdet_cov\n"


class _Job:
    def __init__(self, cell):
        self.cell, self.label, self.checkpoint = cell, f"[{cell}]", f"ckpt/{cell}"


def test_evaluation_eta_adds_the_measured_overrun_to_the_plan(tmp_path):
    import io

    lines, err = [], io.StringIO()
    jobs = [_Job("x"), _Job("y"), _Job("z")]
    p = EvalProgress(jobs, {"x": 10.0, "y": 20.0, "z": 30.0}, lines.append, stream=err)
    assert p.time_left() == 60.0
    p.start(jobs[0])
    p.started["x"] -= 15.0  # as if x took 15 s: 5 s over its projection
    p.finish(jobs[0])
    assert abs(p.time_left() - 60.0) < 0.1  # (20 + 5) + (30 + 5)
    assert lines[0] == "[x]: evaluating ckpt/x (projected 0m10s)" and "projected 0m10s" in lines[1]
    p.close()
    assert "1/3 cells" in err.getvalue() and "time left" in err.getvalue()


def test_report_compares_projected_and_actual_time(tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    from pipeline.report.timing import timing_section

    (tmp_path / "evaluate.json").write_text(json.dumps({"time": {"evaluate_s": 90.0}}))
    plan = {"sweep_s": 100.0, "line": "plan: 2 cells x 1 trials"}
    eval_plan = {"evaluate_s": 60.0, "line": "evaluation plan: 2 cells to measure"}  # the stage's own
    inputs = SimpleNamespace(base=tmp_path, sweep={"plan": plan, "seconds": {"fit": 150.0}},
                             eval_plan=eval_plan, metrics=pd.DataFrame({"seconds_loglik_test": [1.0]}))
    section = timing_section(inputs, "evaluate.json")
    assert "evaluation plan: 2 cells to measure" in section.blocks[1].text
    table = section.blocks[2]
    assert table.rows == [["sweep (training)", "1m40s", "2m30s", "1.50x"],
                          ["evaluation", "1m00s", "1m30s", "1.50x"], ["total", "2m40s", "4m00s", "1.50x"]]
    assert "plan: 2 cells x 1 trials" in section.blocks[0].text
    no_plan = timing_section(SimpleNamespace(base=tmp_path, sweep={}, eval_plan=None, metrics=pd.DataFrame()))
    assert no_plan.blocks[0].kind == "note"
