"""Synthetic raw files in the real formats, with a matching Source registry, for error paths."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from pipeline.data.sources import RawFile, Source


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def fake_mnist(n_train: int = 60000, n_test: int = 10000, seed: int = 0):
    """Images whose mean grey level encodes the label: cheap to make, easy to check."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 4:24, 4:24] = (labels * 25)[:, None, None]
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_source(raw_dir: Path, contents: dict[str, bytes], name: str = "mnist",
                 checksums: dict[str, bytes] | None = None, mirrors=()) -> Source:
    """Write gzipped files into raw_dir/name; the registry's checksums are of `checksums`
    (default: of the contents themselves), so a test can make them disagree on purpose."""
    directory = raw_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, data in contents.items():
        ref = (checksums or contents)[role]
        files[role] = RawFile(NAMES[role], hashlib.sha256(ref).hexdigest(), len(ref),
                              NAMES[role] + ".gz")
        (directory / (NAMES[role] + ".gz")).write_bytes(gzip.compress(data, compresslevel=1))
    return Source(name, files, tuple(mirrors))


def idx_contents(arrays) -> dict[str, bytes]:
    return {role: idx_bytes(a) for role, a in arrays.items()}
