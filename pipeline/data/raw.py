"""Find, download and verify raw files (torchvision-style: use what is there, fetch the rest).

Files live in `<raw_dir>/<source>/`, gzipped or plain. Every file's decompressed contents are
checked against the SHA-256 in `pipeline.data.sources`; a download goes to a temporary file in the
same directory and is renamed into place only once complete and verified, so an interrupted
or corrupt transfer never leaves a file that looks valid.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from pipeline.data.sources import RawFile, Source
from pipeline.errors import PipelineError


class RawDataError(PipelineError):
    """A raw file is missing, unreadable, or not the one the study expects."""


class ChecksumError(RawDataError):
    pass


class DownloadError(RawDataError):
    pass


def candidates(directory: Path, f: RawFile) -> list[Path]:
    return [directory / f"{f.name}.gz", directory / f.name]


def decompress(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
        raise RawDataError(f"{path}: damaged gzip file ({err}); delete it to download again") from None


def verify(path: Path, contents: bytes, f: RawFile) -> None:
    digest = hashlib.sha256(contents).hexdigest()
    if digest != f.sha256:
        raise ChecksumError(
            f"{path}: checksum mismatch: SHA-256 of its contents is {digest}, expected {f.sha256} "
            f"({len(contents)} bytes, expected {f.size}); the file is corrupt or not the "
            "official release"
        )


def fetch(url: str, dest: Path, timeout: float) -> None:
    """Download `url` to `dest` via a temporary file; the final name appears only when complete."""
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            length = resp.headers.get("Content-Length")
            got = 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                got += len(chunk)
            if length is not None and got != int(length):
                raise DownloadError(f"{url}: connection closed after {got} of {length} bytes")
        os.replace(tmp, dest)
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DownloadError(f"{url}: {err}") from None
    except Exception as err:  # http.client.IncompleteRead and kin: a broken transfer
        raise DownloadError(f"{url}: transfer failed: {type(err).__name__}: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def download(f: RawFile, directory: Path, mirrors: list[str] | tuple[str, ...],
             timeout: float) -> tuple[Path, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f.remote
    failures = []
    for base in mirrors:
        url = base if base.endswith(f.remote) else base.rstrip("/") + "/" + f.remote
        try:
            fetch(url, dest, timeout)
            contents = decompress(dest)
            verify(dest, contents, f)
            return dest, contents
        except RawDataError as err:
            dest.unlink(missing_ok=True)
            failures.append(f"  {url}: {err}")
    raise DownloadError(f"could not download {f.remote} from any mirror:\n" + "\n".join(failures))


def read_raw(source: Source, role: str, raw_dir: str | Path, *, allow_download: bool,
             mirrors: list[str] | None = None, timeout: float = 30.0) -> tuple[Path, bytes]:
    """Return (path, verified decompressed contents) of one raw file, downloading if allowed."""
    f = source.file(role)
    directory = Path(raw_dir) / source.name
    for path in candidates(directory, f):
        if path.is_file():
            contents = decompress(path)
            verify(path, contents, f)
            return path, contents
    looked = ", ".join(str(p) for p in candidates(directory, f))
    if not allow_download:
        raise RawDataError(
            f"missing raw file for {source.name} {role}: looked for {looked}; place the official "
            "file there or set data.download: true"
        )
    return download(f, directory, mirrors or source.mirrors, timeout)
