"""How a claim is decided: checks with a margin and a standard error, and the fixed rule that
turns them into a verdict. Also the standard errors of the metrics that the evaluation does not
report with one. Every threshold here comes from a principle stated beside it, never from a
run's numbers (pipeline.report.claims states the claims; tests/test_claims.py the known answers).

A check is one inequality of a claim, oriented so that a positive margin m supports it, with
the standard error s of m. With Z = 2 (about 95 %, two-sided):

    holds      m - Z s > 0            (strict: "a < b" needs b - a > 2 s)
               m >= 0                  (non-strict, "a <= b": the estimate is on the claim's side
                                        and not significantly against it)
    fails      m + Z s < 0
    unclear    otherwise
    missing    a cell it needs was not evaluated (failed, absent from the sweep, not measured)

A claim is the conjunction of its checks: reproduced when every check holds, not reproduced
when any check fails (one clear counter-example refutes a conjunction, whatever else is
missing), inconclusive otherwise (some check unclear or missing, or no check at all).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
HOLDS, FAILS, UNCLEAR, MISSING = "holds", "fails", "unclear", "missing"
Z = 2.0  # standard errors a difference must exceed to count


@dataclass(frozen=True)
class Check:
    what: str  # the inequality in words, e.g. "NLL(MMD-VAE) < NLL(ELBO)"
    margin: float | None  # positive supports the claim; None: not measured
    stderr: float | None  # of the margin; None or NaN: unknown (the check is then unclear)
    strict: bool = True
    note: str = ""  # why it is missing

    @property
    def outcome(self) -> str:
        m, s = self.margin, self.stderr
        if m is None or not math.isfinite(m):
            return MISSING
        if s is None or not math.isfinite(s):
            return UNCLEAR  # no error known: the check cannot be decided either way
        if m + Z * s < 0:
            return FAILS
        if (m - Z * s > 0) if self.strict else (m >= 0):
            return HOLDS
        return UNCLEAR

    @property
    def z(self) -> float:
        """margin / stderr: how far the check is from the boundary, in standard errors."""
        if self.margin is None or not math.isfinite(self.margin):
            return math.nan
        if not self.stderr or not math.isfinite(self.stderr):
            return math.copysign(math.inf, self.margin) if self.margin else 0.0
        return self.margin / self.stderr


def missing_check(what: str, note: str) -> Check:
    return Check(what, None, None, note=note)


def verdict(checks: Sequence[Check]) -> str:
    outcomes = [c.outcome for c in checks]
    if any(o == FAILS for o in outcomes):
        return NOT_REPRODUCED
    if outcomes and all(o == HOLDS for o in outcomes):
        return REPRODUCED
    return INCONCLUSIVE


def weakest(checks: Sequence[Check]) -> Check | None:
    """The check that decides the verdict: the one farthest on the wrong side (lowest z); a missing
    check only when no check was measured."""
    measured = [c for c in checks if c.outcome != MISSING]
    if not measured:
        return checks[0] if checks else None
    return min(measured, key=lambda c: (c.z, c.margin))


def combined(*stderrs: float | None) -> float | None:
    """Standard error of a sum or difference of independent estimates. For two models scored on
    the same test images the errors are positively correlated, so this over-states the error of
    their difference: conservative (more "inconclusive", never a spurious verdict)."""
    if any(s is None or not math.isfinite(s) for s in stderrs):
        return None
    return math.sqrt(sum(s * s for s in stderrs))


def less(a_name: str, a: float | None, sa: float | None, b_name: str, b: float | None, sb: float | None,
         strict: bool = True) -> Check:
    """a < b (strict) or a <= b: margin b - a."""
    op = "<" if strict else "≤"
    if a is None or b is None:
        return missing_check(f"{a_name} {op} {b_name}", "not measured")
    return Check(f"{a_name} {op} {b_name}", b - a, combined(sa, sb), strict)


# ---- paired differences: two cells scored on the same images ----------------------------------

class PairingError(ValueError):
    """Two cells' per-image values are not over the same images: they cannot be paired."""


