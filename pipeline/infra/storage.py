"""Where a sweep's trials write and the evaluation reads: a local directory or an object store.

`sweep.storage_path` is a path (relative to the repository) or a URI that pyarrow resolves to a
filesystem: `s3://bucket/prefix` (query options for an S3-compatible store such as MinIO or
Ceph: `?endpoint_override=host:port&scheme=http`, also `region=`), `gs://bucket/prefix`,
`file:///abs/path`. Ray Tune takes the filesystem and the path inside it (pyarrow's form,
without the scheme), so checkpoints and Tune's state reach the store from whichever node ran
the trial, and no node needs to see another's disk.

A location is written down as its URI (best.json's checkpoints), query included, so that a
reader on any machine opens the same store the same way (`open_uri`); credentials never travel
in it (refused by `check_uri`: pyarrow reads them from the environment, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY for S3, or the node's role).
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from pipeline.errors import PipelineError
from pipeline.params.study import REMOTE_SCHEMES as REMOTE
from pipeline.params.study import storage_problem
from pipeline.params.study import uri_scheme as scheme


class StorageError(PipelineError):
    pass


def is_remote(ref: str | None) -> bool:
    """Whether a location (a path or a URI) is in an object store."""
    return bool(ref) and scheme(ref) in REMOTE


def check_uri(value: str, key: str) -> str:
    """`value` as a storage location, or a StorageError naming `key` (no I/O)."""
    problem = storage_problem(value)
    if problem:
        raise StorageError(f"{key}: {problem}")
    return value


@dataclass(frozen=True)
class Location:
    """A directory on a filesystem: `path` inside `fs`; `uri` says it to a person or another node."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def child(self, *parts: str) -> Location:
        path = "/".join([self.path.rstrip("/"), *parts])
        return Location(self.fs, path, uri_of(self, path))

    def read_text(self, name: str) -> str | None:
        """The text of the file `name` inside this location (None: there is none)."""
        try:
            with self.fs.open_input_stream(f"{self.path}/{name}") as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def write_text(self, name: str, text: str) -> None:
        """Replace the file `name` whole: a local file through a temporary sibling and a rename,
        an object in one PUT (an object store never shows a half-written object)."""
        path = f"{self.path}/{name}"
        if not self.remote:
            from pipeline.infra import atomic

            atomic.write_bytes(path, text.encode())
            return
        with self.fs.open_output_stream(path) as f:
            f.write(text.encode())


def uri_of(loc: Location, path: str) -> str:
    """The URI of `path` on `loc`'s filesystem, with `loc`'s query (the store's options)."""
    s = scheme(loc.uri)
    if not s or s == "file":
        return path if not s else f"file://{path}"
    query = urlsplit(loc.uri).query
    return f"{s}://{path}" + (f"?{query}" if query else "")


def resolve(value: str, base: str | Path, key: str = "sweep.storage_path") -> Location:
    """The location of a storage setting: a path is taken relative to `base`, a URI is opened
    with pyarrow (no request is made yet: see `probe`)."""
    check_uri(value, key)
    if not scheme(value):
        path = str((Path(base) / value).resolve())
        return Location(pafs.LocalFileSystem(), path, path)
    try:
        fs, path = pafs.FileSystem.from_uri(value)
    except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid / OSError / ValueError
        raise StorageError(f"{key}: cannot open {value!r}: {err}") from None
    return Location(fs, path.rstrip("/"), value)


def open_uri(uri: str, base: str | Path) -> Location:
    """A location written down by `Location.uri` or `uri_of` (or a path relative to `base`)."""
    return resolve(uri, base, key=uri)


def probe(loc: Location, key: str = "sweep.storage_path") -> float:
    """Fail now, naming the store, when `loc` cannot be written: create the directory, write a
    small object, read it back and delete it. Returns the seconds it took. An unreachable
    endpoint fails after pyarrow's connection retries (a few seconds), before any training."""
    began = time.perf_counter()
    endpoint = dict(parse_qsl(urlsplit(loc.uri).query)).get("endpoint_override")
    if endpoint:  # a plain connect first: pyarrow's retries take seconds to say "refused"
        host, _, port = endpoint.split("://")[-1].rpartition(":")
        address = (host or endpoint, int(port) if port.isdigit() else 443)
        try:
            socket.create_connection(address, timeout=5).close()
        except OSError as err:
            raise StorageError(f"{key}: the store {loc.uri} is unreachable: {endpoint}: {err}") from None
    name = f".infovae-probe-{uuid.uuid4().hex[:8]}"
    try:
        loc.fs.create_dir(loc.path, recursive=True)
        loc.write_text(name, "probe")
        ok = loc.read_text(name) == "probe"
        loc.fs.delete_file(f"{loc.path}/{name}")
    except Exception as err:  # noqa: BLE001 - any failure of the store is the user's to see
        raise StorageError(f"{key}: the store {loc.uri} cannot be written: {_first_line(err)}") from None
    if not ok:
        raise StorageError(f"{key}: the store {loc.uri} returned other bytes than were written")
    return time.perf_counter() - began


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def fetch(loc: Location, dest: Path) -> Path:
    """Copy the directory `loc` into `dest` (created), file by file."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        pafs.copy_files(loc.path, str(dest), source_filesystem=loc.fs,
                        destination_filesystem=pafs.LocalFileSystem())
    except Exception as err:  # noqa: BLE001
        raise StorageError(f"cannot copy {loc.uri} to {dest}: {_first_line(err)}") from None
    return dest


def upload(src: Path, loc: Location) -> None:
    """Copy the local directory `src` into `loc`, file by file (each object replaced whole)."""
    try:
        pafs.copy_files(str(src), loc.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=loc.fs)
    except Exception as err:  # noqa: BLE001
        raise StorageError(f"cannot copy {src} to {loc.uri}: {_first_line(err)}") from None
