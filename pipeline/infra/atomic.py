"""Write outputs so that a failure never leaves a half-written or missing result.

Files: write a temporary sibling, fsync, `os.replace` (atomic on POSIX). Directories: build a
temporary sibling, then swap it in; the previous directory is removed only after the new one
is in place.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@functools.cache
def _umask() -> int:
    """The process umask, read once on first use (not on import): Linux shows it in
    /proc/self/status; elsewhere it can only be read by setting it and setting it back."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:  # name the filesystem and the file: Python names neither
            why = f"no space left on {_mount(path)} (writing {path})"
            raise OSError(errno.ENOSPC, why, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mount(path: Path) -> str:
    p = path.resolve().parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return str(p)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows -> Parquet, atomically. Columns are the union over all rows (in first-seen order),
    missing values null: a first row without some metric (a failed trial) drops nothing."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = pa.table({c: [row.get(c) for row in rows] for c in columns}) if rows else pa.table({})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def replace_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `path`, on failure it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
