"""The checks of each claim of pipeline.report.claims, from the metrics table's rows of the claim's
grid: which cells a claim compares, which metric and which standard error (pipeline.report.rules).
A cell that is absent, failed, or lacks the metric gives a missing check, with the reason."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from pipeline.report import rules
from pipeline.report.rules import Check, less, missing_check

EVALUATED = "EVALUATED"
TAU = 1.0  # nats of log det: see pipeline.report.claims
ONE_BIT = math.log(2.0)
ELBO, UNREG, MMD, STEIN, ADV = "ELBO", "Unregularized", "MMD-VAE", "Stein-VAE", "Adversarial-VAE"
VARIANTS = (MMD, STEIN, ADV)
FLEXIBLE = "pixelcnn"


class Context:
    """What the rows may not carry: evaluate.semisupervised_repeats."""

    def __init__(self, repeats: int | None = None) -> None:
        self.repeats = repeats


# ---- selecting the cells ----------------------------------------------------------------------

def _in_grid(metrics: pd.DataFrame, grid: str) -> list[dict[str, Any]]:
    if "grids" not in metrics.columns:
        return []
    return [r.to_dict() for _, r in metrics.iterrows() if grid in str(r["grids"]).split(",")]


def _val(row: dict[str, Any] | None, key: str) -> float | None:
    v = None if row is None else row.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


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

def fair_nll(row: dict[str, Any] | None) -> tuple[float | None, float | None, str]:
    """A cell's test NLL for comparing objectives: (nll, s.e., estimator). IS with q(z|x) and
    AIS are both upper bounds of the true NLL in expectation (the log of an unbiased estimate of
    p(x) is biased low), so the lower is the closer. Where AIS was measured (on the first
    evaluate.ais_test_size test images), the IS mean over all loglik_test_size images is moved by
    the paired AIS - IS difference when that is negative, i.e. when AIS is the tighter bound:
    NLL = NLL_IS + min(0, mean(NLL_AIS - NLL_IS)), s.e. from both. Otherwise NLL_IS as measured."""
    nll, se = _val(row, "test_nll"), _val(row, "test_nll_stderr")
    diff, dse = _val(row, "test_ais_minus_is"), _val(row, "test_ais_minus_is_stderr")
    if nll is None or diff is None:
        return nll, se, "IS"
    if diff >= 0:
        return nll, se, "IS (AIS not tighter)"
    return nll + diff, rules.combined(se, dse), "IS + AIS correction"


def _nll(rows, method):
    r, why = _find(rows, method, FLEXIBLE)
    nll, se, _ = fair_nll(r)
    return r, why, nll, se


def c1_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    got = {m: _nll(rows, m) for m in (ELBO, *VARIANTS)}
    pairs = [(v, ELBO) for v in VARIANTS] + [(MMD, v) for v in VARIANTS if v != MMD]
    out = []
    for a, b in pairs:
        ra, wa, na, sa = got[a]
        rb, wb, nb, sb = got[b]
        what = f"NLL({a}) < NLL({b})"
        if ra is None or rb is None:
            out.append(missing_check(what, f"{a}: {wa}" if ra is None else f"{b}: {wb}"))
        else:
            out.append(less(f"NLL({a})", na, sa, f"NLL({b})", nb, sb))
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
    for method, near_bound in ((ELBO, False), (MMD, True)):
        r, why = _find(rows, method, FLEXIBLE)
        mi, n = _val(r, "mi"), _val(r, "latent_n")
        what = (f"log N - I(x;z) of {method} < log 2" if near_bound else f"I(x;z) of {method} < log 2")
        if r is None or mi is None or not n:
            out.append(missing_check(what, why or "I(x;z) or its N not measured"))
            continue
        value = math.log(n) - mi if near_bound else mi
        out.append(Check(what + f" (N={int(n):,})", ONE_BIT - value, rules.mi_stderr(int(n))))
    return out


def _per_dim(rows, methods, key, stderr):
    dims = _settings(rows, methods, "latent_dim")
    table = {}
    for d in dims:
        for m in methods:
            r, why = _find(rows, m, latent_dim=d)
            table[m, d] = (r, why, _val(r, key), stderr(r))
    return dims, table


def c4_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    dims, t = _per_dim(rows, (*VARIANTS, ELBO, UNREG), "mmd",
                       lambda r: rules.mmd_stderr(_val(r, "mmd"), _val(r, "latent_n")))
    out = []
    for d in dims:
        for v in VARIANTS:
            for b in (ELBO, UNREG):
                (_, wa, a, sa), (_, wb, bv, sb) = t[v, d], t[b, d]
                that = f"MMD of {b}{_where(latent_dim=d)}"
                if a is None or bv is None:
                    why = f"{v}: {wa}" if a is None else f"{b}: {wb}"
                    out.append(missing_check(f"MMD of {v} < {that}", why))
                else:
                    out.append(less(f"MMD of {v}", a, sa, that, bv, sb))
    return out or [missing_check("MMD of the InfoVAE variants vs ELBO, Unregularized", "no cell in the grid")]


def label_counts(rows: list[dict[str, Any]]) -> list[int]:
    keys = {k for r in rows for k in r}
    return sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"ss_error_(\d+)", k)))


def c5_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    dims = [d for d in _settings(rows, (MMD, ELBO), "latent_dim") if d >= 10]
    counts = label_counts(rows)
    if not dims or not counts:
        return [missing_check(f"semi-supervised error of {MMD} ≤ ELBO's at d ≥ 10",
                              "no latent dim ≥ 10 in the grid" if not dims else "not measured")]
    out = []
    for d in dims:
        for n in counts:
            got = []
            for m in (MMD, ELBO):
                r, why = _find(rows, m, latent_dim=d)
                reps = _val(r, "ss_repeats") or ctx.repeats
                se = rules.semisupervised_stderr(_val(r, f"ss_error_{n}_std"), int(reps) if reps else None)
                got.append((r, why, _val(r, f"ss_error_{n}"), se))
            (_, wa, a, sa), (_, wb, b, sb) = got
            what = f"error ({n} labels) of {MMD} ≤ ELBO's{_where(latent_dim=d)}"
            out.append(missing_check(what, wa or wb or "not measured") if a is None or b is None else
                       less(f"error ({n} labels) of {MMD}", a, sa, f"ELBO's{_where(latent_dim=d)}", b, sb,
                            strict=False))
    return out


def c6_checks(rows: list[dict[str, Any]], ctx: Context) -> list[Check]:
    methods = (MMD, ELBO, UNREG)
    dims, t = _per_dim(rows, methods, "class_mismatch",
                       lambda r: rules.mismatch_stderr(_val(r, "class_mismatch"), _val(r, "class_samples")))
    means = {}
    for m in methods:
        gaps = [f"d={d}: {t[m, d][1] or 'not measured'}" for d in dims if t[m, d][2] is None]
        if not dims or gaps:
            means[m] = (None, "; ".join(gaps) or "no cell in the grid")
            continue
        se = rules.combined(*(t[m, d][3] for d in dims))
        means[m] = (sum(t[m, d][2] for d in dims) / len(dims), None if se is None else se / len(dims))
    out = []
    for b in (ELBO, UNREG):
        (a, sa), (bv, sb) = means[MMD], means[b]
        what = f"mean class mismatch of {MMD} < {b}'s"
        if a is None or bv is None:
            out.append(missing_check(what, f"{MMD}: {sa}" if a is None else f"{b}: {sb}"))
        else:
            out.append(less(f"mean class mismatch of {MMD}", a, sa, f"{b}'s (d in {dims})", bv, sb))
    return out
