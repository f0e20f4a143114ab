"""The prepared data, carried to Ray's tasks through its object store: no node needs the
repository's disk (the nodes of a cluster of cloud VMs or pods share no filesystem).

The driver reads the Parquet files the tasks read (a trial: train and validation; an
evaluation: every split; a few MB for MNIST) once, and puts them in the object store once for
all tasks (Tune's `with_parameters`, `ray.put`). A task writes them to a directory of its
node's temporary directory named by their content digest (once per node: later tasks find it
whole), then reads from there through `load_split`, which verifies each file against the
checksum prepare recorded in it, exactly as from the repository's copy. The same path is taken
on one machine, so what a cluster runs is what the tests run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pipeline.data.splits import content_digest

SHIPPED = ("train", "validation")  # the splits a trial reads (pipeline.train.trainer)


def pack(data_dir: str | Path, splits: tuple[str, ...] = SHIPPED) -> dict[str, Any]:
    """The files of the prepared splits a task reads, with their digest (names -> bytes)."""
    files = {f"{s}.parquet": (Path(data_dir) / f"{s}.parquet").read_bytes() for s in splits}
    return {"digest": content_digest(data_dir, splits), "files": files}


def unpack(packed: dict[str, Any], root: str | Path | None = None) -> str:
    """The directory on this node holding the packed files: written once, through a sibling
    renamed into place whole, so a trial never reads a directory another is still writing. A
    copy found there is used only if every file has the packed bytes' sha256; a damaged one
    (a disk error, a file edited on the node) is replaced, never trained on."""
    dest = Path(root or tempfile.gettempdir()) / "infovae-data" / packed["digest"]
    want = {name: hashlib.sha256(data).hexdigest() for name, data in packed["files"].items()}
    if _holds(dest, want):
        return str(dest)
    part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    part.mkdir(parents=True)
    try:
        for name, data in packed["files"].items():
            (part / name).write_bytes(data)
        if dest.exists() and not _holds(dest, want):
            shutil.rmtree(dest, ignore_errors=True)
        try:
            os.rename(part, dest)
        except OSError:  # another task on this node got there first: use its copy if whole
            if not _holds(dest, want):
                raise
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return str(dest)


def _holds(directory: Path, want: dict[str, str]) -> bool:
    """Whether `directory` has every file with the wanted sha256."""
    try:
        return all(hashlib.sha256((directory / name).read_bytes()).hexdigest() == sha
                   for name, sha in want.items())
    except OSError:
        return False
