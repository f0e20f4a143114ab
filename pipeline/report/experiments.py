"""The paper's figures, one section per experiment (grid): metrics vs latent dimension (Fig. 3),
covariance log-det vs training-set size (Fig. 4), mutual information with a PixelCNN decoder
(Sec. 5.4), and the alpha-lambda maps of the authors' later sweep."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipeline.params.report import ReportParams
from pipeline.report.claims import authors_data
from pipeline.report.claims.section import REFERENCE_ANCHOR
from pipeline.report.data import StudyInputs, column
from pipeline.report.doc import Figure, Inline, Link, Section, Table, Text, count, missing, num, source, text
from pipeline.report.figures import STYLES, Line, Panel, method_order, palette, panel_figure
from pipeline.report.tables import absent_grid, not_evaluated

LATENT_GRID, SIZE_GRID, INFO_GRID = "latent_dim", "train_size", "information_preference"
REFERENCE = "in Reference figures below"  # pipeline.report.reference ships them beside the report


def _linked(caption: str) -> Inline:
    """The caption with its mention of the reference figures as a link to their section."""
    if REFERENCE not in caption:
        return caption
    before, after = caption.split(REFERENCE, 1)
    return [before, "in ", Link("Reference figures", f"#{REFERENCE_ANCHOR}"), " below", after]


MI_LINEAR = 1e-3  # nats: the MI axis is linear below this, logarithmic above (symlog)


def _lines(rows: pd.DataFrame, x: str, y: str, colors: dict[str, str], err: str | None = None,
           style: str = "-") -> list[Line]:
    """One line per method: y against x over the method's cells, missing points left out."""
    out = []
    for method in method_order(list(rows["method"].unique())):
        sub = rows[rows["method"] == method]
        errs = column(sub, err) if err else [None] * len(sub)
        pts = sorted(((a, b, e) for a, b, e in zip(column(sub, x), column(sub, y), errs)
                      if a is not None and b is not None), key=lambda p: p[0])
        if pts:
            yerr = [0.0 if e is None else float(e) for _, _, e in pts] if err else None
            out.append(Line(method, [float(p[0]) for p in pts], [float(p[1]) for p in pts],
                            colors[method], style, yerr))
    return out


def _authors_fig3(metric: str, colors: dict[str, str]) -> list[Line]:
    """The authors' Fig. 3 curves of a panel, one per method they drew
    (pipeline.report.claims.authors_data)."""
    out = []
    for method in authors_data.FIG3.get(metric, {}):
        x, y = authors_data.fig3_line(metric, method)
        out.append(Line(method, x, y, colors.get(method, "0.5"), authors=True))
    return out


def _curves(inputs: StudyInputs, rows: pd.DataFrame, key: str, colors: dict[str, str]) -> list[Line]:
    """One line per cell: a history metric against the epoch."""
    out = []
    for _, r in rows.iterrows():
        h = inputs.history_of(r["cell"])
        if key in h.columns:
            h = h[h[key].notna()]
            if len(h):
                method = str(r["method"])
                out.append(Line(method, h["epoch"].astype(float).tolist(), h[key].astype(float).tolist(),
                                colors[method]))
    return out


def _start(inputs: StudyInputs, sid: str, title: str, number: int, what: str,
           grid: str) -> tuple[Section, pd.DataFrame | None]:
    """The section, and the grid's evaluated cells; None (with a note) when there are none."""
    section = Section(sid, title)
    if grid not in inputs.grids:
        section.blocks.append(absent_grid(number, what, grid))
        return section, None
    rows = inputs.evaluated(grid)
    if rows.empty:
        section.blocks.append(Text(f"Experiment {number} ({what}): grid '{grid}' is in the sweep but none of "
                                   f"its {len(inputs.in_grid(grid))} cells has an evaluated trial.", "note"))
    note = not_evaluated(inputs.in_grid(grid))
    if note:
        section.blocks.append(note)
    return section, (None if rows.empty else rows)


