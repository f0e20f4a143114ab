"""The download path against real HTTP servers on 127.0.0.1 (and a file:// mirror)."""

from __future__ import annotations

import gzip
import http.server
import threading
from pathlib import Path

import pytest

from pipeline.data.prepare import prepare
from pipeline.data.raw import DownloadError
from pipeline.data.splits import load_split
from pipeline.params.data import DataParams
from tests.synthetic import fake_mnist, idx_contents, write_source


class _Server:
    """http.server on an ephemeral loopback port; `mode` picks how it answers."""

    def __init__(self, root: Path, mode: str = "ok"):
        served = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                path = root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if mode == "substitute":  # a well-formed file with other contents
                    inner = gzip.decompress(data)
                    data = gzip.compress(inner[:-1] + bytes([inner[-1] ^ 1]))
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mode == "dies":  # promise everything, send half, hang up
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                if mode == "corrupt":  # damaged in transit: gzip's own check fails
                    data = data[:-1] + bytes([data[-1] ^ 1])
                self.wfile.write(data)
                served.append(self.path)

            def log_message(self, *args):
                pass

        self.served = served
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Synthetic MNIST-format files laid out as on a mirror, and their Source registry."""
    root = tmp_path_factory.mktemp("mirror")
    source = write_source(root, idx_contents(fake_mnist()), name="files")
    return root, source


def _cfg(tmp_path, mirrors, **kw):
    return DataParams(raw_dir=str(tmp_path / "raw"), out_dir=str(tmp_path / "data"),
                      summary=str(tmp_path / "summary.json"), mirrors=mirrors,
                      download_timeout_s=5.0, train_sizes=[500], **kw)


def _sources(source):
    return {"mnist": type(source)("mnist", source.files, ())}


def test_download_missing_files(tmp_path, mirror):
    root, source = mirror
    with _Server(root) as server:
        prepare(_cfg(tmp_path, [server.url]), sources=_sources(source))
        assert len(server.served) == 4
    names = sorted(p.name for p in (tmp_path / "raw" / "mnist").iterdir())
    assert names == sorted(f.remote for f in source.files.values())
    assert len(load_split(tmp_path / "data", "test")) == 10000
    # Files now present are used as they are: a second prepare downloads nothing.
    with _Server(root) as server:
        prepare(_cfg(tmp_path, [server.url]), sources=_sources(source))
        assert server.served == []


def test_server_dying_mid_file_leaves_nothing(tmp_path, mirror):
    root, source = mirror
    with _Server(root, mode="dies") as server:
        with pytest.raises(DownloadError, match=r"could not download .* from any mirror"):
            prepare(_cfg(tmp_path, [server.url]), sources=_sources(source))
    assert list((tmp_path / "raw" / "mnist").iterdir()) == []  # no partial or temp file
    assert not (tmp_path / "data").exists()


def test_falls_back_to_the_next_mirror(tmp_path, mirror):
    root, source = mirror
    with _Server(root, mode="dies") as bad, _Server(root, mode="corrupt") as wrong, \
            _Server(root) as good:
        prepare(_cfg(tmp_path, [bad.url, wrong.url, good.url]), sources=_sources(source))
        assert len(good.served) == 4
    assert len(load_split(tmp_path / "data", "train")) == 55000


@pytest.mark.parametrize("mode, reason", [("substitute", "checksum mismatch"),
                                          ("corrupt", "damaged gzip")])
def test_bad_download_is_rejected_and_removed(tmp_path, mirror, mode, reason):
    root, source = mirror
    with _Server(root, mode=mode) as server:
        with pytest.raises(DownloadError, match=reason):
            prepare(_cfg(tmp_path, [server.url]), sources=_sources(source))
    assert list((tmp_path / "raw" / "mnist").iterdir()) == []


def test_unreachable_mirror_fails_fast(tmp_path, mirror):
    _, source = mirror
    with pytest.raises(DownloadError, match="127.0.0.1:9"):
        prepare(_cfg(tmp_path, ["http://127.0.0.1:9/"]), sources=_sources(source))


def test_file_url_mirror(tmp_path, mirror):
    root, source = mirror
    prepare(_cfg(tmp_path, [(root / "files").as_uri()]), sources=_sources(source))
    assert len(load_split(tmp_path / "data", "validation")) == 5000


def test_download_disabled_names_the_missing_file(tmp_path, mirror):
    _, source = mirror
    with pytest.raises(Exception, match="set data.download: true"):
        prepare(_cfg(tmp_path, [], download=False), sources=_sources(source))
