"""The alpha-lambda maps (the authors' later sweep, alpha in {-1, 0, 1} x lambda in {1e2, 1e3, 1e4}):
test NLL, mutual information and reconstruction of every cell, one row of heatmaps per divergence."""

from __future__ import annotations

from typing import Any

from pipeline.params.report import ReportParams
from pipeline.report.data import EVALUATED, StudyInputs
from pipeline.report.doc import Figure, Section, Text, missing, source
from pipeline.report.figures import Heatmap, heatmap_figure
from pipeline.report.tables import absent_grid, not_evaluated
from pipeline.train.outcome import DIVERGED

ALPHA_LAMBDA_GRID = "alpha_lambda"


def _recon(inputs: StudyInputs, row: dict[str, Any]) -> float | None:
    """Validation reconstruction term, nats: the history's last epoch, else the trials table."""
    v = inputs.last_epoch(row["cell"], "val_recon")
    if v is None:
        v = inputs.trial(row.get("trial_id")).get("val_recon")
    return None if missing(v) else float(v)


METRICS = (  # (title, value of a row, lower is better, digits)
    ("test NLL, nats (lower is better)", lambda inputs, r: r.get("test_nll"), True, 1),
    ("mutual information I_q(x; z), nats (test)", lambda inputs, r: r.get("mi"), False, 2),
    ("reconstruction -E log p(x|z), nats (val.)", _recon, True, 1),
)


def _maps(inputs: StudyInputs, rows: list[dict[str, Any]]) -> list[Heatmap]:
    alphas = sorted({float(a) for r in rows if (a := inputs.setting(r, "alpha")) is not None})
    lambdas = sorted({float(lam) for r in rows if (lam := inputs.setting(r, "lambda")) is not None})
    maps = []
    for title, get, lower, digits in METRICS:
        values: list[list[float | None]] = [[None] * len(lambdas) for _ in alphas]
        notes: dict[tuple[int, int], str] = {}
        for r in rows:
            a, lam = inputs.setting(r, "alpha"), inputs.setting(r, "lambda")
            if a is None or lam is None:
                continue
            i, j = alphas.index(float(a)), lambdas.index(float(lam))
            if r.get("status") != EVALUATED:
                notes[(i, j)] = "diverged" if r.get("status") == DIVERGED else "failed"
                continue
            v = get(inputs, r)
            if missing(v):
                notes[(i, j)] = "not measured"
            else:
                values[i][j] = float(v)
        maps.append(Heatmap(title, [f"{a:g}" for a in alphas], [f"{lam:g}" for lam in lambdas], values, notes,
                            lower, digits))
    return maps


def alpha_lambda_section(inputs: StudyInputs, cfg: ReportParams) -> Section:
    section = Section("alpha-lambda", "Experiment 5: alpha–lambda maps (the authors' later sweep)")
    if ALPHA_LAMBDA_GRID not in inputs.grids:
        section.blocks.append(absent_grid(5, "alpha-lambda maps", ALPHA_LAMBDA_GRID))
        return section
    frame = inputs.in_grid(ALPHA_LAMBDA_GRID)
    rows = [r.to_dict() for _, r in frame.iterrows()]
    if not rows:
        section.blocks.append(Text("Experiment 5 (alpha-lambda maps): grid 'alpha_lambda' has no cells in "
                                   "metrics.parquet.", "note"))
        return section
    by_div: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_div.setdefault(str(inputs.setting(r, "divergence") or "unknown"), []).append(r)
    for div, group in sorted(by_div.items()):
        png = heatmap_figure(_maps(inputs, group), "alpha", "lambda (log-spaced)", cfg.dpi)
        caption = (f"Divergence {div}: the best trial of every (alpha, lambda) cell. Rows: alpha; columns: "
                   "lambda, log-spaced. Left: importance-sampled test negative log-likelihood; middle: "
                   "mutual information between x and z on the test encodings; right: the reconstruction "
                   "term of the objective on the validation set at the last epoch. Brighter is better in "
                   "every map; grey: failed or not measured. alpha=1 is the paper's MMD-VAE (no KL term); "
                   "alpha=0, lambda=1 would be the ELBO.")
        section.blocks.append(Figure(f"alpha_lambda_{div}", png, caption, title=f"alpha-lambda maps, {div}"))
    note = not_evaluated(frame)
    if note:
        section.blocks.append(note)
    section.blocks.append(source(rows, ui=inputs.mlflow_ui))
    return section