def latent_dim_section(inputs: StudyInputs, cfg: ReportParams) -> Section:
    section, rows = _start(inputs, "latent-dim", "Experiment 2: metrics vs latent dimension (Fig. 3 A–E)",
                           2, "metrics vs latent dimension", LATENT_GRID)
    if rows is None:
        return section
    colors = palette(list(rows["method"].unique()) + [m for m in authors_data.FIG3["ss_error_1000"]])
    dims = sorted({int(d) for d in column(rows, "latent_dim") if d is not None})
    shown = sorted(set(dims) | set(authors_data.FIG3_DIMS))
    common: dict[str, Any] = {"xlabel": "latent dimension", "logx": True, "xticks": shown}
    at = cfg.curve_latent_dim if cfg.curve_latent_dim in dims or not dims else max(dims)
    at_rows = rows[[d == at for d in column(rows, "latent_dim")]]
    counts = inputs.label_counts()
    panels = [
        Panel("(A) MMD between q(z) and p(z)", ylabel="MMD (test encodings)", logy=True,
              lines=_lines(rows, "latent_dim", "mmd", colors) + _authors_fig3("mmd", colors), **common),
        Panel("(B) log det of the covariance of q(z)", ylabel="log det Cov (0 for N(0, I))",
              lines=_lines(rows, "latent_dim", "logdet_cov", colors) + _authors_fig3("logdet_cov", colors),
              **common),
        Panel("(C) class-distribution mismatch", ylabel="KL(uniform || classes), nats",
              lines=_lines(rows, "latent_dim", "class_mismatch", colors)
              + _authors_fig3("class_mismatch", colors), **common),
        Panel(f"(D) MMD over training (d={at})", "epoch", "MMD (validation encodings)", logy=True,
              integer_x=True, lines=_curves(inputs, at_rows, "val_mmd", colors)),
        # linear: the errors span a fraction of a decade (e.g. 0.70-0.80), where a log axis has no labels
        Panel("(E) semi-supervised error", ylabel="test error rate (lower is better)",
              lines=[ln for i, n in enumerate(counts) for ln in _lines(
                  rows, "latent_dim", f"ss_error_{n}", colors, f"ss_error_{n}_std", STYLES[i % 4])]
              + _authors_fig3("ss_error_1000", colors),
              styles={STYLES[i % 4]: f"{n} labels" for i, n in enumerate(counts)}, **common),
    ]
    styles = " and ".join(f"{n} ({'solid dashed dotted dash-dotted'.split()[i % 4]})"
                          for i, n in enumerate(counts)) or "(not measured)"
    caption = ("The best trial of each cell of grid 'latent_dim', against the latent dimension (the "
               f"authors' Fig. 3, {REFERENCE}). (A) MMD between the test "
               "encodings q(z) and prior samples (lower: closer to the prior). (B) log-determinant of the "
               "covariance of the test encodings: 0 for N(0, I); the authors' panel draws this axis "
               "inverted. (C) class mismatch of generated samples, KL(uniform || predicted class "
               f"frequencies) in nats (lower is better). (D) MMD on validation encodings after every epoch, "
               f"latent dim {at} (the authors plot iterations). (E) error of an RBF SVM on the posterior "
               f"means with {styles} labelled training images, mean ± std over repeated draws (lower is "
               "better). Dotted lines with x markers: the authors' values (" + authors_data.FIG3_SOURCE + "; "
               "their ELBO row is ELBO (784/d), panel E with 1000 labels).")
    gaps = [p.title.split(")")[0] + ")" for p in panels if not [ln for ln in p.lines if not ln.authors]]
    if gaps:
        caption += f" Not measured for any cell: {', '.join(gaps)}."
    section.blocks.append(Figure("latent_dim", panel_figure(panels, 3, cfg.dpi), _linked(caption),
                                 title="Metrics vs latent dimension, panels A-E"))
    section.blocks.append(source([r.to_dict() for _, r in rows.iterrows()], ui=inputs.mlflow_ui))
    return section


def _trend(x: list[float], y: list[float]) -> str:
    if len(x) == 1:
        return f"{y[0]:.2f} at n={x[0]:,.0f}"
    return f"{y[0]:.2f} at n={x[0]:,.0f} to {y[-1]:.2f} at n={x[-1]:,.0f}"


