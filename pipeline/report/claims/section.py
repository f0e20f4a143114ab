"""The report's first section: the paper's claims with their verdicts (pipeline.report.claims),
each linked to the section of its figure; the checks behind each verdict; the paper's reference
numbers; and how the standard errors are derived."""

from __future__ import annotations

import math

from pipeline.report.claims import rules
from pipeline.report.claims.authors_data import FIG3_SOURCE, SUPPORT
from pipeline.report.claims.statements import Claim
from pipeline.report.doc import Link, Section, Table, Text
from pipeline.report.tables import PAPER_TABLE1

REFERENCE_ANCHOR = "reference"
NOT_ABLATED = "not ablated (no ablation cell speaks to it)"
PAPER = "Zhao, Song, Ermon (2017), InfoVAE, arXiv:1706.02262"
# The paper's numbers where it gives them (typed from the paper; the figures' curves are not
# tabulated there: their values are read in the reference figures).
REFERENCE_NUMBERS = [
    *[("c1", f"test NLL of {m}, PixelCNN decoder", f"{v:.2f} nats", "Table 1")
      for m, v in PAPER_TABLE1.items()],
    ("c2", "log det Cov of ELBO's train encodings", "about 9 at 500 training images, about 2 at 50,000",
     "Fig. 4 and its text"),
    ("c2", "log det Cov of InfoVAE's train encodings", "near 0 at every training-set size", "Fig. 4"),
    ("c3", "I(x; z) with a PixelCNN decoder", "ELBO about 0; InfoVAE keeps it (no number given)", "Sec. 5.4"),
    ("c4-c6", "MMD, class mismatch, semi-supervised error vs latent dim", "drawn in Fig. 3 A, C, E; the "
     f"authors' values ({FIG3_SOURCE}) are drawn beside ours in Experiment 2", "Fig. 3"),
]
CAVEATS = (
    "Claims are stated from the paper's text and the authors' own data (their public repositories; "
    "pipeline/report/claims/authors_data.py), for the experiment they ran. Fig. 3's rows come from their "
    "PixelCNN code, whose ELBO weighs the KL 784/d per image (ELBO (784/d)); where their data contradicts "
    "a reading of the paper (Fig. 3A: their ELBO has the lowest MMD at every d) that reading is not judged, "
    "and the column \"The authors' data\" says where it supports a claim only in part."
)
STDERRS = (
    "Standard errors. Test NLL: over the test images, from the evaluation. log det Cov: sqrt(2d/(N-1)) "
    "(Gaussian-Wishart approximation, N encodings in d dims). MMD² (the unbiased U-statistic on n "
    "sampled codes and n prior samples): at most sqrt(8 MMD²/n + 8/(n(n-1))) + 2.5/n^1.5 (Hoeffding's "
    "variance, kernel bounded by 1; pipeline/report/claims/rules.py). I(x; z): at most "
    "log N / (2 sqrt N) (per-encoding terms in [0, log N], Popoviciu). Semi-supervised error: std over "
    "the R labelled draws / sqrt(R-1). Class mismatch: sqrt(2 KL/n) + (C-1)/(2n) (delta method near "
    "uniform, plus the plug-in bias). NLL differences (C1): paired over the same test images, std of the "
    "per-image differences / sqrt(n); other differences: errors added in quadrature."
)


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:+.{digits}g}"


def _se(v: float | None) -> str:
    return "unknown" if v is None or not math.isfinite(v) else f"{v:.2g}"


def claims_section(claims: list[Claim], section_titles: dict[str, str],
                   ablated: dict[str, str] | None = None) -> Section:
    """ablated: claim id -> the ablation's sentence (pipeline.report.claims.ablation), beside the verdict."""
    ablated = ablated or {}
    section = Section("claims", "Claims of the paper: verdicts")
    section.blocks.append(Text(
        "Each claim is a set of checks, inequalities between cells of the study with a margin (positive "
        "supports the claim) and its standard error, decided by rules fixed in "
        "pipeline/report/claims/statements.py "
        f"before any result was read: a check holds when its margin exceeds {rules.Z:g} standard errors, "
        f"fails when it is below -{rules.Z:g} standard errors, and is unclear in between or when its "
        "error is unknown; it is missing when a cell it needs was not evaluated. A claim is reproduced "
        "when every check holds, not reproduced when any check fails, inconclusive otherwise. The "
        "statistic is the margin of the deciding check (the one farthest on the wrong side)."))
    rows = []
    for c in claims:
        d = c.deciding
        title = section_titles.get(c.spec.anchor, c.spec.anchor)
        rows.append([f"{c.spec.id.upper()} ({c.spec.source})", c.spec.statement,
                     f"{_num(c.statistic)} {c.spec.unit}" if c.statistic is not None else "not measured",
                     _se(c.stderr), "—" if d is None else d.what, c.spec.rule, c.verdict.upper(),
                     SUPPORT.get(c.spec.id, "—"),
                     *([ablated.get(c.spec.id, NOT_ABLATED)] if ablated else []),
                     Link(title, f"#{c.spec.anchor}")])
    why = ["Why: the ablation (section Ablation)"] if ablated else []
    section.blocks.append(Table(["Claim", "The paper", "Statistic", "± s.e.", "Deciding check", "Rule",
                                 "Verdict", "The authors' data", *why, "Figure"], rows,
                                "Verdicts computed from results/eval/metrics.parquet; also in "
                                "results/metrics/claims.json (DVC metrics claims.c1.verdict, ...) and on "
                                "the sweep's MLflow run (tags claims.c1.verdict, metrics "
                                "claims_c1_statistic)."))
    section.blocks.append(Table(["Claim", "Rule in code", "Why this verdict"],
                                [[c.spec.id.upper(), c.spec.code, c.reason] for c in claims],
                                "Margins and standard errors in the claim's unit."))
    checks = [[c.spec.id.upper(), k.what, _num(k.margin), _se(k.stderr), k.outcome + (f" ({k.note})" if k.note
                                                                                   else "")]
              for c in claims for k in c.checks]
    section.blocks.append(Table(["Claim", "Check", "Margin", "± s.e.", "Outcome"], checks,
                                "Every check of every claim."))
    section.blocks.append(Text(STDERRS))
    section.blocks.append(Table(["Claim", "Quantity", "The paper's value", "Where"],
                                [[cid.upper(), q, v, Link(f"{PAPER}, {where}", f"#{REFERENCE_ANCHOR}")
                                  if where.startswith("Fig") else f"{PAPER}, {where}"]
                                 for cid, q, v, where in REFERENCE_NUMBERS],
                                "The paper's reference numbers, typed from the paper; figures link to the "
                                "authors' reference figures."))
    section.blocks.append(Text(CAVEATS, "note"))
    return section
