"""Loading a prepared split back as tensors, verified against the checksum prepare recorded.

Every later stage reads the data through `load_split`: a split that was modified or damaged
after prepare wrote it stops the stage with the file named, instead of training on it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline.errors import PipelineError

SPLITS = ("train", "validation", "test")
SIDE = 28
PIXELS = SIDE * SIDE
META_KEY = b"infovae"


class DataError(PipelineError):
    """A prepared split is missing, damaged, or inconsistent with its metadata."""



@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # float32 [N, 1, 28, 28], values in [0, 1]
    labels: torch.Tensor  # int64 [N]
    index: torch.Tensor  # int64 [N]: position in the source file
    binarization: str  # "dynamic" means: sample x ~ Bernoulli(images) for every use

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def dynamic(self) -> bool:
        return self.binarization == "dynamic"



def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err}); rerun `dvc repro prepare`") \
            from None
    if META_KEY not in meta:
        raise DataError(f"{path}: no '{META_KEY.decode()}' metadata: not written by prepare")
    return json.loads(meta[META_KEY])


def load_split(out_dir: str | Path, split: str, limit: int | None = None) -> Split:
    """Load a prepared split as tensors (no per-row Python); verify it against its metadata."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(out_dir) / f"{split}.parquet"
    if not path.is_file():
        raise DataError(f"missing prepared split {path}; run `dvc repro prepare` first")
    meta = read_metadata(path)
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{path}: damaged Parquet file ({err}); rerun `dvc repro prepare`") \
            from None
    column = table.column("pixels").combine_chunks()
    if column.type != pa.binary(PIXELS):
        raise DataError(f"{path}: pixels column is {column.type}, expected {pa.binary(PIXELS)}")
    start = column.offset * PIXELS
    flat = np.frombuffer(column.buffers()[1], np.uint8)[start: start + len(column) * PIXELS]
    if table.num_rows != meta["rows"] or hashlib.sha256(flat.data).hexdigest() != meta[
            "pixels_sha256"]:
        raise DataError(f"{path}: contents do not match the checksum recorded by prepare; "
                        "the file was modified or damaged; rerun `dvc repro prepare`")
    n = table.num_rows if limit is None else min(limit, table.num_rows)
    with warnings.catch_warnings():  # read-only Arrow buffer: .float() copies before writing
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(flat[: n * PIXELS]).view(n, 1, SIDE, SIDE).float()
    images.div_(float(meta["pixel_scale"]))
    labels = torch.from_numpy(table.column("label").to_numpy()[:n].astype(np.int64))
    index = torch.from_numpy(table.column("index").to_numpy()[:n].astype(np.int64))
    return Split(images, labels, index, meta["binarization"])


def content_digest(out_dir: str | Path, splits: tuple[str, ...] = ("train", "validation")) -> str:
    """A digest of what training reads from these splits: the pixels (their SHA-256, recorded by
    prepare), the row count and how the pixels are to be read (binarization, scale). Labels are
    left out: no training objective reads them."""
    parts = {}
    for split in splits:
        meta = read_metadata(Path(out_dir) / f"{split}.parquet")
        parts[split] = {k: meta[k] for k in ("pixels_sha256", "rows", "binarization", "pixel_scale")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
