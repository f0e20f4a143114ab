"""Per-image NLLs: what the metrics keep beside their means, and the table the stage writes.

A paired comparison of two cells (pipeline.report.claims.rules.paired_difference) needs each cell's NLL
of every test image, and proof that the images are the same: the same index in the split and the
same pixels (dynamic binarization draws them from evaluate.seed, so a different seed or a
different data version gives other images under the same index). Each image therefore carries a
digest of its binary pixels.

A metric returns its per-image values under the reserved row key PER_IMAGE, as
{"<split>/<estimator>": {"nll": [...], "digest": [...]}} (image i of the list is row i of the
split: every estimator scores a prefix); the evaluate stage takes them out of the row
(`split_row`) and writes one table, results/eval/per_image_nll.parquet (layout.PER_IMAGE_NLL):

    cell, trial_id, split, estimator, image, image_digest, nll
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from torch import Tensor

PER_IMAGE = "per_image_nll"  # reserved key of a metric's output and of a cached row
COLUMNS = ("cell", "trial_id", "split", "estimator", "image", "image_digest", "nll")


def image_digests(x: Tensor) -> list[str]:
    """16 hex digits of SHA-256 per image of its pixels as float32, row-major (binary images,
    or the grey levels a Gaussian decoder reads: either way equal digests, equal inputs)."""
    pixels = np.ascontiguousarray(x.detach().cpu().reshape(x.shape[0], -1).float().numpy())
    return [hashlib.sha256(row.tobytes()).hexdigest()[:16] for row in pixels]


def entry(split: str, estimator: str, x: Tensor, nll: Tensor) -> dict[str, dict[str, list]]:
    """A metric's PER_IMAGE value for one estimate: nll [N] of the images x [N, ...]."""
    if nll.shape[0] != x.shape[0]:
        raise ValueError(f"{nll.shape[0]} NLLs for {x.shape[0]} images")
    return {f"{split}/{estimator}": {"nll": [float(v) for v in nll.double().cpu()],
                                     "digest": image_digests(x)}}


def split_row(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the row without its per-image values, those values: {} for a row that has none)."""
    rest = {k: v for k, v in result.items() if k != PER_IMAGE}
    return rest, result.get(PER_IMAGE) or {}


def table_rows(cell: str, trial_id: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-image table's rows of one cell."""
    out = []
    for key, v in sorted(values.items()):
        split, estimator = key.split("/", 1)
        out.extend({"cell": cell, "trial_id": trial_id, "split": split, "estimator": estimator,
                    "image": i, "image_digest": digest, "nll": nll}
                   for i, (nll, digest) in enumerate(zip(v["nll"], v["digest"], strict=True)))
    return out
