"""Prepare MNIST-family data as Parquet splits (loading them back: pipeline.data.splits).

prepare: raw files (verified) -> seeded 55k/5k split of the 60k training images + the 10k
test images -> binarized per `data.binarization` -> one Parquet file per split, written into a
temporary directory that replaces the output directory only when everything succeeded.

Rows of `train.parquet` are in a seeded random order, so the training-set-size subsets of the
overfitting study are prefixes: subset n is the first n rows, and a smaller subset is always
contained in a larger one.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.formats import parse_amat, parse_idx
from pipeline.data.raw import read_raw
from pipeline.data.sources import SOURCES, Source
from pipeline.data.splits import META_KEY, PIXELS, SIDE, DataError
from pipeline.infra import atomic
from pipeline.infra.env import in_study_home
from pipeline.params.data import N_TRAIN_POOL, DataParams

SCHEMA_VERSION = 1
INDEX_FILE = Path(__file__).with_name("resources") / "binarized_mnist_index.npz"
INDEX_SHA256 = "5a7bab8b71edeaea11219f8ac502276327fc3f0fac0fbd79f563364e755895c7"


@dataclass(frozen=True)
class RawArrays:
    train_pixels: np.ndarray  # uint8 [60000, 28, 28]: grey 0..255, or 0/1 when fixed
    train_labels: np.ndarray  # uint8 [60000]
    test_pixels: np.ndarray
    test_labels: np.ndarray
    checksums: dict[str, str]  # file name -> SHA-256 of contents
    binary: bool


def _read(source: Source, role: str, cfg: DataParams, checksums: dict) -> bytes:
    path, contents = read_raw(source, role, in_study_home(cfg.raw_dir), allow_download=cfg.download,
                              mirrors=cfg.mirrors or None, timeout=cfg.download_timeout_s)
    checksums[path.name] = source.file(role).sha256
    return contents


def _check_pair(images: np.ndarray, labels: np.ndarray, what: str) -> None:
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{what}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{what}: images are {images.shape[1:]}, expected {(SIDE, SIDE)}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{what}: label {int(labels.max())} outside 0..9")


def read_arrays(cfg: DataParams, sources: dict[str, Source] = SOURCES) -> RawArrays:
    """Read and verify every raw file the configuration needs (before any other work)."""
    checksums: dict[str, str] = {}
    src = sources[cfg.dataset]
    # Read and verify every file first, so a bad file anywhere stops before any parsing.
    labels = {role: _read(src, role, cfg, checksums) for role in ("train_labels", "test_labels")}
    if cfg.binarization == "fixed":
        fixed = sources["binarized_mnist"]
        amat = {role: _read(fixed, role, cfg, checksums) for role in ("train", "valid", "test")}
        train_pixels = np.concatenate([parse_amat(amat["train"], fixed.file("train").name),
                                       parse_amat(amat["valid"], fixed.file("valid").name)])
        test_pixels = parse_amat(amat["test"], fixed.file("test").name)
        # The .amat rows are shuffled (test: sorted by class) and unlabeled; put them back in
        # MNIST order so that labels apply and the split is the same as for dynamic/threshold.
        order = binarized_mnist_index()
        train_pixels = _to_mnist_order(train_pixels, order["train_valid"])
        test_pixels = _to_mnist_order(test_pixels, order["test"])
    else:
        images = {role: _read(src, role, cfg, checksums) for role in ("train_images", "test_images")}
        train_pixels = parse_idx(images["train_images"], src.file("train_images").name, 3)
        test_pixels = parse_idx(images["test_images"], src.file("test_images").name, 3)
    train_labels = parse_idx(labels["train_labels"], src.file("train_labels").name, 1)
    test_labels = parse_idx(labels["test_labels"], src.file("test_labels").name, 1)
    _check_pair(train_pixels, train_labels, f"{src.name} training set")
    _check_pair(test_pixels, test_labels, f"{src.name} test set")
    if train_pixels.shape[0] != N_TRAIN_POOL:
        raise DataError(
            f"{src.name} training set has {train_pixels.shape[0]} images, expected {N_TRAIN_POOL}"
        )
    return RawArrays(train_pixels, train_labels, test_pixels, test_labels, checksums,
                     binary=cfg.binarization == "fixed")


def binarized_mnist_index() -> dict[str, np.ndarray]:
    """MNIST index of every row of the Larochelle files (scripts/match_binarized_mnist.py)."""
    data = INDEX_FILE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != INDEX_SHA256:
        raise DataError(f"{INDEX_FILE}: checksum mismatch: {digest}, expected {INDEX_SHA256}")
    with np.load(io.BytesIO(data)) as npz:
        return {k: npz[k].astype(np.int64) for k in npz.files}


def _to_mnist_order(rows: np.ndarray, mnist_index: np.ndarray) -> np.ndarray:
    if len(rows) != len(mnist_index):
        raise DataError(f"binarized MNIST: {len(rows)} rows, index has {len(mnist_index)}")
    out = np.empty_like(rows)
    out[mnist_index] = rows
    return out


def binarize(pixels: np.ndarray, cfg: DataParams, binary: bool) -> tuple[np.ndarray, int]:
    """Return (stored uint8 pixels, scale): pixel value in [0, 1] = stored / scale."""
    if binary:  # already 0/1 (the fixed binarization)
        return pixels, 1
    if cfg.binarization == "threshold":
        return (pixels > cfg.threshold * 255).astype(np.uint8), 1
    return pixels, 255  # dynamic: grey levels kept; the trainer samples per batch


def split_indices(cfg: DataParams) -> dict[str, np.ndarray]:
    order = np.random.default_rng(cfg.split_seed).permutation(N_TRAIN_POOL)
    return {"validation": order[: cfg.validation_size], "train": order[cfg.validation_size:]}


def _table(pixels: np.ndarray, labels: np.ndarray, index: np.ndarray, meta: dict) -> pa.Table:
    flat = np.ascontiguousarray(pixels.reshape(-1))
    meta = {**meta, "rows": int(len(labels)),
            "pixels_sha256": hashlib.sha256(flat.data).hexdigest()}
    # One fixed-size binary value per image: no per-pixel Parquet levels to decode, so a 55k
    # split loads in tens of milliseconds (a list<uint8> column takes ~10x longer).
    pixel_column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(PIXELS), len(labels), [None, pa.py_buffer(flat)])
    table = pa.table({
        "pixels": pixel_column,
        "label": pa.array(labels, pa.uint8()),
        "index": pa.array(index.astype(np.int32), pa.int32()),
    })
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})


def prepare(cfg: DataParams, sources: dict[str, Source] = SOURCES) -> dict[str, Any]:
    """Write the three Parquet splits into cfg.out_dir (atomically); return the summary."""
    start = time.perf_counter()
    raw = read_arrays(cfg, sources)
    train_pool, scale = binarize(raw.train_pixels, cfg, raw.binary)
    test_pixels, _ = binarize(raw.test_pixels, cfg, raw.binary)
    idx = split_indices(cfg)
    parts = {
        "train": (train_pool[idx["train"]], raw.train_labels[idx["train"]], idx["train"]),
        "validation": (train_pool[idx["validation"]], raw.train_labels[idx["validation"]],
                       idx["validation"]),
        "test": (test_pixels, raw.test_labels, np.arange(len(raw.test_labels))),
    }
    common = {
        "schema_version": SCHEMA_VERSION,
        "dataset": cfg.dataset,
        "binarization": cfg.binarization,
        "pixel_scale": scale,
        "sources": raw.checksums,
        "data_params": cfg.identity(),  # only what changes the data: see DataParams.placement
    }
    summary: dict[str, Any] = {"dataset": cfg.dataset, "binarization": cfg.binarization,
                               "count": {}, "mean_pixel": {}, "class_histogram": {}}
    with atomic.replace_dir(cfg.out_dir) as tmp:
        for split, (pixels, labels, index) in parts.items():
            table = _table(pixels, labels, index, {**common, "split": split})
            pq.write_table(table, tmp / f"{split}.parquet", compression="zstd",
                           use_dictionary=False, write_page_checksum=True)
            summary["count"][split] = int(len(labels))
            summary["mean_pixel"][split] = round(float(pixels.mean()) / scale, 6)
            summary["class_histogram"][split] = _histogram(labels)
        subsets = {str(n): _histogram(parts["train"][1][:n]) for n in sorted(cfg.train_sizes)}
        atomic.write_json(tmp / "config.json",
                          {**common, "summary": summary, "train_subset_histograms": subsets})
    # The DVC metrics file: counts and means; the 30 class counts stay in config.json (above) and
    # the returned summary, out of `dvc metrics show`'s columns (issue 24).
    atomic.write_json(cfg.summary, {k: v for k, v in summary.items() if k != "class_histogram"})
    summary["seconds"] = round(time.perf_counter() - start, 3)  # printed, not a DVC metric
    return summary


def _histogram(labels: np.ndarray) -> dict[str, int]:
    return {str(d): int(c) for d, c in enumerate(np.bincount(labels, minlength=10))}
