"""A tracking server killed mid-sweep (issue 13): a clear error within seconds, not a hang;
the training done is kept, and the rerun against the restarted server logs what is missing
without duplicates and leaves no run RUNNING."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.infra.workspace import venv_env
from tests.conftest import free_port, wait_http
from tests.sweep_helpers import redone_finished_trials, starts, tiny_params, trials, write_params

pytestmark = [pytest.mark.faults, pytest.mark.slow]
GRIDS = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "latent_dim": [2, 3, 4]}}
STAGE = [sys.executable, os.path.join(os.path.dirname(__file__), "..", "stages", "sweep.py")]


def _finished(tmp_path) -> set[str]:
    """Trials whose last epoch (3) the driver has processed (Tune's result.json, written by it)."""
    done = set()
    for f in (tmp_path / "ray").glob("*/*/result.json"):  # trial directories: the trial id
        lines = f.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("epoch") == 3:
            done.add(f.parent.name)
    return done


def _server(root, port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=open(root / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
    return proc


def test_tracking_server_killed_mid_sweep_is_a_clear_error_and_the_rerun_completes(tmp_path, prepared_mnist):
    root = tmp_path / "server"
    root.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _server(root, port)
    params = tiny_params(tmp_path, prepared_mnist, GRIDS, tracking_uri=url, max_concurrent_trials=1,
                         extra={"train.epochs": 3, "tracking.retry_total_s": 4.0})
    path = write_params(tmp_path / "params.yaml", params)
    sweep = subprocess.Popen([*STAGE, "--params", str(path)], cwd=tmp_path, env=venv_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not _finished(tmp_path):
            assert sweep.poll() is None and time.time() < deadline, sweep.communicate()[1][-3000:]
            time.sleep(0.2)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        killed = time.time()
        out, err = sweep.communicate(timeout=180)
        took = time.time() - killed
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 2, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]  # Ray's log lines interleave
    assert len(errors) == 1, err[-3000:]
    assert errors[0].startswith(f"error: MLflow tracking server {url} stopped answering"), err[-3000:]
    assert "not logged: " in errors[0] and "Traceback" not in err, err[-3000:]
    assert took < 60, f"{took:.0f} s from the server's death to the error"
    finished_before = _finished(tmp_path)

    server = _server(root, port)  # the same store, restarted
    try:
        done = subprocess.run([*STAGE, "--params", str(path)], cwd=tmp_path, env=venv_env(),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = trials(tmp_path)
        assert len(rows) == 3 and {r["status"] for r in rows} == {"FINISHED"}
        assert redone_finished_trials(starts(tmp_path), finished_before, 3) == []
        from mlflow.tracking import MlflowClient

        client = MlflowClient(url)
        exp = client.get_experiment_by_name(params.tracking.experiment)
        runs = client.search_runs([exp.experiment_id])
        assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
        for row in rows:  # every epoch logged once, the missing ones backfilled
            assert client.get_run(row["mlflow_run_id"]).info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(row["mlflow_run_id"], "val_loss")]
            assert sorted(steps) == [1, 2, 3], (row["trial_id"], steps)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
