"""The sweep with real components: Ray Tune (local, declared GPUs, a two-node cluster on
127.0.0.1), Optuna, and MLflow (the sqlite default and a tracking server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import ray

from pipeline.infra.cluster import shutdown as stop_ray
from pipeline.params.load import ParamsError
from pipeline.sweep.run import run_sweep
from tests.conftest import ROOT
from tests.sweep_helpers import (
    best,
    intervals,
    max_overlap,
    redone_finished_trials,
    starts,
    tiny_params,
    trials,
    write_params,
)

TWO_METHODS = {"g": {"method": [{"divergence": "kl", "alpha": 0.0, "lambda": 1.0},
                                {"divergence": "mmd", "alpha": 1.0, "lambda": 100.0}]}}


@pytest.fixture(autouse=True)
def _no_ray_left():
    yield
    if ray.is_initialized():
        stop_ray()


def _mlflow_runs(uri: str, experiment: str = "infovae"):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    return c, c.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow
def test_small_sweep_covers_every_cell_and_records_mlflow(tmp_path, prepared_mnist):
    grids = {**TWO_METHODS, "h": {"divergence": ["mmd"], "alpha": [0.0, 1.0], "lambda": [50.0]}}
    params = tiny_params(tmp_path, prepared_mnist, grids, trials_per_cell=2,
                         search={"train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}},
                         scheduler="asha", max_concurrent_trials=2)
    summary = run_sweep(params, tmp_path)
    rows = trials(tmp_path)
    # 3 cells (mmd alpha=1 lambda=100 and alpha=1 lambda=50 differ; kl; mmd alpha=0) x 2 trials
    cells = {r["cell"] for r in rows}
    assert summary["cells"] == 4 and len(cells) == 4 and len(rows) == 8
    assert all(sum(r["cell"] == c for r in rows) == 2 for c in cells)
    assert {r["status"] for r in rows} <= {"FINISHED", "KILLED"}
    lrs = sorted(r["lr"] for r in rows)
    # each cell's first trial at the study's lr (sweep.first_trial_at_base), then Optuna's draws
    assert lrs.count(params.train.lr) == 4 and len(set(lrs)) == 5
    assert all(1e-4 <= lr <= 3e-3 for lr in lrs)
    assert all(r["torch_threads"] == 1 for r in rows)  # each trial's torch threads = its 1 CPU
    b = best(tmp_path)
    assert set(b) == cells and all(e["checkpoint"] for e in b.values())
    for entry in b.values():  # the best trial is the lowest val_loss of its cell
        mine = [r for r in rows if r["cell"] == [k for k, v in b.items() if v is entry][0]]
        finished = [r for r in mine if r["status"] == "FINISHED"] or mine
        assert entry["value"] == min(r["val_loss"] for r in finished)

    client, runs = _mlflow_runs(params.tracking.uri)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert len(children) == 8
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}
    assert all(r.info.status != "RUNNING" for r in runs)
    by_run = {r["mlflow_run_id"]: r for r in rows}
    for run in children:
        row = by_run[run.info.run_id]
        assert run.data.tags["ray.trial_id"] == row["trial_id"]
        assert run.data.tags["infovae.cell"] == row["cell"]
        assert run.data.params["objective.divergence"] == row["divergence"]
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(1, row["epochs_done"] + 1))
        assert (run.info.status == "KILLED") == (row["epochs_done"] < 2)
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "images")}
        assert arts == {"images/samples.png", "images/reconstructions.png"}
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == \
            ["checkpoint/checkpoint.pt"]
    assert not any(str(tmp_path) in v for r in children for v in r.data.params.values())

    # Each cell's Optuna study is in the journal beside the sweep's tables (optuna-dashboard's
    # input): its two trials, with the lr each ran and, for a finished one, its val_loss.
    import optuna

    from pipeline.sweep.search import journal_storage

    storage = journal_storage(str(tmp_path / "sweep" / "optuna.journal"))
    names = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    assert set(names) == {f"{summary['experiment']}/{c}" for c in cells}
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        mine = sorted((r for r in rows if r["cell"] == name.split("/")[1]), key=lambda r: r["lr"])
        assert study.user_attrs["cell_label"] == mine[0]["cell_label"]
        ran = sorted(study.trials, key=lambda t: t.params["train.lr"])
        assert [t.params["train.lr"] for t in ran] == pytest.approx([r["lr"] for r in mine])
        for t, r in zip(ran, mine):
            done = r["status"] == "FINISHED"
            assert t.state == (optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED)
            assert not done or t.value == pytest.approx(r["val_loss"])

    # Rerunning the finished sweep resumes it: nothing is trained again, no run is added.
    before = starts(tmp_path)
    again = run_sweep(params, tmp_path)
    assert again["trials"] == 8 and starts(tmp_path) == before
    assert len(_mlflow_runs(params.tracking.uri)[1]) == 9


@pytest.mark.slow
def test_declared_gpus_pack_four_fractional_trials(tmp_path, prepared_mnist):
    grids = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "latent_dim": [2, 3, 4, 5]}}
    # Trials of a few seconds, so that all four run at once if the resources allow it.
    params = tiny_params(tmp_path, prepared_mnist, grids, num_cpus=2, num_gpus=2,
                         cpus_per_trial=0.5, gpus_per_trial=0.5, scheduler="none",
                         extra={"train.epochs": 4, "train.train_size": 4000})
    run_sweep(params, tmp_path)
    rows = trials(tmp_path)
    assert len(rows) == 4
    assert sorted(r["gpu_ids"] for r in rows) == ["0", "0", "1", "1"]  # two trials per GPU
    assert all(r["cuda_visible_devices"] == r["gpu_ids"] for r in rows)  # each sees its own GPU
    assert all(r["device"] == "cpu" for r in rows)  # no CUDA here: the trial falls back to CPU
    assert all(r["torch_threads"] == 1 for r in rows)
    assert max_overlap(intervals(tmp_path)) == 4  # 4 x (0.5 CPU, 0.5 GPU) fit at once


@pytest.mark.slow
def test_resources_no_node_can_offer_are_rejected_before_training(tmp_path, prepared_mnist):
    params = tiny_params(tmp_path, prepared_mnist, TWO_METHODS, num_cpus=2, cpus_per_trial=3)
    with pytest.raises(Exception, match=r"sweep.cpus_per_trial = 3 but the largest Ray node offers 2 CPUs"):
        run_sweep(params, tmp_path)
    assert not (tmp_path / "sweep").exists()


def test_invalid_grid_cell_is_rejected_before_compute(tmp_path, prepared_mnist):
    grids = {"bad": {"divergence": ["mmd"], "alpha": [-1.0], "lambda": [1.0]}}
    params = tiny_params(tmp_path, prepared_mnist, grids)
    with pytest.raises(ParamsError, match=r"(?s)sweep.grids.bad: cell .* alpha \+ lambda - 1 = -1 < 0"):
        run_sweep(params, tmp_path)
    assert not ray.is_initialized() and not (tmp_path / "ray").exists()


def _rest(url: str, endpoint: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_mlflow_tracking_server_receives_the_runs(tmp_path, prepared_mnist, mlflow_server):
    params = tiny_params(tmp_path, prepared_mnist, TWO_METHODS, tracking_uri=mlflow_server,
                         scheduler="none")
    run_sweep(params, tmp_path)
    exp = _rest(mlflow_server, "experiments/get-by-name?experiment_name=infovae")["experiment"]
    runs = _rest(mlflow_server, "runs/search", {"experiment_ids": [exp["experiment_id"]],
                                                 "max_results": 100})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parents = [r for r, t in zip(runs, tags) if "mlflow.parentRunId" not in t]
    children = [r for r, t in zip(runs, tags) if "mlflow.parentRunId" in t]
    assert len(parents) == 1 and len(children) == 2
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    for r in children:
        metrics = {m["key"]: m for m in r["data"]["metrics"]}
        assert metrics["val_loss"]["step"] == 2 and "val_mi" in metrics
        arts = _rest(mlflow_server, f"artifacts/list?run_id={r['info']['run_id']}&path=images")
        assert {f["path"] for f in arts["files"]} == {"images/samples.png", "images/reconstructions.png"}
    assert {r["mlflow_run_id"] for r in trials(tmp_path)} == {r["info"]["run_id"] for r in children}


def test_unreachable_tracking_server_fails_fast(tmp_path, prepared_mnist):
    params = tiny_params(tmp_path, prepared_mnist, TWO_METHODS, tracking_uri="http://127.0.0.1:9")
    start = time.time()
    with pytest.raises(Exception, match=r"MLflow tracking server at http://127.0.0.1:9 is unreachable"):
        run_sweep(params, tmp_path)
    assert time.time() - start < 15 and not ray.is_initialized()


def test_unreachable_ray_address_fails_fast(tmp_path, prepared_mnist):
    params = tiny_params(tmp_path, prepared_mnist, TWO_METHODS, address="127.0.0.1:9")
    start = time.time()
    with pytest.raises(Exception, match=r"Ray cluster at 127.0.0.1:9 is unreachable"):
        run_sweep(params, tmp_path)
    assert time.time() - start < 15


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path, prepared_mnist):
    grids = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "latent_dim": [2, 3, 4, 5, 6, 7]}}
    params = tiny_params(tmp_path, prepared_mnist, grids, scheduler="none", max_concurrent_trials=1)
    params_file = write_params(tmp_path / "params.yaml", params.model_copy(update={
        "train": params.train.model_copy(update={"epochs": 3})}))
    cmd = [sys.executable, str(ROOT / "stages" / "sweep.py"), "--params", str(params_file)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(_finished(tmp_path)) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    finished_before = _finished(tmp_path)
    assert 2 <= len(finished_before) < 6, "the sweep was not interrupted mid-run"

    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=600)
    rows = trials(tmp_path)
    assert len(rows) == 6 and all(r["status"] == "FINISHED" for r in rows)
    # Finished trials train nothing again but for one caught by Tune's snapshot lag.
    redone = redone_finished_trials(starts(tmp_path), finished_before, 3)
    for lines in starts(tmp_path).values():
        # Each restart continues from the trial's last checkpoint, never from an earlier one.
        begun = [ln["epoch"] for ln in lines if ln["event"] == "start"]
        assert begun == sorted(begun), lines
        # A trial killed after its last report but before it wrote its end line is finished for
        # Tune and is not restarted: it may have no end line, but never a different last epoch.
        reached = [ln["epoch"] for ln in lines if ln["event"] == "end"]
        assert not reached or reached[-1] == 3
    assert all(r["epochs_done"] == 3 for r in rows) and len(redone) <= 1, redone
    client, runs = _mlflow_runs(params.tracking.uri)
    assert all(r.info.status != "RUNNING" for r in runs)
    trial_ids = [r.data.tags.get("ray.trial_id") for r in runs if "ray.trial_id" in r.data.tags]
    assert len(trial_ids) == len(set(trial_ids))  # no trial has two runs
    # A trial started after Tune's last experiment snapshot is unknown to the resumed sweep: its
    # run is closed as an orphan (KILLED, tagged) and its cell gets a new trial.
    orphans = [r for r in runs if "infovae.orphaned" in r.data.tags]
    assert all(r.info.status == "KILLED" for r in orphans) and len(orphans) <= 1
    assert {r["trial_id"] for r in rows} == set(trial_ids) - {r.data.tags["ray.trial_id"] for r in orphans}
    for r in rows:  # no epoch logged twice after the restart
        steps = [m.step for m in client.get_metric_history(r["mlflow_run_id"], "val_loss")]
        assert steps == [1, 2, 3]


def _finished(tmp) -> set[str]:
    """Trials that recorded their end (all 3 epochs trained)."""
    return {tid for tid, lines in starts(tmp).items() if lines[-1]["event"] == "end"}
