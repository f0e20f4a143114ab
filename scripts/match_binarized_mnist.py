"""Derive which MNIST image each row of Larochelle's binarized MNIST is (run once; ~1 min).

The .amat files are not in MNIST order (the test file is sorted by class; train/valid are
shuffled), and they carry no labels. Each binarized image is a Bernoulli sample of one MNIST
grey image, so its source is the grey image under which it is most likely:
    argmax_j  sum_p [ b_p log g_jp + (1 - b_p) log(1 - g_jp) ]  = argmax_j  b . logit(g_j) + c_j
The result must be a bijection (checked), with a wide margin to the runner-up (reported).
Writes pipeline/data/resources/binarized_mnist_index.npz: for train+valid (60000 rows, in file
order) the MNIST training index, for test (10000 rows) the MNIST test index.

Usage: python scripts/match_binarized_mnist.py RAW_DIR   (RAW_DIR holds mnist/ and binarized_mnist/)
"""

import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from pipeline.data.formats import parse_amat, parse_idx
from pipeline.data.raw import read_raw
from pipeline.data.sources import BINARIZED_MNIST, MNIST

OUT = Path(__file__).resolve().parents[1] / "pipeline" / "resources" / "binarized_mnist_index.npz"


def match(binary: np.ndarray, grey: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood bijection: each row's k most likely sources, then a min-cost matching.

    Near-duplicate MNIST digits (mostly 1s) make a few rows' best source ambiguous; the
    bijection constraint settles them. Returns (source index per row, margin in nats).
    """
    g = torch.from_numpy(grey.reshape(len(grey), -1).copy()).float().div(255)
    g = g.clamp(1e-3, 1 - 1e-3)
    w, c = torch.logit(g), torch.log1p(-g).sum(1)
    cand, score = [], []
    for chunk in torch.from_numpy(binary.reshape(len(binary), -1).copy()).float().split(2000):
        top = (chunk @ w.T + c).topk(k, dim=1)
        cand.append(top.indices)
        score.append(top.values)
    cand, score = torch.cat(cand).numpy(), torch.cat(score).numpy().astype(np.float64)
    n = len(binary)
    # Cost >= 1 keeps every candidate edge explicit in the sparse matrix (0 would be no edge).
    cost = (score[:, :1] - score) + 1.0
    graph = csr_matrix((cost.ravel(), cand.ravel(), np.arange(0, n * k + 1, k)), shape=(n, len(grey)))
    rows, cols = min_weight_full_bipartite_matching(graph)
    idx = np.empty(n, np.int64)
    idx[rows] = cols
    margin = score[:, 0] - score[:, 1]
    changed = (idx != cand[:, 0]).sum()
    print(f"  {changed} rows took a source other than their single most likely one")
    return idx, margin


def main(raw_dir: str) -> None:
    def raw(src, role):
        return read_raw(src, role, raw_dir, allow_download=False)[1]

    train_b = np.concatenate([parse_amat(raw(BINARIZED_MNIST, r), r) for r in ("train", "valid")])
    test_b = parse_amat(raw(BINARIZED_MNIST, "test"), "test")
    train_g = parse_idx(raw(MNIST, "train_images"), "train", 3)
    test_g = parse_idx(raw(MNIST, "test_images"), "test", 3)
    result = {}
    for name, b, g in (("train_valid", train_b, train_g), ("test", test_b, test_g)):
        idx, margin = match(b, g)
        if len(np.unique(idx)) != len(g):
            raise SystemExit(f"{name}: matching is not a bijection")
        print(f"{name}: bijection onto {len(g)} images; log-likelihood margin to runner-up: "
              f"min {margin.min():.1f} nats, median {np.median(margin):.1f}")
        result[name] = idx.astype(np.uint16)
    buf = io.BytesIO()
    np.savez_compressed(buf, **result)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT} ({len(buf.getvalue())} bytes, sha256 {hashlib.sha256(buf.getvalue()).hexdigest()})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/raw")
