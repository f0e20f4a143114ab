"""Quiet, offline-safe defaults for the tools the pipeline drives (set before importing them)."""

import ctypes
import os
from pathlib import Path

# Ray's token authentication stays on (Ray's default since 2.5x): Ray 2.60's gRPC servers
# listen on every interface, even for a local instance, so the token is what keeps them
# private. RAY_AUTH_MODE=disabled would save nothing: measured here, auth costs nothing (docs/design.md §4).
QUIET = {
    # Said explicitly: a local instance then makes its token (~/.ray/auth_token) without warning
    # "Set RAY_AUTH_MODE=disabled to opt out", and a driver or node joining a cluster uses the
    # same mode as the head (a node that guessed differently is refused with InvalidAuthToken).
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    # The MLflow server's job runner costs ~2.3 GiB idle; the pipeline never uses it.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # CheckpointConfig(num_to_keep=1) snapshots the experiment at every trial checkpoint on
    # purpose (a resumed sweep loses less); Tune warns about it dozens of times per sweep.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Ray folds worker lines that differ only in their numbers ("[repeated 2x across
    # cluster]"): the evaluation tasks' per-cell metric lines would vanish from the log.
    "RAY_DEDUP_LOGS": "0",
    # Tune reuses a trial's actor for the next trial only once the old training thread has
    # ended, waiting this long (Ray's default 2 s): a trial stopped by ASHA ends its epoch and
    # its system-metrics monitor's last sample first, which on a loaded machine takes longer,
    # and a failed reset errors the next trial ("Trainable runner reuse requires
    # reset_config() to be implemented and return True").
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
}


def quiet_defaults() -> None:
    """Set each variable unless the user already did."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap threshold (64 MiB) and trim threshold (1 GiB), which turns off their
    dynamic adjustment: freed buffers stay in the heap instead of being returned to the OS and
    page-faulted in again. False where the C library has no mallopt (not glibc).

    Measured by bench/bench_train.py: without it, the conv model's ~25 MB buffers were freed
    and page-faulted afresh at random epochs (0-70k minor faults per epoch), costing 5-14% of
    a conv epoch's CPU time; bench/bench_loglik.py saw the same for the estimator's per-chunk
    decoder buffers (~15% of an evaluation in system time, ~70k page faults/s), and
    bench/bench_study.py for PixelCNN sampling (17.0 s vs 6.8 s per 100 samples). Called by
    every training run and every evaluation. Process-wide, like the thread count."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 64 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def study_home(base: str | Path = ".") -> Path:
    """Where the study's own stores live (a relative MLflow store, its artifact root, the raw
    data): `base`, except inside a queued DVC experiment. `dvc exp run --queue` then `dvc queue
    start` runs the stages in a temporary copy under <repo>/.dvc/tmp/exps/ that DVC deletes once
    it has collected the outputs, so a relative `sqlite:///mlflow.db` there would take the
    experiment's runs and models with it, and the git-ignored data/raw is not in the copy. DVC
    names the repository the experiment was queued from in DVC_ROOT: its stores are the ones the
    user's `mlflow ui` and data/raw are in. (A plain `dvc repro` sets DVC_ROOT to its own root.)"""
    here = Path(base).resolve()
    root = os.environ.get("DVC_ROOT")
    if root and here.is_relative_to(Path(root).resolve() / ".dvc" / "tmp" / "exps"):
        return Path(root).resolve()
    return here


def in_study_home(path: str | Path, base: str | Path = ".") -> Path:
    """`path` (relative to `base`) where the study's home keeps it; as given outside a queued
    experiment (so messages name it as the user wrote it)."""
    home = study_home(base)
    return Path(path) if home == Path(base).resolve() else home / path
