"""A local pyarrow filesystem whose files appear whole or not at all, for Ray Tune's storage.

Tune snapshots the experiment (experiment_state-*.json, the searcher's state) in its driver's
staging directory, then a background thread copies the files into the storage path with
pyarrow.fs.copy_files, which truncates and rewrites each file in place. A sweep killed during
that copy (kill -9, a lost node) leaves a zero-length or truncated experiment_state file;
`Tuner.restore` then fails to read it, logs "Failed to restore the run state", and silently
starts the experiment afresh with no trials. The fault suite hit this (tests/test_sweep.py,
about one run in three, when the kill landed in the copy).

Handing Tune this filesystem (RunConfig / Tuner.restore / Tuner.can_restore
storage_filesystem) makes every file it writes go to a hidden temporary name in the same
directory, renamed over the target on close: a reader sees the previous complete file or the
new one. Temporary names start with ".tmp-", which no Tune pattern (experiment_state-*.json,
searcher-state-*.pkl, checkpoint_*) matches. Only for local paths (and shared mounts): object
stores (s3://, gs://) already publish an object whole.

Second race, same kill: with CheckpointConfig(num_to_keep=1) Tune deletes a trial's previous
checkpoint as soon as it registers the next, while the snapshot naming the next one is still
being synced; a kill in between leaves a snapshot that names a deleted checkpoint, and the
resumed trial fails ("Could not recover from checkpoint as it does not exist on storage
anymore"). So deleting a checkpoint_* directory is deferred: it happens once an experiment
snapshot whose upload began after the deletion was asked for has been published (that snapshot
no longer names it), or at flush_deferred() when the sweep ends. A deferral lost to a kill
leaves an old checkpoint on disk, which prune_stale_checkpoints removes after the next fit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

CHECKPOINT_DIR = re.compile(r"checkpoint_\d+$")
SNAPSHOT = re.compile(r"experiment_state-.*\.json$")

# Process-wide: Tune deletes through the filesystem of the Checkpoint object (unpickled apart
# from the storage's own), and publishes snapshots through the storage's.
_deferred: list[tuple[float, str]] = []
_lock = threading.Lock()


def _delete_deferred(asked_before: float) -> None:
    global _deferred
    with _lock:
        due = [p for t, p in _deferred if t < asked_before]
        _deferred = [(t, p) for t, p in _deferred if t >= asked_before]
    for path in due:
        shutil.rmtree(path, ignore_errors=True)


def flush_deferred() -> None:
    """Delete every deferred checkpoint (the sweep's fit has returned: its state is final)."""
    _delete_deferred(float("inf"))


def prune_stale_checkpoints(trial_dir: str | Path, keep: str | Path) -> int:
    """Remove the checkpoint_* directories of a trial other than `keep` (deletions a killed
    sweep never carried out); returns how many."""
    keep = Path(keep).resolve()
    stale = [d for d in Path(trial_dir).glob("checkpoint_*")
             if d.is_dir() and CHECKPOINT_DIR.match(d.name) and d.resolve() != keep]
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    return len(stale)


def _no_space(err: OSError, path: str) -> OSError:
    """ENOSPC as "no space left on <mount> (writing <path>)": Python's own message names
    neither, and Tune's trial error showed only the pyarrow wrapper."""
    if err.errno != errno.ENOSPC:
        return err
    from pipeline.sweep.outcome import no_space

    return OSError(errno.ENOSPC, no_space(path), path)


class _AtomicFile:
    """A raw binary writer to `<dir>/.tmp-<name>-<uuid>`, renamed to `<dir>/<name>` on close;
    then `on_published()`, if given. A failed write (no space left) removes the temporary
    file, and the close that follows publishes nothing: the previous file stays."""

    def __init__(self, path: str, on_published=None):
        self.path = path
        self.on_published = on_published
        head, name = os.path.split(path)
        self.tmp = os.path.join(head, f".tmp-{name}-{uuid.uuid4().hex[:12]}")
        self.failed = False
        self.closed = False
        try:
            self._f = open(self.tmp, "wb")
        except OSError as err:
            raise _no_space(err, path) from None

    def _fail(self, err: OSError):
        self.failed = True
        with contextlib.suppress(OSError):
            self._f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
        return _no_space(err, self.path)

    def write(self, data) -> int:
        if self.failed:
            raise OSError(errno.EIO, f"an earlier write to {self.path} failed")
        try:
            return self._f.write(data)
        except OSError as err:
            raise self._fail(err) from None

    def flush(self) -> None:
        if self.failed:
            return
        try:
            self._f.flush()
        except OSError as err:
            raise self._fail(err) from None

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.failed:
            return
        try:
            self._f.close()  # flushes the last buffered bytes: may meet the full disk too
        except OSError as err:
            raise self._fail(err) from None
        # No fsync: the rename is atomic against a killed process, which is the failure here;
        # a power cut is not, but fsyncing every snapshot and checkpoint slowed Tune's syncs.
        os.replace(self.tmp, self.path)
        if self.on_published is not None:
            self.on_published()


class AtomicLocalHandler(pafs.FileSystemHandler):
    """pyarrow's LocalFileSystem, except that output streams are atomic (see the module)."""

    def __init__(self):
        self._fs = pafs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __ne__(self, other) -> bool:
        return not self == other

    def __reduce__(self):  # Ray ships the storage filesystem to the trial workers
        return (AtomicLocalHandler, ())

    def get_type_name(self) -> str:
        return "infovae-atomic-local"

    def normalize_path(self, path):
        return self._fs.normalize_path(path)

    def get_file_info(self, paths):
        return self._fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self._fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        if CHECKPOINT_DIR.match(os.path.basename(path.rstrip("/"))):
            with _lock:
                _deferred.append((time.monotonic(), path))
            return
        self._fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to delete the contents of the filesystem root")

    def delete_file(self, path):
        self._fs.delete_file(path)

    def move(self, src, dest):
        self._fs.move(src, dest)

    def copy_file(self, src, dest):
        with self._fs.open_input_stream(src) as fin, self.open_output_stream(dest, None) as fout:
            while chunk := fin.read(1 << 24):
                fout.write(chunk)

    def open_input_stream(self, path):
        return self._fs.open_input_stream(path)

    def open_input_file(self, path):
        return self._fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        done = None
        if SNAPSHOT.search(os.path.basename(path)):
            began = time.monotonic()
            done = lambda: _delete_deferred(began)  # noqa: E731
        return pa.PythonFile(_AtomicFile(path, done), mode="w")

    def open_append_stream(self, path, metadata):
        return self._fs.open_append_stream(path)


def storage_filesystem(storage_path: str) -> pafs.FileSystem | None:
    """The filesystem to give Tune for `storage_path`: atomic for local paths, else None
    (Tune resolves a URI's own filesystem)."""
    if "://" in storage_path:
        return None
    return pafs.PyFileSystem(AtomicLocalHandler())
