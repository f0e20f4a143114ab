"""Shared fixtures: the repository root, ../shared data (skipped with a reason when absent),
and quiet, offline-safe environment variables for every tool the tests start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from pipeline.infra.env import quiet_defaults

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INFOVAE_SHARED", ROOT.parent / "shared"))
MNIST_DIR = SHARED / "datasets" / "mnist"
BINARIZED_DIR = SHARED / "datasets" / "binarized_mnist"
FASHION_DIR = Path(os.environ.get("INFOVAE_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))

quiet_defaults()
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the cores: a library's own thread pool per process (torch's intra-op
    # threads, OpenMP) would put 4 busy threads on 2 cores, each spinning while it waits for the
    # other. Code that sets its threads itself (train.threads, evaluate.threads) still does.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _need(path: Path, what: str) -> Path:
    if not path.is_dir():
        pytest.skip(f"{what} not found at {path} (set INFOVAE_SHARED to the shared/ directory)")
    return path


def link_raw(raw_dir: Path, source: str, src_dir: Path) -> Path:
    """Make `raw_dir/source` hold symlinks to the files of `src_dir` (never copies into git)."""
    dest = raw_dir / source
    dest.mkdir(parents=True, exist_ok=True)
    for f in src_dir.iterdir():
        if f.is_file():
            (dest / f.name).symlink_to(f)
    return raw_dir


@pytest.fixture(scope="session")
def mnist_raw(tmp_path_factory) -> Path:
    """A raw-data directory with the real MNIST (and binarized MNIST) from ../shared."""
    _need(MNIST_DIR, "MNIST IDX files (../shared/datasets/mnist)")
    raw = tmp_path_factory.mktemp("raw")
    link_raw(raw, "mnist", MNIST_DIR)
    if BINARIZED_DIR.is_dir():
        link_raw(raw, "binarized_mnist", BINARIZED_DIR)
    return raw


@pytest.fixture(scope="session")
def prepared_mnist(mnist_raw, tmp_path_factory) -> Path:
    """Real MNIST prepared once per session with the default data params (dynamic)."""
    from pipeline.data.prepare import prepare
    from pipeline.params.data import DataParams

    out = tmp_path_factory.mktemp("prepared")
    prepare(DataParams(raw_dir=str(mnist_raw), out_dir=str(out / "data"),
                       summary=str(out / "summary.json"), download=False))
    return out / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def running_mlflow_server(root: Path, env: dict[str, str] | None = None):
    """A real MLflow tracking server on 127.0.0.1 (sqlite backend in `root`, proxied artifacts);
    yields its URL and stops it (its whole process group) on exit."""
    port = free_port()
    env = {**(env or os.environ), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env=env, stdout=open(root / "server.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", proc=proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


CREDENTIALS = {"AWS_ACCESS_KEY_ID": "infovae-test", "AWS_SECRET_ACCESS_KEY": "infovae-test",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """An S3-compatible server (moto) on a free loopback port, in its own process group; yields
    the endpoint `host:port` with test credentials in the environment, then stops it."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60, proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bucket_uri(endpoint: str, bucket: str, prefix: str = "ray") -> str:
    return f"s3://{bucket}/{prefix}?endpoint_override={endpoint}&scheme=http&allow_bucket_creation=true"


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 (sqlite backend, proxied artifacts)."""
    with running_mlflow_server(tmp_path / "mlflow-server") as url:
        yield url


# ---- the suite on every core (pytest-xdist, -n 2 --dist loadfile; pyproject's addopts) -------

HEAVY = ("cluster", "faults", "slow")  # markers of the tests that start Ray, a study or a server
# Seconds each long file took alone on 2 cores (pytest --durations=0, 2026-12-08): an order hint
# only (a wrong figure costs minutes at the end of the run, never a result). A file not listed
# counts 10 s per heavy test.
COST = {"test_queue.py": 330, "test_faults.py": 324, "test_study.py": 184, "test_cluster.py": 156,
        "test_sweep.py": 128, "test_faults_signals.py": 96, "test_faults_tracking.py": 78,
        "test_train.py": 60, "test_metrics_eval.py": 46, "test_faults_disk.py": 42,
        "test_evaluate_study.py": 42, "test_cli.py": 38, "test_faults_status.py": 35,
        "test_storage.py": 23}


def pytest_collection_modifyitems(config, items):
    """The longest files first, as a hint. xdist's loadfile keeps a file on one worker (its
    module fixtures, a smoke study or a two-node cluster, are built once); by default it then
    queues the files with the most tests first (--loadscope-reorder), which this order breaks
    ties of. Tried with --no-loadscope-reorder (this order exactly): pytest 20.0 min against
    20.9, but the two-node cluster file then ran beside the heaviest files and its killed-worker
    test failed (see tests/test_cluster.py). (loadgroup would split files finer, but with pytest 9.2 xdist 3.8
    cannot tag a node id with its group.)"""
    heavy = Counter(item.path for item in items if any(item.get_closest_marker(m) for m in HEAVY))
    items.sort(key=lambda item: -COST.get(item.path.name, 10 * heavy[item.path]))  # stable
