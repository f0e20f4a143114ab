"""The claims' verdict rules on synthetic metrics tables: for each claim one table that must
reproduce it, one that must not, and one that must stay inconclusive; and the standard errors
of pipeline.report.claims.rules against known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.report.claims import dvc_metrics, evaluate_claims, mlflow_payload, rules
from pipeline.report.claims.rules import FAILS, HOLDS, MISSING, UNCLEAR, Check

R, INC = rules.REPRODUCED, rules.INCONCLUSIVE
NOT = rules.NOT_REPRODUCED
METHODS = ("ELBO", "Unregularized", "MMD-VAE", "Stein-VAE", "Adversarial-VAE")
EA = "ELBO (784/d)"  # the authors' ELBO row (pipeline.params.vocab.ELBO_AUTHORS), which C1 compares against


def row(grid: str, method: str, **values) -> dict:
    base = {"cell": f"{grid}-{method}-{values}", "cell_label": f"{method} {values}", "grids": grid,
            "method": method, "status": "EVALUATED", "error": None, "decoder": "mlp", "latent_dim": 10,
            "train_size": 55000, "latent_n": 10000, "train_latent_n": 10000, "class_samples": 10000}
    return {**base, **values}


def judge(rows: list[dict], claim: str, repeats: int = 5):
    return next(c for c in evaluate_claims(pd.DataFrame(rows), repeats=repeats) if c.spec.id == claim)


# ---- C1: Table 1 ------------------------------------------------------------------------------

def table1(nll: dict[str, float], se: float = 0.1, **extra) -> list[dict]:
    return [row("table1", m, decoder="pixelcnn", test_nll=v, test_nll_stderr=se, **extra)
            for m, v in nll.items()]


PAPER = {EA: 82.75, "MMD-VAE": 80.76, "Stein-VAE": 81.47, "Adversarial-VAE": 82.21}


def test_c1_the_papers_table1_reproduces_it():
    c = judge(table1(PAPER), "c1")
    assert c.verdict == R and c.counts()[HOLDS] == 5
    # the deciding check: Adversarial vs ELBO, 0.54 nats apart, s.e. 0.1*sqrt(2)
    assert c.statistic == pytest.approx(0.54) and c.stderr == pytest.approx(0.1 * math.sqrt(2))


def test_c1_elbo_best_does_not_reproduce_it():
    c = judge(table1({**PAPER, EA: 79.0}), "c1")
    assert c.verdict == NOT and "NLL(MMD-VAE) < NLL(ELBO (784/d))" in c.reason


def test_c1_within_two_standard_errors_or_a_failed_cell_is_inconclusive():
    assert judge(table1(PAPER, se=0.5), "c1").verdict == INC  # 0.54 < 2 * 0.5 * sqrt(2)
    rows = table1(PAPER)
    rows[3] = {**rows[3], "status": "FAILED", "error": "TrainingDiverged: loss is nan", "test_nll": None}
    c = judge(rows, "c1")
    assert c.verdict == INC and "Adversarial-VAE: FAILED: TrainingDiverged" in c.reason
    assert judge(table1(PAPER)[:3], "c1").verdict == INC  # Adversarial-VAE not in the sweep


def test_c1_uses_the_tighter_of_is_and_the_ais_corrected_is():
    """IS over-states MMD-VAE's NLL by 3 nats (paired AIS - IS = -3 +- 0.2): judged on IS alone
    ELBO is best (not reproduced); with the correction MMD-VAE is lowest. An AIS that is looser
    than IS (ELBO's +1) leaves IS as measured."""
    nll = {**PAPER, "MMD-VAE": 83.76}
    assert judge(table1(nll), "c1").verdict == NOT
    rows = table1(nll)
    ais = {EA: 1.0, "MMD-VAE": -3.0, "Stein-VAE": 0.0, "Adversarial-VAE": 0.5}
    for r in rows:
        r.update(test_ais_minus_is=ais[r["method"]], test_ais_minus_is_stderr=0.2)
    c = judge(rows, "c1")
    assert c.verdict == R
    mmd_vs_elbo = next(ch for ch in c.checks
                       if ch.what.startswith("NLL(MMD-VAE) < NLL(ELBO (784/d)) [unpaired"))
    assert mmd_vs_elbo.margin == pytest.approx(82.75 - 80.76)  # ELBO's IS kept, MMD-VAE's corrected
    assert mmd_vs_elbo.stderr == pytest.approx(math.sqrt(0.1**2 + 0.1**2 + 0.2**2))


def test_c1_needs_the_flexible_decoder():
    rows = [{**r, "decoder": "mlp"} for r in table1(PAPER)]
    c = judge(rows, "c1")
    assert c.verdict == INC and "decoder mlp, the claim needs pixelcnn" in c.reason


def per_image_table(values: dict[str, np.ndarray], estimator: str = "is", digest: str = "b") -> pd.DataFrame:
    """per_image_nll.parquet's rows: cell -> NLL of test images 0..n-1 (pixel digests d0, d1, ...)."""
    return pd.DataFrame([{"cell": cell, "trial_id": cell, "split": "test", "estimator": estimator, "image": i,
                          "image_digest": f"{digest}{i}", "nll": float(v)}
                         for cell, arr in values.items() for i, v in enumerate(arr)])


def judge_paired(rows: list[dict], per_image: pd.DataFrame | None):
    return next(c for c in evaluate_claims(pd.DataFrame(rows), per_image=per_image) if c.spec.id == "c1")


def test_paired_difference_known_answer():
    a = {0: 80.0, 1: 90.0, 2: 100.0, 3: 85.0}
    b = {0: 81.0, 1: 93.0, 2: 100.0, 3: 86.0}  # d = 1, 3, 0, 1: mean 1.25, std sqrt(1.5833) (ddof 1)
    margin, se, n = rules.paired_difference(a, b)
    assert (margin, n) == (pytest.approx(1.25), 4)
    assert se == pytest.approx(math.sqrt((0.25**2 + 1.75**2 + 1.25**2 + 0.25**2) / 3) / 2)
    with pytest.raises(rules.PairingError, match="different images"):
        rules.paired_difference(a, {**b, 4: 1.0})


def test_paired_difference_with_a_correction_on_a_subset():
    """margin = mean(d) + mean_H(c); s.e. by strata: with c = 0 it is the plain paired s.e.'s
    stratified form, with H = all images std(d + c)/sqrt(n)."""
    rng = np.random.default_rng(0)
    a = dict(enumerate(rng.normal(90, 5, 40)))
    b = {i: v + 1.0 + rng.normal(0, 0.3) for i, v in a.items()}
    d = np.array([b[i] - a[i] for i in range(40)])
    c = dict(enumerate(rng.normal(-0.5, 0.2, 40)))
    margin, se, _ = rules.paired_difference(a, b, (c, 40))
    u = d + np.array([c[i] for i in range(40)])
    assert margin == pytest.approx(u.mean()) and se == pytest.approx(u.std(ddof=1) / math.sqrt(40))
    head = {i: c[i] for i in range(10)}
    margin, se, _ = rules.paired_difference(a, b, (head, 40))
    assert margin == pytest.approx(d.mean() + np.mean(list(head.values())))
    u = d[:10] + 4.0 * np.array(list(head.values()))
    assert se == pytest.approx(math.sqrt(10 * u.var(ddof=1) + 30 * d[10:].var(ddof=1)) / 40)


def test_pairing_decides_what_the_unpaired_rule_cannot():
    """Images differ in difficulty by +-10 nats, MMD-VAE is 0.5 nats lower on every image (noise
    0.3): unpaired, s.e. ~ 10/sqrt(100) per mean, the 0.5 gap is inconclusive; paired, its s.e. is
    0.3/sqrt(100) and every check holds."""
    rng = np.random.default_rng(1)
    hard = rng.normal(0, 10, 100)
    shift = {EA: 83.0, "Stein-VAE": 82.5, "Adversarial-VAE": 82.5, "MMD-VAE": 82.0}
    nll = {m: v + hard + rng.normal(0, 0.3, 100) for m, v in shift.items()}
    rows = table1({m: float(x.mean()) for m, x in nll.items()}, se=10 / math.sqrt(100))
    unpaired = judge_paired(rows, None)
    assert unpaired.verdict == INC
    assert all("[unpaired: no per-image NLLs (an older results dir)]" in c.what for c in unpaired.checks)
    paired = judge_paired(rows, per_image_table({r["cell"]: nll[r["method"]] for r in rows}))
    assert paired.verdict == R
    check = next(c for c in paired.checks if c.what.startswith("NLL(MMD-VAE) < NLL(ELBO (784/d))"))
    d = nll[EA] - nll["MMD-VAE"]
    assert "[paired over 100 test images]" in check.what
    assert (check.margin, check.stderr) == (pytest.approx(d.mean()), pytest.approx(d.std(ddof=1) / 10))


def test_pairing_needs_the_same_images():
    rng = np.random.default_rng(2)
    rows = table1(PAPER)
    values = {r["cell"]: rng.normal(PAPER[r["method"]], 1, 20) for r in rows}
    table = per_image_table(values)
    elbo = rows[0]["cell"]
    other = table["cell"] == elbo
    table.loc[other, "image_digest"] = "x" + table.loc[other, "image_digest"]  # another binarization
    c = judge_paired(rows, table)
    elbo_checks = [ch for ch in c.checks if "NLL(ELBO (784/d))" in ch.what]
    assert elbo_checks and all("[unpaired: different images" in ch.what for ch in elbo_checks)
    assert all("[paired over 20" in ch.what for ch in c.checks if "NLL(ELBO (784/d))" not in ch.what)


def test_pairing_carries_the_ais_correction():
    """The paired margin equals fair_nll(b) - fair_nll(a) whatever cell is AIS-corrected: MMD-VAE's
    IS over-states its NLL by 3 nats on the AIS images (corrected), ELBO's AIS is looser (kept)."""
    rng = np.random.default_rng(3)
    n, m = 50, 10
    hard = rng.normal(0, 5, n)
    is_nll = {EA: 82.75 + hard, "MMD-VAE": 83.76 + hard + rng.normal(0, 0.2, n),
              "Stein-VAE": 81.47 + hard, "Adversarial-VAE": 82.21 + hard}
    ais_shift = {EA: 1.0, "MMD-VAE": -3.0, "Stein-VAE": 0.5, "Adversarial-VAE": 0.5}
    ais = {k: v[:m] + ais_shift[k] + rng.normal(0, 0.1, m) for k, v in is_nll.items()}
    rows = table1({k: float(v.mean()) for k, v in is_nll.items()})
    for r in rows:
        c = ais[r["method"]] - is_nll[r["method"]][:m]
        r.update(test_ais_minus_is=float(c.mean()),
                 test_ais_minus_is_stderr=float(c.std(ddof=1) / math.sqrt(m)))
    cell = {r["method"]: r["cell"] for r in rows}
    table = pd.concat([per_image_table({cell[k]: v for k, v in is_nll.items()}),
                       per_image_table({cell[k]: v for k, v in ais.items()}, "ais"),
                       per_image_table({cell[k]: v[:m] for k, v in is_nll.items()}, "is_ais")])
    c = judge_paired(rows, table)
    check = next(ch for ch in c.checks if ch.what.startswith("NLL(MMD-VAE) < NLL(ELBO (784/d)) [paired"))
    from pipeline.report.claims.nll import fair_nll
    fair = {r["method"]: fair_nll(r)[0] for r in rows}
    assert check.margin == pytest.approx(fair[EA] - fair["MMD-VAE"])
    assert check.outcome == HOLDS and check.stderr < 0.5


# ---- C2: Fig. 4 -------------------------------------------------------------------------------

def fig4(elbo: dict[int, float], mmd: dict[int, float], n_enc: int = 1000) -> list[dict]:
    return ([row("train_size", "ELBO", train_size=n, train_logdet_cov=v, train_latent_n=n_enc)
             for n, v in elbo.items()]
            + [row("train_size", "MMD-VAE", train_size=n, train_logdet_cov=v, train_latent_n=n_enc)
               for n, v in mmd.items()])


def test_c2_the_papers_figure_reproduces_it():
    c = judge(fig4({500: 9.0, 5000: 5.8, 50000: 2.2}, {500: -0.1, 5000: 0.0, 50000: -0.05}), "c2")
    assert c.verdict == R and len(c.checks) == 5


def test_c2_an_infovae_far_from_zero_or_a_rising_elbo_does_not():
    assert judge(fig4({500: 9.0, 50000: 2.2}, {500: -3.0, 50000: 0.0}), "c2").verdict == NOT
    assert judge(fig4({500: 2.0, 50000: 5.0}, {500: 0.0, 50000: 0.0}), "c2").verdict == NOT


def test_c2_near_the_threshold_is_inconclusive():
    # se = sqrt(2*10/999) = 0.14: |0.9| + 2*0.14 > 1, |0.9| - 2*0.14 < 1
    c = judge(fig4({500: 9.0, 50000: 2.2}, {500: 0.9, 50000: 0.0}), "c2")
    assert c.verdict == INC and c.counts()[UNCLEAR] == 1
    assert judge(fig4({500: 9.0}, {500: 0.0}), "c2").verdict == INC  # one size: cannot fall


# ---- C3-C6 (tests/test_claims_fig3.py judges them on the authors' own numbers) ---------------------

def test_a_failed_cell_without_its_settings_makes_a_claim_inconclusive():
    rows = [row("latent_dim", m, decoder="pixelcnn", latent_dim=d, class_mismatch=v, class_samples=10**6)
            for m, v in (("MMD-VAE", 0.02), (EA, 0.05), ("Stein-VAE", 0.05), ("Adversarial-VAE", 0.05))
            for d in (2, 10)]
    assert judge(rows, "c6").verdict == R
    rows.append({"cell": "x", "cell_label": "kl alpha=0 lambda=1 d=80", "grids": "latent_dim",
                 "method": EA, "status": "FAILED", "error": "out of memory"})
    c = judge(rows, "c6")
    assert c.verdict == INC and "FAILED: out of memory" in c.reason


def test_an_absent_grid_leaves_every_claim_inconclusive():
    claims = evaluate_claims(pd.DataFrame([row("alpha_lambda", "MMD-VAE", mmd=0.1)]))
    assert [c.verdict for c in claims] == [INC] * 6
    assert all(c.counts()[MISSING] == len(c.checks) >= 1 for c in claims)


def test_outputs_have_stable_keys():
    claims = evaluate_claims(pd.DataFrame(table1(PAPER)))
    metrics = dvc_metrics(claims)["claims"]
    assert list(metrics) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert metrics["c1"]["verdict"] == R and metrics["c1"]["statistic"] == pytest.approx(0.54)
    assert metrics["c2"] == {"verdict": INC, "statistic": None}  # two keys per claim: fits `dvc exp show`
    values, tags = mlflow_payload(claims)
    assert values["claims_c1_statistic"] == pytest.approx(0.54) and "claims_c2_statistic" not in values
    assert tags["claims.c1.verdict"] == R and tags["claims.c6.verdict"] == INC


# ---- the rules and the standard errors ----------------------------------------------------------

def test_check_outcomes():
    assert Check("a", 1.0, 0.4).outcome == HOLDS and Check("a", 1.0, 0.6).outcome == UNCLEAR
    assert Check("a", -1.0, 0.4).outcome == FAILS and Check("a", None, 0.1).outcome == MISSING
    assert Check("a", 1.0, None).outcome == UNCLEAR == Check("a", 1.0, None, strict=False).outcome
    assert Check("a", 0.0, 0.1, strict=False).outcome == HOLDS
    assert rules.verdict([Check("a", 1.0, 0.1), Check("b", None, None)]) == INC
    assert rules.verdict([Check("a", -1.0, 0.1), Check("b", None, None)]) == NOT


def test_logdet_stderr_matches_gaussian_simulation():
    rng = np.random.default_rng(0)
    d, n = 10, 1000
    values = [np.linalg.slogdet(np.cov(rng.standard_normal((n, d)).T))[1] for _ in range(400)]
    assert np.std(values) == pytest.approx(rules.logdet_stderr(d, n), rel=0.15)


def test_mmd_stderr_bounds_the_spread_of_the_estimate():
    import torch

    from pipeline.model.latent_stats import mmd_unbiased_to_prior

    g = torch.Generator().manual_seed(0)
    n, d = 400, 5
    for scale in (1.0, 1.3):  # q = p (the degenerate case: the 8/(n(n-1)) term) and q != p
        values = [mmd_unbiased_to_prior(torch.randn(n, d, generator=g) * scale, generator=g)
                  for _ in range(40)]
        assert np.std(values) < rules.mmd_stderr(float(np.mean(values)), n)


def test_mismatch_stderr_matches_multinomial_simulation():
    import torch

    from pipeline.evaluation.metrics.class_mismatch import class_mismatch

    rng = np.random.default_rng(0)
    p = np.array([0.14, 0.06] + [0.1] * 8)
    n = 2000
    values = [class_mismatch(torch.from_numpy(rng.choice(10, n, p=p)))["class_mismatch"] for _ in range(300)]
    kl = float(np.mean(-np.log(p)) - math.log(10))
    se = rules.mismatch_stderr(kl, n)
    assert 0.7 * se < np.std(values) < se  # the bias term makes it an upper bound


def test_semisupervised_stderr_is_the_standard_error_of_the_mean():
    draws = np.array([0.10, 0.12, 0.11, 0.13, 0.09])
    se = rules.semisupervised_stderr(float(np.std(draws)), len(draws))
    assert se == pytest.approx(np.std(draws, ddof=1) / math.sqrt(len(draws)))
