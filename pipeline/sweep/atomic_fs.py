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
"""

from __future__ import annotations

import os
import uuid

import pyarrow as pa
import pyarrow.fs as pafs


class _AtomicFile:
    """A raw binary writer to `<dir>/.tmp-<name>-<uuid>`, renamed to `<dir>/<name>` on close."""

    def __init__(self, path: str):
        self.path = path
        head, name = os.path.split(path)
        self.tmp = os.path.join(head, f".tmp-{name}-{uuid.uuid4().hex[:12]}")
        self._f = open(self.tmp, "wb")
        self.closed = False

    def write(self, data) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

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
        self._f.close()
        # No fsync: the rename is atomic against a killed process, which is the failure here;
        # a power cut is not, but fsyncing every snapshot and checkpoint slowed Tune's syncs.
        os.replace(self.tmp, self.path)


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
        return pa.PythonFile(_AtomicFile(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self._fs.open_append_stream(path)


def storage_filesystem(storage_path: str) -> pafs.FileSystem | None:
    """The filesystem to give Tune for `storage_path`: atomic for local paths, else None
    (Tune resolves a URI's own filesystem)."""
    if "://" in storage_path:
        return None
    return pafs.PyFileSystem(AtomicLocalHandler())
