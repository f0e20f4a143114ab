"""Quiet, offline-safe defaults for the tools the pipeline drives (set before importing them)."""

import os

QUIET = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    # The MLflow server's job runner costs ~2.3 GiB idle; the pipeline never uses it.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def quiet_defaults() -> None:
    """Set each variable unless the user already did."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
