"""The checks of each claim of pipeline.report.claims, from the metrics table's rows of the claim's
grid: which cells a claim compares, which metric and which standard error (pipeline.report.claims.rules).
A cell that is absent, failed, or lacks the metric gives a missing check, with the reason."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from pipeline.params.vocab import ELBO_AUTHORS
from pipeline.report.claims import rules
from pipeline.report.claims.nll import Context, fair_nll, paired_nll
from pipeline.report.claims.nll import row_value as _val
from pipeline.report.claims.rules import Check, less, missing_check

EVALUATED = "EVALUATED"
TAU = 1.0  # nats of log det: see pipeline.report.claims
ONE_BIT = math.log(2.0)
ELBO, UNREG, MMD, STEIN, ADV = "ELBO", "Unregularized", "MMD-VAE", "Stein-VAE", "Adversarial-VAE"
ELBO_A = ELBO_AUTHORS  # the ELBO of the authors' PixelCNN code: KL weighed 784/d per image
NO_CELL = "no PixelCNN cell in the grid"
C6_MAX_DIM = 20  # the authors' Fig. 3C has MMD-VAE lowest at d = 2..20 only
VARIANTS = (MMD, STEIN, ADV)
FLEXIBLE = "pixelcnn"


# ---- selecting the cells ----------------------------------------------------------------------

def _in_grid(metrics: pd.DataFrame, grid: str) -> list[dict[str, Any]]:
    if "grids" not in metrics.columns:
        return []
    return [r.to_dict() for _, r in metrics.iterrows() if grid in str(r["grids"]).split(",")]


def _find(rows: list[dict[str, Any]], method: str, decoder: str | None = None,
          **match: Any) -> tuple[dict[str, Any] | None, str]:
    """The evaluated cell of a method (and settings), or None with the reason it is not there."""
    mine = [r for r in rows if r.get("method") == method
            and all(_val(r, k) == float(v) for k, v in match.items())]
    ok = [r for r in mine if r.get("status") == EVALUATED]
    if decoder:
        wrong = [r for r in ok if r.get("decoder") != decoder]
        ok = [r for r in ok if r.get("decoder") == decoder]
        if not ok and wrong:
            return None, f"decoder {wrong[0].get('decoder')}, the claim needs {decoder}"
    if ok:
        return ok[0], ""
    if mine:
        err = mine[0].get("error")
        return None, f"{mine[0].get('status')}: {err}" if isinstance(err, str) and err else "not evaluated"
    return None, "not in the sweep's grid"


def _where(**match: Any) -> str:
    names = {"latent_dim": "d", "train_size": "n"}
    return " at " + ", ".join(f"{names.get(k, k)}={v:,}" for k, v in match.items()) if match else ""


def _settings(rows: list[dict[str, Any]], methods: tuple[str, ...], key: str) -> list[int]:
    return sorted({int(v) for r in rows if r.get("method") in methods and (v := _val(r, key)) is not None})


# ---- the claims' checks -----------------------------------------------------------------------

def _nll(rows, method):
    r, why = _find(rows, method, FLEXIBLE)
    nll, se, _ = fair_nll(r)
    return r, why, nll, se


def _unpaired(a: str, na, sa, b: str, nb, sb, why: str) -> Check:
    c = less(f"NLL({a})", na, sa, f"NLL({b})", nb, sb)
    return Check(f"{c.what} [unpaired: {why}]", c.margin, c.stderr, c.strict)


def c1_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    """NLL(a) < NLL(b) for each pair: paired over the test images (paired_nll) when the evaluate
    stage kept per-image NLLs for both cells on the same images; otherwise the unpaired rule
    (rules.less on fair_nll's means, errors combined as independent: conservative), saying why."""
    got = {m: _nll(rows, m) for m in (ELBO_A, *VARIANTS)}
    pairs = [(v, ELBO_A) for v in VARIANTS] + [(MMD, v) for v in VARIANTS if v != MMD]
    out = []
    for a, b in pairs:
        ra, wa, na, sa = got[a]
        rb, wb, nb, sb = got[b]
        what = f"NLL({a}) < NLL({b})"
        if ra is None or rb is None:
            out.append(missing_check(what, f"{a}: {wa}" if ra is None else f"{b}: {wb}"))
        elif na is None or nb is None:
            out.append(less(f"NLL({a})", na, sa, f"NLL({b})", nb, sb))  # missing: not measured
        elif ctx.per_image is None:
            out.append(_unpaired(a, na, sa, b, nb, sb, "no per-image NLLs (an older results dir)"))
        else:
            try:
                margin, se, n = paired_nll(ra, rb, ctx)
            except rules.PairingError as err:
                out.append(_unpaired(a, na, sa, b, nb, sb, str(err)))
                continue
            out.append(Check(f"{what} [paired over {n:,} test images]", margin, se))
    return out


def _logdet(row):
    """log det Cov of a cell's train encodings and its standard error."""
    se = rules.logdet_stderr(_val(row, "latent_dim"), _val(row, "train_latent_n"))
    return _val(row, "train_logdet_cov"), se


def c2_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    out = []
    sizes = _settings(rows, (ELBO,), "train_size")
    if not sizes:
        out.append(missing_check("ELBO's log det Cov over training-set sizes", "no ELBO cell in the grid"))
    else:
        small, _ = _find(rows, ELBO, train_size=sizes[0])
        x, s = _logdet(small)
        what = f"log det Cov of ELBO > {TAU:g}{_where(train_size=sizes[0])}"
        out.append(missing_check(what, "not evaluated") if x is None else Check(what, x - TAU, s))
        if len(sizes) < 2:
            out.append(missing_check("ELBO's log det Cov falls as the set grows", "one training-set size"))
        else:
            big, _ = _find(rows, ELBO, train_size=sizes[-1])
            xb, sb = _logdet(big)
            out.append(less(f"log det Cov of ELBO{_where(train_size=sizes[-1])}", xb, sb,
                            f"that{_where(train_size=sizes[0])}", x, s))
    mmd_sizes = _settings(rows, (MMD,), "train_size") or sizes
    if not mmd_sizes:
        out.append(missing_check(f"|log det Cov| of {MMD} < {TAU:g}", "no MMD-VAE cell in the grid"))
    for n in mmd_sizes:
        r, why = _find(rows, MMD, train_size=n)
        x, s = _logdet(r)
        what = f"|log det Cov| of {MMD} < {TAU:g}{_where(train_size=n)}"
        out.append(missing_check(what, why or "not measured") if x is None else Check(what, TAU - abs(x), s))
    return out


def c3_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    out = []
    for method, uses_code in ((ELBO_A, False), (MMD, True)):
        r, why = _find(rows, method, FLEXIBLE)
        mi, n = _val(r, "mi"), _val(r, "latent_n")
        what = f"I(x;z) of {method} > log 2" if uses_code else f"I(x;z) of {method} < log 2"
        if r is None or mi is None or not n:
            out.append(missing_check(what, why or "I(x;z) or its N not measured"))
            continue
        margin = mi - ONE_BIT if uses_code else ONE_BIT - mi
        out.append(Check(what + f" (N={int(n):,})", margin, rules.mi_stderr(int(n))))
    return out


def _per_dim(rows, methods, key, stderr, max_dim: int | None = None):
    """dims -> (row, why missing, value, s.e.) per method, the PixelCNN cells of each latent dim
    (at most max_dim)."""
    dims = [d for d in _settings(rows, methods, "latent_dim") if max_dim is None or d <= max_dim]
    table = {}
    for d in dims:
        for m in methods:
            r, why = _find(rows, m, FLEXIBLE, latent_dim=d)
            table[m, d] = (r, why, _val(r, key), stderr(r))
    return dims, table


def _below(dims, table, a: str, others: tuple[str, ...], metric: str, strict: dict[str, bool]) -> list[Check]:
    """metric[a] < (or <=) metric[b] at every d, for each b in others."""
    out = []
    for d in dims:
        for b in others:
            (_, wa, va, sa), (_, wb, vb, sb) = table[a, d], table[b, d]
            op = "<" if strict[b] else "≤"
            that = f"{metric} of {b}{_where(latent_dim=d)}"
            if va is None or vb is None:
                out.append(missing_check(f"{metric} of {a} {op} {that}",
                                         f"{a}: {wa or 'not measured'}" if va is None else
                                         f"{b}: {wb or 'not measured'}"))
            else:
                out.append(less(f"{metric} of {a}", va, sa, that, vb, sb, strict=strict[b]))
    return out


def c4_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    """MMD-VAE's MMD(q, p) at most Stein-VAE's and below Adversarial-VAE's at every latent dim (the
    authors' Fig. 3A has MMD = Stein at d = 2, hence the non-strict check against Stein)."""
    dims, t = _per_dim(rows, (MMD, STEIN, ADV), "mmd",
                       lambda r: rules.mmd_stderr(_val(r, "mmd"), _val(r, "mmd_n") or _val(r, "latent_n")))
    out = _below(dims, t, MMD, (STEIN, ADV), "MMD", {STEIN: False, ADV: True})
    return out or [missing_check(f"MMD of {MMD} vs Stein-VAE, Adversarial-VAE", NO_CELL)]


def label_counts(rows: list[dict[str, Any]]) -> list[int]:
    keys = {k for r in rows for k in r}
    return sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"ss_error_(\d+)", k)))