def paired_difference(a: Mapping[int, float], b: Mapping[int, float],
                      correction: tuple[Mapping[int, float], int] | None = None) -> tuple[float, float, int]:
    """(margin, s.e., n) of mean(b - a) for per-image values keyed by image index, e.g. two cells'
    NLLs on the same test images:

        d_i = b_i - a_i,   margin = mean(d),   se = std(d, ddof=1) / sqrt(n)

    exact for images drawn independently (the d_i are then i.i.d.), and far smaller than
    hypot(se_a, se_b) when the two cells find the same images hard (their errors are positively
    correlated, and `combined` ignores that). The image sets must be equal: a PairingError
    otherwise (pairing over an intersection would silently compare different test sets).

    correction (c, N): a term mean_{i in H} c_i added to the margin, where c is keyed by a subset
    H of the images (M = |H|) and N = n (a guard that the caller meant these images). Writing
    u_i = d_i + (N/M) c_i on H and u_i = d_i elsewhere, margin = mean(d) + mean_H(c) = mean(u)
    exactly, and with independent images

        Var(margin) = (M Var_H(u) + (N - M) Var_rest(u)) / N^2

    estimated with the ddof-1 variances of each stratum (the rest's from all d_i when it has fewer
    than two images): the correction's error and its correlation with d on H are both counted."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise PairingError(f"different images: {len(only_a)} only in the first {only_a[:5]}, "
                           f"{len(only_b)} only in the second {only_b[:5]}")
    keys = sorted(a)
    n = len(keys)
    if n < 2:
        raise PairingError(f"{n} common image(s): a paired error needs at least 2")
    d = {i: float(b[i]) - float(a[i]) for i in keys}
    if correction is None:
        values = list(d.values())
        return statistics.fmean(values), statistics.stdev(values) / math.sqrt(n), n
    c, total = correction
    head = sorted(c)
    if total != n or not set(head) <= set(d) or not head:
        raise PairingError(f"the correction's {len(head)} images are not a non-empty subset of the "
                           f"{n} paired images (declared {total})")
    m = len(head)
    u_head = [d[i] + n / m * float(c[i]) for i in head]
    rest = [d[i] for i in keys if i not in c]
    margin = (sum(u_head) + sum(rest)) / n
    var_head = statistics.variance(u_head) if m > 1 else statistics.variance(list(d.values()))
    var_rest = statistics.variance(rest) if len(rest) > 1 else statistics.variance(list(d.values()))
    return margin, math.sqrt(m * var_head + (n - m) * var_rest) / n, n


def paired_less(a_name: str, a: Mapping[int, float], b_name: str, b: Mapping[int, float],
                strict: bool = True, correction: tuple[Mapping[int, float], int] | None = None,
                note: str = "") -> Check:
    """a < b (strict) or a <= b from per-image values on the same images: margin mean(b - a) and
    its paired s.e. (paired_difference; a PairingError when the images differ)."""
    op = "<" if strict else "≤"
    margin, se, _ = paired_difference(a, b, correction)
    return Check(f"{a_name} {op} {b_name}", margin, se, strict, note)


# ---- standard errors of metrics reported without one ------------------------------------------

def logdet_stderr(dim: int | None, n: int | None) -> float | None:
    """log det of the sample covariance of n encodings in d dimensions. For Gaussian encodings
    (n-1) S ~ Wishart_d(n-1, Sigma), so log det S - log det Sigma = sum_i log(chi2_{n-i}/(n-1))
    and Var(log chi2_k) ~= 2/k: se ~= sqrt(2 d / (n - 1)). (Non-Gaussian encodings add a kurtosis
    term; the Gaussian value is the rule's stated approximation.)"""
    if not dim or not n or n <= dim + 1:
        return None
    return math.sqrt(2.0 * dim / (n - 1))


def mmd_stderr(mmd2: float | None, n: int | None) -> float | None:
    """A conservative error of the unbiased MMD^2_u (Gretton et al. 2012, eq. 3) between n
    encodings x and n prior samples y, with a kernel in [0, 1] and k(z, z) = 1 (the Gaussian
    kernel of pipeline.evaluation.metrics.latent). Write it as the one-sample U-statistic of
    z_i = (x_i, y_i) with h(z, z') = k(x,x') + k(y,y') - k(x,y') - k(x',y) plus a remainder R.

    U-statistic (Hoeffding): Var = 4 (n-2)/(n(n-1)) zeta_1 + 2/(n(n-1)) zeta_2, where
    zeta_1 = Var E[h|z] = Var_q f + Var_p f for the witness f = mu_q - mu_p, and
    Var f <= E f^2 <= ||f||^2 k(z, z) = MMD^2 (Cauchy-Schwarz), so zeta_1 <= 2 MMD^2; each bracket
    of h lies in [-1, 1], so |h| <= 2 and zeta_2 <= 4. Hence Var <= 8 MMD^2/n + 8/(n(n-1)): the
    second term is the whole error when q = p (a degenerate U-statistic, O(1/n)).
    Remainder: eq. 3 averages the cross term over all n^2 pairs, h over the n(n-1) with i != j;
    R = (2/n) (mean_{i != j} k(x_i, y_j) - mean_i k(x_i, y_i)), mean zero, and with both means of
    [0, 1] terms (variance <= 1/(4n) for the diagonal, <= 2/n * 1/4 for the degree-2 U-statistic)
    sd(R) <= (2/n)(1/(2 sqrt n) + 1/sqrt(2 n)) < 2.5 / n^1.5, added whole (triangle inequality).
    There is no bias term: E MMD^2_u = MMD^2."""
    if mmd2 is None or not n or n < 2 or not math.isfinite(mmd2):
        return None
    return math.sqrt(8.0 * max(mmd2, 0.0) / n + 8.0 / (n * (n - 1))) + 2.5 / n ** 1.5


def mi_stderr(n: int | None) -> float | None:
    """I_q(x; z) is a mean of n per-encoding terms log q(z_i|x_i) - log (1/n) sum_j q(z_i|x_j); taken
    to lie in [0, log n] (an encoding no likelier under its own image than under the average one
    would be negative, which trained encoders make rare), their std is at most log(n)/2
    (Popoviciu), so se <= log(n) / (2 sqrt(n))."""
    if not n or n < 2:
        return None
    return math.log(n) / (2.0 * math.sqrt(n))


def semisupervised_stderr(std: float | None, repeats: int | None) -> float | None:
    """The error's mean over R labelled draws, with its std over them (ddof 0, as recorded):
    se = std * sqrt(R / (R-1)) / sqrt(R) = std / sqrt(R - 1). The test images are the same for
    every model, so their own sampling error largely cancels in a difference and is left out."""
    if std is None or not repeats or repeats < 2 or not math.isfinite(std):
        return None
    return std / math.sqrt(repeats - 1)


def mismatch_stderr(kl: float | None, n: int | None, classes: int = 10) -> float | None:
    """KL(uniform || p_hat) from n classified samples. Delta method: Var ~= chi2(u || p) / n with
    chi2(u || p) = (1/C^2) sum_k 1/p_k - 1 ~= 2 KL(u || p) near uniform, so the leading term is
    sqrt(2 KL / n); the plug-in bias (C - 1) / (2 n) (Miller-Madow) is added whole."""
    if kl is None or not n or not math.isfinite(kl):
        return None
    return math.sqrt(2.0 * max(kl, 0.0) / n) + (classes - 1) / (2.0 * n)
