"""Table 1 (test NLL beside the paper's) and the Trials section (what ran, what failed, why)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.report.claims.authors_data import TABLE1
from pipeline.report.data import EVALUATED, StudyInputs
from pipeline.report.doc import Section, Table, Text, count, missing, num, run_link, source, text
from pipeline.train.outcome import COIN_NATS, DIVERGED

# Zhao et al. 2017, Table 1: test negative log-likelihood on MNIST, nats, with a PixelCNN decoder.
PAPER_TABLE1 = TABLE1  # the paper's Table 1; its ELBO is the authors' ELBO (784/d)
TABLE1_GRID = "table1"


def absent_grid(number: int, what: str, grid: str) -> Text:
    return Text(f"Experiment {number} ({what}) was not part of this sweep: no grid named '{grid}' in "
                "params.yaml (sweep.grids).", "note")


def not_evaluated(rows: pd.DataFrame) -> Text | None:
    """A note naming the cells of an experiment that have no evaluated trial, and why (FAILED:
    no usable trial; DIVERGED: trained, but learned nothing: pipeline.train.outcome)."""
    bad = rows[rows["status"] != EVALUATED]
    if bad.empty:
        return None
    items = [f"{r['cell_label']} ({status_text(r)})" for _, r in bad.iterrows()]
    return Text(f"Not evaluated, in no claim ({len(bad)} of {len(rows)} cells): " + "; ".join(items) + ".",
                "note")


def status_text(r: Any) -> str:
    """"<status>: <error>" of a row that was not evaluated."""
    return f"{text(r.get('status'), 'FAILED')}: {text(r.get('error'), 'no usable trial')}"


def collapsed(rows: pd.DataFrame) -> pd.DataFrame:
    """Evaluated cells whose posterior collapsed (no active unit): a result (the ELBO's posterior
    collapse is what claim C3 measures), named in the report and kept in every claim."""
    if "active_units" not in rows.columns or rows.empty:
        return rows.iloc[0:0]
    units = pd.to_numeric(rows["active_units"], errors="coerce")
    return rows[(rows["status"] == EVALUATED) & (units == 0)]


def setup(row: dict[str, Any], inputs: StudyInputs) -> str:
    trial = inputs.trial(row.get("trial_id"))
    epochs = inputs.sweep.get("epochs")
    done = trial.get("epochs_done")
    budget = count(epochs, "?")
    ran = f"{budget} epochs" if missing(done) else f"{count(done)}/{budget} epochs"
    return (f"{text(row.get('encoder'))}/{text(row.get('decoder'))}, d={count(row.get('latent_dim'), '?')}, "
            f"{ran}, {text(row.get('binarization'))} binarization, n={count(row.get('train_size'), '?')}")


def table1(inputs: StudyInputs) -> Section:
    section = Section("table1", "Experiment 1: test log-likelihood (Table 1)")
    if TABLE1_GRID not in inputs.grids:
        section.blocks.append(absent_grid(1, "Table 1, test log-likelihood", TABLE1_GRID))
        return section
    rows = inputs.in_grid(TABLE1_GRID)
    ui = inputs.mlflow_ui
    by_method: dict[str, list[dict[str, Any]]] = {}
    for _, r in rows.iterrows():
        by_method.setdefault(str(r["method"]), []).append(r.to_dict())
    order = list(PAPER_TABLE1) + sorted(set(by_method) - set(PAPER_TABLE1))
    body = []
    for method in order:
        paper = PAPER_TABLE1.get(method)
        for r in by_method.get(method) or [None]:
            paper_s = num(paper) if paper is not None else "—"
            if r is None:
                body.append([method, paper_s, "not in this sweep", "", "", "", "", "", ""])
                continue
            if r.get("status") != EVALUATED:
                failed = status_text(r)
                body.append([method, paper_s, failed, "", "", "", "", text(r.get("cell_label")),
                             "no usable trial" if missing(r.get("trial_id")) else text(r.get("trial_id"))])
                continue
            ours = r.get("test_nll")
            diff = num(ours - paper, signed=True) if paper is not None and not missing(ours) else "—"
            body.append([method, paper_s, num(ours), num(r.get("test_nll_stderr")), count(r.get("test_k")),
                         count(r.get("test_n")), diff, setup(r, inputs),
                         [f"{text(r.get('trial_id'))} / ", run_link(r.get("mlflow_run_id"), ui)]])
    header = ["Method", "Paper NLL (PixelCNN)", "Ours NLL", "± s.e.", "K", "Test images", "Ours − paper",
              "Setup", "Trial / MLflow run"]
    proposals = {r.get("loglik_proposal") for _, r in rows.iterrows() if not missing(r.get("test_nll"))}
    drawn = ("q(z|x) mixed half and half with N(mean(x), I) (the defensive proposal: an encoder "
             "trained without a KL term is far narrower than the posterior)" if proposals == {"defensive"}
             else "q(z|x)")
    caption = ("Test negative log-likelihood on MNIST in nats (lower is better): importance-sampled with "
               f"K samples of {drawn} per image (Burda et al.), with its standard error over the test "
               "images. "
               "The paper's numbers come from a PixelCNN decoder; Setup lists ours "
               "(encoder/decoder, latent dim, epochs trained/budget, binarization, training images).")
    section.blocks += [Table(header, body, caption)]
    note = not_evaluated(rows)
    if note:
        section.blocks.append(note)
    section.blocks.append(source([r.to_dict() for _, r in rows.iterrows()], ui=inputs.mlflow_ui))
    return section


def _status_counts(inputs: StudyInputs) -> Table:
    counts = inputs.trials["status"].value_counts().to_dict() if len(inputs.trials) else {}
    meaning = {"FINISHED": "trained for the full epoch budget",
               "KILLED": "stopped early by ASHA (a worse trial of its cell; its checkpoint is kept)",
               "FAILED": "raised an error (reason below); never chosen as a cell's best"}
    rows = [[s, str(int(counts.get(s, 0))), meaning[s]] for s in meaning]
    rows += [[str(s), str(int(n)), "unexpected status"] for s, n in counts.items() if s not in meaning]
    return Table(["Status", "Trials", "Meaning"], rows, f"{len(inputs.trials)} trials in "
                 f"{inputs.sweep.get('cells', '?')} cells.")


def trials_section(inputs: StudyInputs) -> Section:
    section = Section("trials", "Trials")
    section.blocks.append(_status_counts(inputs))
    trials = inputs.trials
    failed = trials[trials["status"] == "FAILED"] if len(trials) else trials
    ui = inputs.mlflow_ui
    if len(failed):
        rows = [[text(r.get("trial_id")), text(r.get("cell_label")), count(r.get("epochs_done"), "0"),
                 text(r.get("error"), "no reason recorded"), run_link(r.get("mlflow_run_id"), ui)]
                for _, r in failed.iterrows()]
        section.blocks.append(Table(["Trial", "Cell", "Epochs", "Error", "MLflow run"], rows,
                                    "FAILED trials and their error reason."))
    else:
        section.blocks.append(Text("No trial failed."))
    unusable = [(e.get("label", cell), e) for cell, e in inputs.best.items() if not e.get("trial_id")]
    if unusable:
        rows = [[label, str(e.get("trials", "?")), "; ".join(e.get("errors") or []) or "no reason recorded"]
                for label, e in unusable]
        section.blocks.append(Table(["Cell", "Trials", "Errors"], rows, "Cells without a usable trial "
                                    "(every trial failed): nothing to evaluate."))
    metrics = inputs.metrics
    tried = metrics[(metrics["status"] != EVALUATED) & metrics["trial_id"].notna()]
    gone = tried[tried["status"] == DIVERGED]
    if len(gone):
        rows = [[text(r.get("cell_label")), text(r.get("trial_id")), num(r.get("val_nelbo")),
                 num(r.get("val_loss")), text(r.get("error"), "no reason recorded"),
                 run_link(r.get("mlflow_run_id"), ui)] for _, r in gone.iterrows()]
        section.blocks.append(Table(
            ["Cell", "Trial", "Final val NELBO", "Final val loss", "Why", "MLflow run"], rows,
            f"Cells whose training diverged: a final validation NELBO above {COIN_NATS:.1f} nats (784 log 2, "
            "independent fair coins) or non-finite, or a non-finite validation loss. Not measured, and in no "
            "claim: each claim that needs one says so."))
    broken = tried[tried["status"] != DIVERGED]
    if len(broken):
        rows = [[text(r.get("cell_label")), text(r.get("trial_id")),
                 text(r.get("error"), "no reason recorded")] for _, r in broken.iterrows()]
        section.blocks.append(Table(["Cell", "Trial", "Error"], rows, "Cells whose evaluation failed."))
    flat = collapsed(metrics)
    if len(flat):
        rows = [[text(r.get("cell_label")), text(r.get("method")), num(r.get("mi")), num(r.get("latent_n")),
                 run_link(r.get("mlflow_run_id"), ui)] for _, r in flat.iterrows()]
        section.blocks.append(Table(
            ["Cell", "Method", "I(x;z) (nats)", "Encodings", "MLflow run"], rows,
            "Cells whose posterior collapsed (no active unit): a result, not a failure. They are in every "
            "claim and table (the ELBO's collapse with a PixelCNN decoder is what claim C3 measures)."))
    return section
