"""The test NLL a claim compares, and the difference of two cells' NLLs paired image by image.

Both read the evaluate stage's outputs: the metrics row of a cell (its IS mean and, where it was
measured, its AIS - IS difference) and the per-image NLLs (per_image_nll.parquet) held by the
Context of a judgement.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipeline.report.claims import rules


def row_value(row: dict[str, Any] | None, key: str) -> float | None:
    """A finite number of a metrics row, else None (absent, null, NaN, not a number)."""
    v = None if row is None else row.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class Context:
    """What the rows may not carry: evaluate.semisupervised_repeats, and the evaluate stage's
    per-image NLLs (per_image_nll.parquet; None: an older results dir without them)."""

    def __init__(self, repeats: int | None = None, per_image: pd.DataFrame | None = None) -> None:
        self.repeats = repeats
        self.per_image = per_image
        self._by: dict[tuple[str, str], dict[tuple[int, str], float]] | None = None

    def image_nll(self, cell: Any, estimator: str) -> dict[tuple[int, str], float]:
        """{(image index, pixel digest): NLL} of a cell's test images by an estimator ({}: none)."""
        if self._by is None:
            self._by = {}
            t = self.per_image
            if t is not None and len(t):
                t = t[t["split"] == "test"]
                for (c, e), g in t.groupby(["cell", "estimator"], sort=False):
                    self._by[str(c), str(e)] = dict(zip(zip(g["image"].astype(int), g["image_digest"]),
                                                        g["nll"].astype(float), strict=True))
        return self._by.get((str(cell), estimator), {})


def fair_nll(row: dict[str, Any] | None) -> tuple[float | None, float | None, str]:
    """A cell's test NLL for comparing objectives: (nll, s.e., estimator). IS with q(z|x) and
    AIS are both upper bounds of the true NLL in expectation (the log of an unbiased estimate of
    p(x) is biased low), so the lower is the closer. Where AIS was measured (on the first
    evaluate.ais_test_size test images), the IS mean over all loglik_test_size images is moved by
    the paired AIS - IS difference when that is negative, i.e. when AIS is the tighter bound:
    NLL = NLL_IS + min(0, mean(NLL_AIS - NLL_IS)), s.e. from both. Otherwise NLL_IS as measured."""
    nll, se = row_value(row, "test_nll"), row_value(row, "test_nll_stderr")
    diff, dse = row_value(row, "test_ais_minus_is"), row_value(row, "test_ais_minus_is_stderr")
    if nll is None or diff is None:
        return nll, se, "IS"
    if diff >= 0:
        return nll, se, "IS (AIS not tighter)"
    return nll + diff, rules.combined(se, dse), "IS + AIS correction"


def _ais_shift(row: dict[str, Any], ctx: Context) -> dict[tuple[int, str], float] | None:
    """c_i = NLL_AIS,i - NLL_IS,i on the AIS images when fair_nll applies the AIS correction to
    this cell ({} when it does not); None when it does but the per-image values are absent."""
    if fair_nll(row)[2] != "IS + AIS correction":
        return {}
    ais, iw = ctx.image_nll(row.get("cell"), "ais"), ctx.image_nll(row.get("cell"), "is_ais")
    if not ais or set(ais) != set(iw):
        return None
    return {i: ais[i] - iw[i] for i in ais}


def paired_nll(ra: dict[str, Any], rb: dict[str, Any], ctx: Context) -> tuple[float, float, int]:
    """(margin, s.e., n) of fair_nll(b) - fair_nll(a) from per-image values, paired image by image.

    fair_nll(cell) = mean_N(IS_i) + delta mean_M(AIS_i - IS_i), delta = 1 where the AIS correction
    applies (decided, as unpaired, by the sign of the cell's mean AIS - IS), over the N IS images
    and the first M of them that AIS scored. The difference of two cells is then

        margin = mean_N(IS_b,i - IS_a,i) + mean_M(delta_b c_b,i - delta_a c_a,i),  c = AIS - IS

    which is exactly fair_nll(b) - fair_nll(a) (same images for both). Its s.e. comes from
    rules.paired_difference with the AIS term as the correction on the M images: both the IS
    difference and the AIS shifts are paired image by image (the same hard images raise both
    cells' NLLs), and the correlation of the two terms on those M images is counted, none
    treated as independent. Images are keyed by (index, binary-pixel digest): the same index with
    other pixels (another binarization seed or data version) is another image, a PairingError."""
    ia, ib = ctx.image_nll(ra.get("cell"), "is"), ctx.image_nll(rb.get("cell"), "is")
    if not ia or not ib:
        raise rules.PairingError("no per-image IS NLLs for " + (ra if not ia else rb).get("method", "?"))
    ca, cb = _ais_shift(ra, ctx), _ais_shift(rb, ctx)
    if ca is None or cb is None:
        raise rules.PairingError("AIS correction without per-image AIS values")
    if ca and cb and set(ca) != set(cb):
        raise rules.PairingError("the two cells' AIS images differ")
    keys = set(ca) | set(cb)
    shift = {i: cb.get(i, 0.0) - ca.get(i, 0.0) for i in keys}
    return rules.paired_difference(ia, ib, (shift, len(ia)) if shift else None)
