"""Signals to the terminal's process group during the sweep and evaluate stages (issue 13).

Each test runs the real `dvc repro` in its own session and sends the signal to the whole
process group, as a terminal's Ctrl-C or a scheduler's SIGTERM would: dvc, the stage, Ray and
its workers all receive it. The stage must end promptly, exit non-zero with a summary, leave
no MLflow run RUNNING, and the next plain `dvc repro` (no -f) must resume without redoing any
finished trial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.infra.workspace import venv_env
from tests.sweep_helpers import redone_finished_trials
from tests.test_faults import audit, dvc, edit_params, mlflow_runs, need_mnist, study_copy

pytestmark = [pytest.mark.faults, pytest.mark.slow]

THREE = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "latent_dim": [2, 3, 4]}}
SHRUNK = dict(train__epochs=2, train__train_size=500, train__validation_size=200, train__diagnostics_size=200,
              sweep__max_concurrent_trials=1, evaluate__loglik_train_size=0,
              evaluate__semisupervised_repeats=1, evaluate__classifier={"epochs": 1, "train_size": 2000})


def _start(repo, *args):
    return subprocess.Popen(["dvc", "repro", *args], cwd=repo, env=venv_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _signal_after(proc, repo, sig: int, ended: int) -> tuple[str, float]:
    """Send `sig` to the process group once `ended` trials have ended; (output, seconds to exit)."""
    deadline = time.time() + 600
    while time.time() < deadline:
        if sum(lines[-1]["event"] == "end" for lines in audit(repo).values()) >= ended:
            break
        assert proc.poll() is None, "ended before the signal:\n" + proc.stdout.read()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    sent = time.time()
    out, _ = proc.communicate(timeout=180)
    return out, time.time() - sent


def _no_run_left_running(repo) -> list:
    client, runs = mlflow_runs(repo)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    return runs


def _interrupted_sweep(tmp_path, sig: int):
    """A 3-trial sweep under `dvc repro sweep`, signalled once one trial has finished."""
    need_mnist()
    repo = study_copy(tmp_path / "repo", profile=None)
    edit_params(repo, THREE, **SHRUNK)
    proc = _start(repo, "sweep")
    out, took = _signal_after(proc, repo, sig, ended=1)
    name = signal.Signals(sig).name
    assert proc.returncode != 0, out[-3000:]
    assert f"interrupted by {name}" in out and "`dvc repro` resumes the sweep" in out, out[-3000:]
    assert took < 60, f"{took:.0f} s from {name} to exit"
    assert "sweep" not in _recorded(repo)  # DVC did not record the interrupted stage
    runs = _no_run_left_running(repo)
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all("infovae.interrupted" in r.data.tags for r in killed)
    parent = [r for r in runs if "ray.trial_id" not in r.data.tags]
    assert [r.info.status for r in parent] == ["KILLED"]
    return repo


def _recorded(repo) -> dict:
    lock = yaml.safe_load((repo / "dvc.lock").read_text()) if (repo / "dvc.lock").exists() else {}
    return (lock or {}).get("stages", {})


def test_sigterm_mid_sweep_exits_nonzero_and_closes_every_run(tmp_path):
    _interrupted_sweep(tmp_path, signal.SIGTERM)


def test_ctrl_c_mid_sweep_then_mid_evaluate_each_resumes_with_plain_dvc_repro(tmp_path):
    repo = _interrupted_sweep(tmp_path, signal.SIGINT)
    finished_before = {t for t, lines in audit(repo).items() if lines[-1]["event"] == "end"}
    done = dvc(repo, "repro", "sweep")  # no -f: the unrecorded sweep stage runs again and resumes
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = pq.read_table(repo / "results" / "sweep" / "trials.parquet").to_pylist()
    assert len(rows) == 3 and {r["status"] for r in rows} == {"FINISHED"}
    assert redone_finished_trials(audit(repo), finished_before, 2) == []
    runs = _no_run_left_running(repo)
    children = [r for r in runs if r.data.tags.get("ray.trial_id") in {x["trial_id"] for x in rows}]
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 3
    assert not any("infovae.interrupted" in r.data.tags for r in children)  # the stale reason is gone

    # SIGTERM to the evaluate stage once it has measured one cell: non-zero, not recorded,
    # and the rerun measures only the cells it had not.
    proc = _start(repo, "evaluate")
    cache = repo / "results" / "eval" / "cache"
    deadline = time.time() + 300
    while not list(cache.glob("*.json")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "interrupted by SIGTERM" in out, out[-3000:]
    assert "evaluate" not in _recorded(repo)
    done = dvc(repo, "repro", "evaluate")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count(": cached") >= 1, done.stdout[-3000:]
    metrics = pq.read_table(repo / "results" / "eval" / "metrics.parquet").to_pylist()
    assert {m["status"] for m in metrics} == {"EVALUATED"} and len(metrics) == 3
