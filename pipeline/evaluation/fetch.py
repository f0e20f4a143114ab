"""Checkpoints that a sweep left in an object store (sweep.storage_path s3://..., gs://...),
copied to this machine before the evaluation reads them.

best.json names such a checkpoint by its URI (pipeline.infra.storage). Each is copied once into
`<evaluate.out_dir>/cache/checkpoints/<cell>` (through a `.part` sibling, renamed when whole,
so an interrupted copy is never taken for a checkpoint) and kept while its sha256 is the one
the sweep recorded; the copy then stands for the URI in the rest of the stage, which verifies
it against best.json like any checkpoint (a transfer that went wrong is named, with its cell).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.infra import storage
from pipeline.infra.layout import CACHE
from pipeline.sweep.space import file_digest
from pipeline.train.checkpoint import FILENAME

FETCHED = "checkpoints"


def local_checkpoints(best: dict[str, Any], base: Path, out: Path,
                      log: Callable[[str], Any] = print) -> dict[str, Any]:
    """best.json's entries, each checkpoint in an object store replaced by its local copy
    (`source`: the URI it came from)."""
    result = {}
    for cell, entry in best.items():
        ref = entry.get("checkpoint")
        if not storage.is_remote(ref):
            result[cell] = entry
            continue
        dest = out / CACHE / FETCHED / cell
        have = dest / FILENAME
        if not (have.is_file() and file_digest(have)["sha256"] == entry.get("checkpoint_sha256")):
            part = dest.with_name(f"{cell}.part")
            shutil.rmtree(part, ignore_errors=True)
            storage.fetch(storage.open_uri(ref, base), part)
            shutil.rmtree(dest, ignore_errors=True)
            part.rename(dest)
            log(f"{entry.get('label', cell)}: checkpoint copied from {ref}")
        try:
            local = str(dest.relative_to(base))
        except ValueError:
            local = str(dest)
        result[cell] = {**entry, "checkpoint": local, "source": ref}
    return result
