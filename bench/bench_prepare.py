"""Benchmark: prepare on full MNIST, and loading the 55k train split from Parquet.

Baselines measured in the same run: the floor of prepare (decompressing and hashing the four
raw files, which prepare must do anyway) and a naive Parquet layout (pixels as list<uint8>).
Goals on the 2-core machine: prepare < 15 s, load < 1 s.

    python bench/bench_prepare.py
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.common import need_mnist, row, timed
from pipeline.data.prepare import prepare
from pipeline.data.splits import load_split
from pipeline.params.data import DataParams


def main() -> None:
    mnist = need_mnist()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / "mnist"
        raw.mkdir(parents=True)
        for f in mnist.iterdir():
            (raw / f.name).symlink_to(f)
        cfg = DataParams(raw_dir=str(raw.parent), out_dir=f"{tmp}/data",
                         summary=f"{tmp}/summary.json", download=False)

        def floor():
            for f in sorted(raw.iterdir()):
                hashlib.sha256(gzip.decompress(f.read_bytes())).hexdigest()

        floor_t, _ = timed(floor)
        prep_t, _ = timed(lambda: prepare(cfg))
        load_t, load_min = timed(lambda: load_split(cfg.out_dir, "train"), repeat=5)

        # Naive layout: the same pixels as a list<uint8> column (per-pixel Parquet levels).
        split = load_split(cfg.out_dir, "train")
        flat = (split.images * 255).round().to(torch.uint8).numpy().reshape(-1)
        naive = pa.table({"pixels": pa.FixedSizeListArray.from_arrays(pa.array(flat), 784)})
        pq.write_table(naive, f"{tmp}/naive.parquet", compression="zstd")

        def load_naive():
            col = pq.read_table(f"{tmp}/naive.parquet").column("pixels").combine_chunks()
            torch.from_numpy(col.values.to_numpy(zero_copy_only=False).reshape(-1, 1, 28, 28)
                             .astype(np.float32) / 255)

        naive_t, _ = timed(load_naive, repeat=5)
        sizes = {p.name: p.stat().st_size for p in Path(cfg.out_dir).glob("*.parquet")}

    print("prepare and load, full MNIST (median of repeats, wall seconds)")
    row("raw floor: gunzip + sha256 of the 4 files", f"{floor_t:.3f} s")
    row("prepare (verify, split, write 3 Parquet files)", f"{prep_t:.3f} s", "goal < 15 s",
        "OK" if prep_t < 15 else "MISSED")
    row("  ratio prepare / raw floor", f"{prep_t / floor_t:.2f}x")
    row("load 55k train split -> float tensor", f"{load_t:.3f} s", "goal < 1 s",
        "OK" if load_t < 1 else "MISSED")
    row("  best of 5", f"{load_min:.3f} s")
    row("naive list<uint8> layout load", f"{naive_t:.3f} s")
    row("  speed-up of fixed_size_binary layout", f"{naive_t / load_t:.1f}x")
    row("Parquet sizes (MB)", " ".join(f"{k.split('.')[0]}={v / 1e6:.1f}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