def c5_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    """MMD-VAE's semi-supervised error below ELBO (784/d)'s, Stein-VAE's and Adversarial-VAE's at
    every latent dim and every labelled-set size measured."""
    counts = label_counts(rows)
    if not counts:
        return [missing_check(f"semi-supervised error of {MMD} below the other rows'", "not measured")]
    out = []
    for n in counts:
        def stderr(r, n=n):
            reps = _val(r, "ss_repeats") or ctx.repeats
            return rules.semisupervised_stderr(_val(r, f"ss_error_{n}_std"), int(reps) if reps else None)
        dims, t = _per_dim(rows, (MMD, ELBO_A, STEIN, ADV), f"ss_error_{n}", stderr)
        out += _below(dims, t, MMD, (ELBO_A, STEIN, ADV), f"error ({n} labels)",
                      {ELBO_A: True, STEIN: True, ADV: True})
    return out or [missing_check(f"semi-supervised error of {MMD}", NO_CELL)]


def c6_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    """MMD-VAE's class-distribution mismatch below ELBO (784/d)'s, Stein-VAE's and Adversarial-VAE's
    at every latent dim up to C6_MAX_DIM (where the authors' Fig. 3C has it lowest)."""
    dims, t = _per_dim(rows, (MMD, ELBO_A, STEIN, ADV), "class_mismatch",
                       lambda r: rules.mismatch_stderr(_val(r, "class_mismatch"), _val(r, "class_samples")),
                       max_dim=C6_MAX_DIM)
    out = _below(dims, t, MMD, (ELBO_A, STEIN, ADV), "class mismatch", {ELBO_A: True, STEIN: True, ADV: True})
    return out or [missing_check(f"class mismatch of {MMD} at d <= {C6_MAX_DIM}", NO_CELL)]
