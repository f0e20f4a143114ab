"""MLflow plumbing shared by the sweep, evaluation and report: one client, checked early.

The tracking URI comes from params (`tracking.uri`): `sqlite:///mlflow.db` (the embedded
default, resolved to an absolute path so Ray workers and later stages find the same file) or
an http(s) tracking server, which is probed before any compute so that an unreachable server
fails in seconds with its address named. Every write retries while sqlite reports "database is
locked" (several processes may share the default store), instead of losing the point.

A server that dies mid-sweep: MLflow's own HTTP retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
_BACKOFF_FACTOR, _TIMEOUT) are sized from `tracking.retry_total_s` instead of MLflow's
defaults (7 retries, factor 2, 120 s timeout: over 4 minutes of silence per call).

Every run the pipeline opens carries `infovae.owner` (host, pid, process start time). Opening
a store closes, KILLED and tagged `infovae.orphaned`, every RUNNING run whose owner was a
process on this host that no longer exists (kill -9, a lost terminal), whichever sweep.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import PipelineError
from pipeline.infra.env import quiet_defaults, study_home
from pipeline.params.study import TrackingParams

T = TypeVar("T")
KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3's UI: runs, not GenAI pages
LOCK_RETRIES = 0  # writes that found sqlite locked and were retried (this process)
TERMINAL = ("FINISHED", "KILLED", "FAILED")
MAX_PARAM_LEN = 500  # MLflow's limit for a param value
OWNER_TAG, ORPHAN_TAG = "infovae.owner", "infovae.orphaned"
STALE_TAGS = (ORPHAN_TAG, "infovae.interrupted", "infovae.error", "infovae.failure", "infovae.incomplete")
HTTP_RETRIES = 5
_CLOSED: set[str] = set()  # stores whose orphans this process already closed


class TrackingError(PipelineError):
    pass


def redact(uri: str) -> str:
    """The URI without credentials (http://user:secret@host -> http://host), for display."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def resolve_uri(uri: str, base: str | Path = ".") -> str:
    """sqlite:///rel.db -> sqlite:////abs/rel.db in env.study_home(base); other schemes unchanged."""
    prefix, base = "sqlite:///", study_home(base)
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((base / uri[len(prefix):]).resolve())
    if "://" not in uri:  # a plain directory: MLflow's file store
        return str((base / uri).resolve())
    return uri


def check_reachable(uri: str, timeout: float) -> None:
    """Fail fast, naming the URI, when the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise TrackingError(f"MLflow server at {redact(uri)} answered {resp.status} on /health")
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(f"MLflow tracking server at {redact(uri)} is unreachable ({err}); "
                                "start it or set tracking.uri") from None
    elif uri.startswith("sqlite:///"):
        directory = Path(uri[len("sqlite:///"):]).parent
        if not directory.is_dir() or not os.access(directory, os.W_OK):
            raise TrackingError(f"tracking.uri {uri}: directory {directory} is missing or not writable")


def is_locked(err: BaseException) -> bool:
    return "database is locked" in str(err) or "database table is locked" in str(err)


def retry(fn: Callable[..., T], *args: Any, attempts: int = 30,
          transient: Callable[[BaseException], bool] = is_locked, **kwargs: Any) -> T:
    """Call fn, retrying with jittered backoff while sqlite is locked by another writer
    (each attempt already waits sqlite's own busy timeout; ~1 min in all before giving up)."""
    global LOCK_RETRIES
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not transient(err) or attempt == attempts - 1:
                raise
            LOCK_RETRIES += 1
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def http_retry_env(total_s: float) -> dict[str, str]:
    """MLflow HTTP retry settings for at most about `total_s` seconds of retrying in all:
    urllib3 sleeps factor * 2**(k-1) before retry k >= 2, so n retries sleep factor * (2**n - 2)
    (MLflow takes an integer factor >= 1: the most retries that fit, at the largest factor).
    Each request may wait max(1, total_s / 4) s: a server that accepts connections but never
    answers takes up to ~2x total_s."""
    retries, factor = 1, 1
    for n in range(HTTP_RETRIES, 0, -1):
        if 2**n - 2 <= total_s:
            retries, factor = n, max(1, int(total_s // max(1, 2**n - 2)))
            break
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(factor),
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(total_s / 4)))}


def lost(err: BaseException | None) -> bool:
    """Whether an error (or its cause) is a tracking server that stopped answering."""
    seen = 0
    while err is not None and seen < 10:
        text = str(err)
        if isinstance(err, TrackingError) or "Max retries exceeded" in text or (
                "API request to" in text and "failed" in text):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def error_line(err: BaseException) -> str:
    """The innermost error's first line (MLflow chains a page of urllib3 internals)."""
    while err.__cause__ or err.__context__:
        err = err.__cause__ or err.__context__
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


def client(cfg: TrackingParams, base: str | Path = "."):
    """A checked MlflowClient for the configured store; its orphaned runs are closed."""
    quiet_defaults()
    for key, value in http_retry_env(cfg.retry_total_s).items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(cfg.uri, base)
    check_reachable(uri, cfg.connect_timeout_s)
    # Constructing the client opens the store and creates or migrates its schema. MLflow's
    # migrations are not safe to run from several processes at once on a fresh sqlite file
    # (measured: "table alembic_version already exists", "duplicate column name"), so
    # opening a sqlite store is serialised with a lock file beside it; a locked database
    # is retried like any write.
    with _opening_lock(uri):
        c = retry(MlflowClient, tracking_uri=uri)
    if uri not in _CLOSED:
        _CLOSED.add(uri)
        close_orphans(c)
    return c


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime (after pid and comm)


def owner() -> str:
    """This process, as `host:pid:start time` (a reused pid has another start time)."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or '?'}"


def owner_gone(tag: str | None) -> bool:
    """Whether the process an owner tag names is known to be gone (only on this host)."""
    import socket

    if not tag or tag.count(":") < 2:
        return False
    host, pid, start = tag.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _start_time(int(pid)) != start


def close_orphans(mlflow_client) -> int:
    """End KILLED every RUNNING run of the store whose owner process is gone; returns how many."""
    exps = retry(mlflow_client.search_experiments)
    if not exps:
        return 0
    ids = [e.experiment_id for e in exps]
    running = retry(mlflow_client.search_runs, ids, "attributes.status = 'RUNNING'", max_results=50000)
    n = 0
    for run in running:
        tag = run.data.tags.get(OWNER_TAG)
        if owner_gone(tag):
            why = f"left RUNNING by process {tag}, which ended without closing it; closed by the next stage"
            set_tags(mlflow_client, run.info.run_id, {ORPHAN_TAG: why})
            terminate(mlflow_client, run.info.run_id, "KILLED")
            n += 1
    if n:
        print(f"closed {n} MLflow run(s) left RUNNING by a process that was killed (tag {ORPHAN_TAG})")
    return n


def reopen(mlflow_client, run_id: str) -> None:
    """Mark an existing run RUNNING again, owned by this process."""
    retry(mlflow_client.update_run, run_id, status="RUNNING")
    set_tags(mlflow_client, run_id, {OWNER_TAG: owner()})


def clear_stale_tags(mlflow_client, run, keep: dict[str, str]) -> None:
    """Drop the reason tags of an earlier ending (orphaned, interrupted) from a run that now
    ended otherwise; the run keeps `infovae.resumed` to say it was."""
    stale = [k for k in STALE_TAGS if k in run.data.tags and k not in keep]
    for key in stale:
        retry(mlflow_client.delete_tag, run.info.run_id, key)
    if stale:
        set_tags(mlflow_client, run.info.run_id, {"infovae.resumed": f"ended earlier ({', '.join(stale)})"})


@contextlib.contextmanager
def _opening_lock(uri: str):
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri[len("sqlite:///"):] + ".lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def experiment_id(mlflow_client, cfg: TrackingParams, base: str | Path = ".") -> str:
    exp = retry(mlflow_client.get_experiment_by_name, cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    root, server = cfg.artifact_root, mlflow_client.tracking_uri.startswith(("http://", "https://"))
    location = None if server else root if "://" in root else (study_home(base) / root).resolve().as_uri()
    try:
        return retry(mlflow_client.create_experiment, cfg.experiment, artifact_location=location, tags=KIND)
    except Exception:  # created concurrently by another process
        return retry(mlflow_client.get_experiment_by_name, cfg.experiment).experiment_id


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def log_params(mlflow_client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(flatten(params).items())]
    for i in range(0, len(items), 100):  # MLflow's batch limit
        retry(mlflow_client.log_batch, run_id, params=items[i:i + 100])


def log_metrics(mlflow_client, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for i in range(0, len(items), 1000):
        retry(mlflow_client.log_batch, run_id, metrics=items[i:i + 1000])


def set_tags(mlflow_client, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    retry(mlflow_client.log_batch, run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])


def log_files(mlflow_client, run_id: str, files: Iterable[Path], artifact_path: str | None = None) -> None:
    for f in files:
        if f.is_file():
            retry(mlflow_client.log_artifact, run_id, str(f), artifact_path)


def terminate(mlflow_client, run_id: str, status: str) -> None:
    assert status in TERMINAL, status
    retry(mlflow_client.set_terminated, run_id, status)