def train_size_section(inputs: StudyInputs, cfg: ReportParams) -> Section:
    what = "covariance log-det vs training-set size"
    title = "Experiment 3: covariance log-det vs training-set size (Fig. 4)"
    section, rows = _start(inputs, "train-size", title, 3, what, SIZE_GRID)
    if rows is None:
        return section
    colors = palette(list(rows["method"].unique()) + list(authors_data.FIG4))
    train = _lines(rows, "train_size", "train_logdet_cov", colors, style="-")
    test = _lines(rows, "train_size", "logdet_cov", colors, style="--")
    theirs = [Line(m, *authors_data.fig4_line(m, "train"), colors[m], authors=True)
              for m in authors_data.FIG4]
    panel = Panel("log det of the covariance of q(z)", "number of training images (log scale)",
                  "log det Cov[q(z)] (0 for N(0, I))", train + test + theirs, logx=True,
                  xticks=sorted({float(v) for v in column(rows, "train_size") if v is not None}
                                | {float(n) for n in authors_data.FIG4_SIZES}),
                  styles={"-": "train encodings", "--": "test encodings"}, hlines=[(0.0, "N(0, I)")])
    ours = []
    for method in method_order(list(rows["method"].unique())):
        trends = [f"{split} {_trend(ln.x, ln.y)}" for split, lines in (("train", train), ("test", test))
                  for ln in lines if ln.label == method]
        ours.append(f"{method} " + ", ".join(trends or ["not measured"]))
    caption = ("Log-determinant of the covariance of the encodings of train (solid) and test (dashed) images "
               "against the number of training images, one colour per method (the authors' Fig. 4, "
               f"{REFERENCE}). Paper's finding: ELBO over-estimates the "
               "variance, a log-det of about 9 at 500 training samples down to 2 at 50k, while InfoVAE stays "
               "near 0. Ours: " + ("; ".join(ours) if ours else "not measured") + ". Dotted lines with x "
               f"markers: the authors' train-encoding values ({authors_data.FIG4_SOURCE}; a Gaussian decoder "
               "on continuous MNIST, z = 5).")
    if "train_logdet_cov" not in inputs.metrics.columns or not train:
        caption += (" The train-split log-det was not measured (no train_logdet_cov in metrics.parquet: "
                    "an older evaluation).")
    png = panel_figure([panel], 1, cfg.dpi, 6.0, 4.0)
    section.blocks.append(Figure("logdet_vs_train_size", png, _linked(caption),
                                 title="Covariance log-det vs training-set size"))
    section.blocks.append(source([r.to_dict() for _, r in rows.iterrows()], ui=inputs.mlflow_ui))
    return section


def _diagnostics_n(inputs: StudyInputs, rows: pd.DataFrame) -> int | None:
    sizes = {inputs.spec(t).get("train", {}).get("diagnostics_size") for t in column(rows, "trial_id")}
    sizes.discard(None)
    return sizes.pop() if len(sizes) == 1 else None


def information_section(inputs: StudyInputs, cfg: ReportParams) -> Section:
    what = "mutual information with a PixelCNN decoder"
    section, rows = _start(inputs, "information-preference",
                           "Experiment 4: information preference (mutual information over training)", 4, what,
                           INFO_GRID)
    if rows is None:
        return section
    colors = palette(list(rows["method"].unique()))
    n = _diagnostics_n(inputs, rows)
    bound = [(math.log(n), f"log N = {math.log(n):.2f}")] if n and n > 1 else []
    panel = Panel("mutual information I_q(x; z) during training", "epoch",
                  f"I_q(x; z), nats (validation; linear below {MI_LINEAR:g}, log above)",
                  _curves(inputs, rows, "val_mi", colors), hlines=bound, integer_x=True,
                  empty="val_mi not measured (train.diagnostics_size = 0)", symlog=MI_LINEAR)
    size = f"N = {n:,} validation encodings (train.diagnostics_size)" if n else "N validation encodings"
    caption = ("Mutual information between x and z, estimated after every epoch on " + size + " as "
               "mean_i [log q(z_i|x_i) - log (1/N) sum_j q(z_i|x_j)]; the estimate is bounded by log N "
               f"(dotted). The y axis is symmetric-logarithmic (linear below {MI_LINEAR:g} nats) so that "
               "curves near 0 and near the bound are both readable. Paper's finding (Sec. 5.4): with a "
               "PixelCNN decoder ELBO's mutual information falls to about 0 (the decoder models the images "
               "without the code) while InfoVAE keeps it.")
    png = panel_figure([panel], 1, cfg.dpi, 6.0, 4.0)
    section.blocks.append(Figure("mutual_information", png, caption, title="Mutual information in training"))
    body, sizes = [], set()
    for _, r in rows.iterrows():
        n_test = r.get("latent_n")
        bound_s = "not measured" if missing(n_test) or n_test < 2 else f"{math.log(n_test):.2f}"
        if not missing(n_test):
            sizes.add(int(n_test))
        body.append([str(r["method"]), text(r.get("decoder")), num(inputs.last_epoch(r["cell"], "val_mi"), 3),
                     num(r.get("mi"), 3), count(n_test), bound_s, count(r.get("active_units")),
                     text(r.get("trial_id"))])
    same = (f"; N = {sizes.pop():,} for every cell here" if len(sizes) == 1 else "")
    section.blocks.append(Table(["Method", "Decoder", "MI, last epoch (val.)", "MI (test)",
                                 "N (test encodings)", "Bound log N", "Active units", "Trial"], body,
                                "Mutual information in nats; the test value is bounded by log N, N the test "
                                f"encodings it was estimated on (evaluate.latent_size){same}."))
    if any(str(d) != "pixelcnn" for d in column(rows, "decoder")):
        section.blocks.append(Text("Some of these cells do not use a PixelCNN decoder: the paper's effect "
                                   "needs a flexible (autoregressive) decoder.", "note"))
    section.blocks.append(source([r.to_dict() for _, r in rows.iterrows()], ui=inputs.mlflow_ui))
    return section

