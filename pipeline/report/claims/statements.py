"""The paper's claims (Zhao, Song, Ermon 2017, InfoVAE), each judged from the evaluate stage's
metrics table (results/eval/metrics.parquet: one row per grid cell) by a rule fixed in this file
before any result is read. A claim is a conjunction of checks (pipeline.report.claims.rules: margin,
standard error, the two-standard-error rule and how checks combine into a verdict).

Each claim is stated from the paper's text and the authors' own data (pipeline.report.claims.authors_data,
which also says how far that data supports it), for the experiment the authors ran: Fig. 3,
Table 1 and Sec. 5.4 with the gated PixelCNN decoder, whose "ELBO" row is trained with their
per-pixel and per-dimension loss means (ELBO (784/d): a KL weighed 784/d per image); Fig. 4 with
a Gaussian decoder on continuous MNIST and the plain ELBO.

C1 Table 1          InfoVAE variants (MMD, Stein, adversarial) have lower test NLL than the ELBO with
                    the PixelCNN decoder, MMD-VAE the lowest of all.
C2 Fig. 4           ELBO's log det Cov of the train encodings exceeds TAU at the smallest training
                    set and falls towards the largest; MMD-VAE's stays within TAU of 0 at every size.
C3 Sec. 5.4         With a PixelCNN decoder ELBO (784/d)'s I(x; z) is below one bit, MMD-VAE's above.
C4 Fig. 3A          MMD-VAE's MMD(q(z), p(z)) is at most Stein-VAE's and below Adversarial-VAE's at
                    every latent dimension (the authors' data contradicts "below ELBO's": not judged).
C5 Fig. 3E          MMD-VAE's semi-supervised error is below ELBO (784/d)'s, Stein's and
                    Adversarial's at every latent dimension.
C6 Fig. 3C          MMD-VAE's class-distribution mismatch is below ELBO (784/d)'s, Stein's and
                    Adversarial's at every latent dimension up to 20.

Thresholds. TAU = 1 nat of log-det: the volume of q(z) within a factor e of N(0, I)'s.
ONE_BIT = log 2 nats: less than one bit of I(x; z) cannot tell two halves of the data apart, more
than one bit can. Standard errors: NLL from the evaluation (over test images); the others from
pipeline.report.claims.rules (stated approximations and bounds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.report.claims import checks as cc
from pipeline.report.claims import rules
from pipeline.report.claims.checks import (
    ADV,
    C6_MAX_DIM,
    ELBO,
    ELBO_A,
    EVALUATED,
    MMD,
    STEIN,
    TAU,
    VARIANTS,
    _in_grid,
)
from pipeline.report.claims.nll import Context, row_value
from pipeline.report.claims.rules import Check, missing_check


@dataclass(frozen=True)
class Spec:
    id: str
    title: str
    statement: str
    source: str  # where in the paper
    grid: str
    anchor: str  # the report section showing the figure
    unit: str
    rule: str  # in words
    code: str  # the checks, as code
    judge: Callable[[list[dict[str, Any]], Context], list[Check]]
    methods: tuple[str, ...] = ()
    setting: str | None = None  # the grid axis the claim runs over (latent_dim, train_size)


@dataclass
class Claim:
    spec: Spec
    checks: list[Check]
    verdict: str = field(init=False)

    def __post_init__(self) -> None:
        self.verdict = rules.verdict(self.checks)

    @property
    def deciding(self) -> Check | None:
        return rules.weakest(self.checks)

    @property
    def statistic(self) -> float | None:
        c = self.deciding
        return None if c is None or c.outcome == rules.MISSING else c.margin

    @property
    def stderr(self) -> float | None:
        c = self.deciding
        return None if c is None or c.stderr is None or not math.isfinite(c.stderr) else c.stderr

    def counts(self) -> dict[str, int]:
        out = {o: 0 for o in (rules.HOLDS, rules.UNCLEAR, rules.FAILS, rules.MISSING)}
        for c in self.checks:
            out[c.outcome] += 1
        return out

    @property
    def reason(self) -> str:
        """Why the verdict: the checks that fail, else those missing or unclear (at most three)."""
        if not self.checks:
            return "no check could be formed"
        n = self.counts()
        parts = [f"{n[rules.HOLDS]} of {len(self.checks)} checks hold"]
        for outcome in (rules.FAILS, rules.MISSING, rules.UNCLEAR):
            bad = [c for c in self.checks if c.outcome == outcome]
            if bad:
                shown = "; ".join(_describe(c) for c in bad[:3]) + ("; …" if len(bad) > 3 else "")
                parts.append(f"{len(bad)} {outcome}: {shown}")
        return ". ".join(parts) + "."


def _describe(c: Check) -> str:
    if c.outcome == rules.MISSING:
        return f"{c.what} ({c.note})"
    se = "s.e. unknown" if c.stderr is None else f"± {c.stderr:.3g}"
    return f"{c.what} (margin {c.margin:+.3g} {se})"


_Z = f"{rules.Z:g}"
SPECS = (
    Spec("c1", "Table 1: InfoVAE lowers the test NLL",
         "Each InfoVAE variant (MMD, Stein, adversarial) has a lower test NLL than the ELBO with the "
         f"flexible (PixelCNN) decoder, d = 10, MMD-VAE the lowest; the ELBO is the authors' ({ELBO_A}), the "
         "per-image ELBO shown beside it in Table 1.", "Table 1", "table1", "table1", "nats",
         f"Every variant's NLL is below {ELBO_A}'s, and MMD-VAE's below Stein's and adversarial's, each by "
         f"more than {_Z} standard errors of the difference. NLL: the importance-sampled estimate, moved by "
         "the paired AIS - IS difference where AIS was measured and is the tighter bound (both over-state "
         "the NLL in expectation; claim_checks.fair_nll). The difference is paired over the test images "
         "(the same images, by index and binary pixels, for every cell): its s.e. is std(d)/sqrt(n) of "
         "the per-image differences d, the AIS shifts paired the same way (claim_checks.paired_nll); "
         "without per-image NLLs (an older results dir) the two means' errors are combined as "
         "independent, and the check says so.",
         f"all(mean(nll_i[b] - nll_i[a]) > {_Z}*std(nll_i[b] - nll_i[a])/sqrt(n) for a, b in [(MMD, ELBO_A), "
         "(Stein, ELBO_A), (Adv, ELBO_A), (MMD, Stein), (MMD, Adv)]); unpaired fallback: "
         f"nll[b] - nll[a] > {_Z}*hypot(se[a], se[b])", cc.c1_checks, (ELBO_A, *VARIANTS)),
    Spec("c2", "Fig. 4: ELBO over-disperses q(z) on small training sets",
         "ELBO's covariance log-det of the train encodings is well above 0 for small training sets and "
         "falls as the set grows, while MMD-InfoVAE's stays near 0 at every size (the authors' experiment: "
         "a Gaussian decoder on continuous MNIST, z = 5, the plain ELBO).", "Fig. 4", "train_size",
         "train-size", "nats of log det",
         f"ELBO's log-det at the smallest set exceeds {TAU:g} and its value at the largest set; MMD-VAE's "
         f"|log-det| is below {TAU:g} at every size; each by {_Z} s.e. (s.e. = sqrt(2d/(N-1))).",
         f"ld[ELBO, n_min] - {TAU:g} > {_Z}*se and ld[ELBO, n_min] - ld[ELBO, n_max] > {_Z}*se_diff and "
         f"all({TAU:g} - abs(ld[MMD, n]) > {_Z}*se for n in sizes)", cc.c2_checks, (ELBO, MMD), "train_size"),
    Spec("c3", "Information preference: the ELBO ignores z with a PixelCNN, MMD-VAE does not",
         f"With the PixelCNN decoder (d = 10) the authors' ELBO ({ELBO_A}) ends with I(x;z) near 0 while "
         "MMD-InfoVAE's code carries information.", "Sec. 5.4", "information_preference",
         "information-preference", "nats",
         f"{ELBO_A}'s I(x;z) is below log 2 (one bit) and MMD-VAE's above it, each by {_Z} s.e. "
         "(s.e. <= log N / (2 sqrt N), N the test encodings).",
         f"log(2) - mi[ELBO_A] > {_Z}*se and mi[MMD] - log(2) > {_Z}*se", cc.c3_checks, (ELBO_A, MMD)),
    Spec("c4", "Fig. 3A: MMD-VAE's q(z) is the closest to the prior of the InfoVAE variants",
         "With the PixelCNN decoder, MMD-InfoVAE's MMD(q(z), p(z)) is at most Stein-VAE's and below "
         "Adversarial-VAE's at every latent dimension.", "Fig. 3A", "latent_dim", "latent-dim", "MMD²",
         "At every latent dim, MMD-VAE's MMD (unbiased, on the evaluation's encodings) is at most "
         f"Stein-VAE's (not above it by {_Z} s.e.) and below Adversarial-VAE's by {_Z} s.e.",
         f"all(mmd[Stein, d] - mmd[MMD, d] >= 0 and mmd[Adv, d] - mmd[MMD, d] > {_Z}*se for d in dims)",
         cc.c4_checks, VARIANTS, "latent_dim"),
    Spec("c5", "Fig. 3E: MMD-VAE's code is the most useful for classification",
         f"With the PixelCNN decoder, MMD-InfoVAE's semi-supervised error (an RBF SVM on sampled z) is below "
         f"{ELBO_A}'s, Stein-VAE's and Adversarial-VAE's at every latent dimension.", "Fig. 3E",
         "latent_dim", "latent-dim", "error rate",
         f"At every latent dim and labelled-set size, MMD-VAE's error is below each other row's by {_Z} s.e. "
         "(s.e. = std over the labelled draws / sqrt(R-1), added in quadrature).",
         f"all(err[b, d, n] - err[MMD, d, n] > {_Z}*se for b in (ELBO_A, Stein, Adv) for d in dims "
         "for n in labels)", cc.c5_checks, (MMD, ELBO_A, STEIN, ADV), "latent_dim"),
    Spec("c6", "Fig. 3C: MMD-VAE's samples cover the classes best",
         f"With the PixelCNN decoder, the class-distribution mismatch of MMD-InfoVAE's samples is below "
         f"{ELBO_A}'s, Stein-VAE's and Adversarial-VAE's at every latent dimension up to {C6_MAX_DIM}.",
         "Fig. 3C", "latent_dim", "latent-dim", "nats",
         f"At every latent dim <= {C6_MAX_DIM}, MMD-VAE's mismatch is below each other row's by {_Z} s.e. "
         "(s.e. per cell: sqrt(2 KL/n) + 9/(2n)).",
         f"all(cm[b, d] - cm[MMD, d] > {_Z}*se for b in (ELBO_A, Stein, Adv) for d in dims if d <= "
         f"{C6_MAX_DIM})", cc.c6_checks, (MMD, ELBO_A, STEIN, ADV), "latent_dim"),
)


def evaluate_claims(metrics: pd.DataFrame, history: pd.DataFrame | None = None,
                    repeats: int | None = None, per_image: pd.DataFrame | None = None) -> list[Claim]:
    """Every claim judged from metrics.parquet's rows (history.parquet is not needed by the current
    rules: each reads the final model's test metrics). repeats: evaluate.semisupervised_repeats,
    used where a row does not record ss_repeats; per_image: per_image_nll.parquet (C1's paired
    differences; None: judged unpaired)."""
    ctx = Context(repeats, per_image)
    out = []
    for spec in SPECS:
        rows = _in_grid(metrics, spec.grid)
        out.append(Claim(spec, spec.judge(rows, ctx) + _unplaced(rows, spec)))
    return out


def _unplaced(rows: list[dict[str, Any]], spec: Spec) -> list[Check]:
    """A cell of the claim's methods that was not evaluated and whose row does not say where on the
    claim's axis it sits (a failed cell's row may carry its method only): the claim cannot know
    which of its checks it would have changed, so it is missing."""
    if not spec.setting:
        return []
    return [missing_check(f"{r.get('method')}: {r.get('cell_label') or r.get('cell')}",
                          f"{r.get('status')}: {r.get('error') or 'not evaluated'}")
            for r in rows if r.get("method") in spec.methods and r.get("status") != EVALUATED
            and row_value(r, spec.setting) is None]


def _number(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def dvc_metrics(claims: list[Claim]) -> dict[str, Any]:
    """Stable keys for `dvc metrics show`: claims.c1.verdict and claims.c1.statistic per claim,
    so that `dvc exp show` compares experiments in a terminal's width; the statistic's standard
    error and every check are in the report and on the sweep's parent MLflow run."""
    return {"claims": {c.spec.id: {"verdict": c.verdict, "statistic": _number(c.statistic)}
                       for c in claims}}


def mlflow_payload(claims: list[Claim]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics claims_c1_statistic/..._stderr, tags claims.c1.verdict) for the sweep's parent run."""
    metrics, tags = {}, {}
    for c in claims:
        for key, v in (("statistic", c.statistic), ("stderr", c.stderr)):
            if _number(v) is not None:
                metrics[f"claims_{c.spec.id}_{key}"] = float(v)
        tags[f"claims.{c.spec.id}.verdict"] = c.verdict
    return metrics, tags
