"""Faults and bad input, with real processes: the pipeline keeps its promises.

Crash and resume (kill -9 mid-sweep, then `dvc repro`), a diverging trial carried through the
whole study, every class of bad params and bad data rejected before compute with nothing lost,
concurrent writers on the default sqlite MLflow store, unreachable services, and security.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.infra.cluster import shutdown as stop_ray
from pipeline.infra.workspace import study_copy as _copy
from pipeline.infra.workspace import venv_env
from pipeline.train.checkpoint import CheckpointError, load
from tests.conftest import MNIST_DIR, ROOT, link_raw
from tests.sweep_helpers import redone_finished_trials

pytestmark = pytest.mark.faults

STAGES = ROOT / "stages"
SMOKE_GRIDS = {"g": {"method": [{"divergence": "kl", "alpha": 0.0, "lambda": 1.0},
                                {"divergence": "mmd", "alpha": 1.0, "lambda": 1000.0}],
                     "latent_dim": [2, 3, 4]}}
# Adam at lr 1e6 on a two-layer MLP overflows to inf/NaN at the second step (measured).
DIVERGING = {"divergence": "kl", "alpha": 0.0, "lambda": 1.0, "train.lr": 1.0e6,
             "train.optimizer": "adam", "train.grad_clip": None, "model.hidden": [64, 64]}


def need_mnist():
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST IDX files not found at {MNIST_DIR}")


def study_copy(dest: Path, profile: str | None = "smoke") -> Path:
    return _copy(ROOT, dest, MNIST_DIR, [f"profile={profile}"] if profile else None)


def edit_params(repo: Path, grids: dict | None = None, **sections) -> dict:
    """Rewrite the copy's params.yaml: the smoke profile composed, then these grids and these
    keys (section__key=value) set in the resolved file (what `dvc repro` reads)."""
    from pipeline.params.compose import compose

    raw = compose(repo, ["profile=smoke"]).model_dump(by_alias=True, mode="json")
    if grids is not None:
        raw["sweep"]["grids"] = grids
    for dotted, value in sections.items():
        node = raw
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


def dvc(repo: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=repo, env=venv_env(), capture_output=True, text=True,
                          timeout=timeout)


def audit(repo: Path) -> dict[str, list[dict]]:
    return {f.stem: [json.loads(x) for x in f.read_text().splitlines()]
            for f in (repo / "results" / "ray").glob("*/starts/*.jsonl")}


def mlflow_runs(repo: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("infovae")
    return client, client.search_runs([exp.experiment_id], max_results=5000)


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------- crash and resume


@pytest.mark.slow
def test_kill_9_mid_sweep_then_dvc_repro_resumes(tmp_path):
    need_mnist()
    repo = study_copy(tmp_path / "repo", profile=None)
    edit_params(repo, SMOKE_GRIDS, train__epochs=3, sweep__max_concurrent_trials=1)
    proc = subprocess.Popen(["dvc", "repro", "sweep"], cwd=repo, env=venv_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline:
        ended = [t for t, lines in audit(repo).items() if lines[-1]["event"] == "end"]
        if len(ended) >= 2:
            break
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc, the sweep driver, Ray and its workers
    proc.wait()
    before = audit(repo)
    finished_before = {t for t, lines in before.items() if lines[-1]["event"] == "end"}
    assert 2 <= len(finished_before) < 6

    done = dvc(repo, "repro", "sweep")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = pq.read_table(repo / "results" / "sweep" / "trials.parquet").to_pylist()
    assert len(rows) == 6 and all(r["status"] == "FINISHED" for r in rows)  # the sweep completed
    # Finished trials are not trained again but for one caught by Tune's snapshot lag.
    redone = redone_finished_trials(audit(repo), finished_before, 3)
    assert len(redone) <= 1, redone
    client, runs = mlflow_runs(repo)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    trials = {r["trial_id"] for r in rows}
    children = [r for r in runs if "ray.trial_id" in r.data.tags]
    mine = [r.data.tags["ray.trial_id"] for r in children if r.data.tags["ray.trial_id"] in trials]
    assert sorted(mine) == sorted(trials)  # no trial has two runs
    for orphan in (r for r in children if r.data.tags["ray.trial_id"] not in trials):
        # a trial Ray had not yet recorded when it was killed: ended and labelled, not RUNNING
        assert orphan.info.status == "KILLED" and "infovae.orphaned" in orphan.data.tags
    for row in rows:  # every epoch logged once, in order, despite the restart
        assert [m.step for m in client.get_metric_history(row["mlflow_run_id"], "val_loss")] == [1, 2, 3]


# ----------------------------------------------------------------- a diverging trial


@pytest.fixture(scope="module")
def study_with_a_diverging_trial(tmp_path_factory):
    need_mnist()
    repo = study_copy(tmp_path_factory.mktemp("diverging") / "repo", profile=None)
    grids = {"table1": {"method": [{"divergence": "kl", "alpha": 0.0, "lambda": 1.0}, DIVERGING]}}
    edit_params(repo, grids)
    done = dvc(repo, "repro")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return repo


@pytest.mark.slow
def test_diverging_trial_fails_with_its_reason_and_the_study_finishes(study_with_a_diverging_trial):
    repo = study_with_a_diverging_trial
    rows = pq.read_table(repo / "results" / "sweep" / "trials.parquet").to_pylist()
    failed = [r for r in rows if r["status"] == "FAILED"]
    assert len(rows) == 2 and len(failed) == 1
    reason = failed[0]["error"]
    assert "TrainingDiverged" in reason and "loss is nan" in reason
    client, runs = mlflow_runs(repo)
    run = client.get_run(failed[0]["mlflow_run_id"])
    assert run.info.status == "FAILED" and "loss is nan" in run.data.tags["infovae.error"]
    metrics = pq.read_table(repo / "results" / "eval" / "metrics.parquet").to_pylist()
    assert {m["status"] for m in metrics} == {"EVALUATED", "FAILED"}
    html = (repo / "report" / "index.html").read_text()
    assert "TrainingDiverged" in html and "loss is nan" in html  # the report lists the failure


@pytest.mark.slow
def test_no_absolute_path_or_secret_in_params_reports_or_mlflow(study_with_a_diverging_trial):
    repo = study_with_a_diverging_trial
    forbidden = [str(repo), str(repo.resolve()), os.path.expanduser("~") + "/"]
    client, runs = mlflow_runs(repo)
    for run in runs:
        for where, values in (("params", run.data.params), ("tags", run.data.tags)):
            for key, value in values.items():
                assert not any(f in value for f in forbidden), (run.info.run_id, where, key, value)
    texts = [repo / "report" / "index.html", repo / "report" / "report.md", repo / "params.yaml",
             repo / "results" / "sweep" / "best.json", repo / "results" / "sweep" / "sweep.json",
             repo / "results" / "metrics" / "evaluate.json"]
    for path in texts:
        text = path.read_text()
        assert not any(f in text for f in forbidden), path
    for table in ("results/sweep/trials.parquet", "results/eval/metrics.parquet"):
        blob = json.dumps(pq.read_table(repo / table).to_pylist(), default=str)
        assert not any(f in blob for f in forbidden), table


@pytest.mark.slow
def test_bad_params_through_dvc_leave_earlier_outputs_untouched(study_with_a_diverging_trial):
    repo = study_with_a_diverging_trial
    before = {d: tree_digest(repo / d) for d in ("results/sweep", "results/eval", "report")}
    good = (repo / "params.yaml").read_text()
    try:
        edit_params(repo, None, sweep__cpus_per_trial="two")
        done = dvc(repo, "repro")
        assert done.returncode != 0
        assert "sweep.cpus_per_trial" in done.stdout + done.stderr
    finally:
        (repo / "params.yaml").write_text(good)
    assert {d: tree_digest(repo / d) for d in before} == before


# ----------------------------------------------------------------- bad params, every class


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory with prepared real MNIST and an earlier sweep's outputs to protect."""
    need_mnist()
    root = tmp_path_factory.mktemp("bad-params")
    link_raw(root / "data" / "raw", "mnist", MNIST_DIR)
    done = subprocess.run([sys.executable, str(STAGES / "prepare.py"), "--params",
                           str(ROOT / "params.yaml")], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (root / "results" / "sweep").mkdir(parents=True)
    (root / "results" / "sweep" / "trials.parquet").write_bytes(b"earlier output")
    return root


BAD_PARAMS = [
    ("unknown key", {"sweep": {"trails_per_cell": 2}}, r"sweep.trails_per_cell: unknown key"),
    ("wrong type", {"train": {"epochs": "ten"}}, r"train.epochs: Input should be a valid integer"),
    ("alpha out of range", {"objective": {"alpha": 2.0}},
     r"objective.alpha: Input should be less than or equal to 1"),
    ("lambda out of range", {"objective": {"lambda": -1.0}},
     r"objective.lambda: Input should be greater than or equal to 0"),
    ("grid alpha out of range",
     {"sweep": {"grids": {"bad": {"divergence": ["mmd"], "alpha": [3.0], "lambda": [10.0]}}}},
     r"sweep.grids.bad: cell .* is invalid"),
    ("unknown divergence", {"objective": {"divergence": "wasserstein"}},
     r"objective.divergence: unknown divergence 'wasserstein': one of kl, mmd, stein, adversarial"),
    ("empty grid", {"sweep": {"grids": {}}}, r"no grid declared"),
    ("empty axis", {"sweep": {"grids": {"bad": {"divergence": []}}}}, r"grids.bad.divergence: an empty axis"),
    ("unsatisfiable resources", {"sweep": {"cpus_per_trial": 64}, "cluster": {"num_cpus": 2}},
     r"sweep.cpus_per_trial = 64 but the largest Ray node offers 2 CPUs"),
    ("unreachable MLflow server", {"tracking": {"uri": "http://127.0.0.1:9"}},
     r"MLflow tracking server at http://127.0.0.1:9 is unreachable"),
    ("unreachable Ray cluster", {"cluster": {"address": "127.0.0.1:9"}},
     r"Ray cluster at 127.0.0.1:9 is unreachable"),
]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        merge = isinstance(v, dict) and v and isinstance(base.get(k), dict)
        out[k] = _merge(base[k], v) if merge else v
    return out


@pytest.mark.parametrize("name, change, message", BAD_PARAMS, ids=[b[0] for b in BAD_PARAMS])
def test_bad_params_are_rejected_before_compute(workdir, name, change, message):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw = _merge(raw, {"sweep": {"grids": SMOKE_GRIDS, "storage_path": "results/ray",
                                 "trials_per_cell": 1}, "tracking": {"uri": "sqlite:///mlflow.db"}})
    raw = _merge(raw, change)
    params = workdir / f"params-{name.replace(' ', '-')}.yaml"
    params.write_text(yaml.safe_dump(raw))
    before = tree_digest(workdir / "results")
    start = time.time()
    done = subprocess.run([sys.executable, str(STAGES / "sweep.py"), "--params", str(params)],
                          cwd=workdir, env=venv_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    import re

    assert re.search(message, done.stderr), done.stderr[-2000:]
    assert done.stderr.strip().startswith("error:") or "\nerror:" in done.stderr
    assert time.time() - start < 60
    assert tree_digest(workdir / "results") == before  # nothing written, nothing lost
    assert not list((workdir / "results").glob("ray/*"))  # no trial ever started


# ----------------------------------------------------------------- bad data


def test_corrupt_raw_file_is_rejected_by_checksum_and_outputs_survive(tmp_path):
    need_mnist()
    raw = tmp_path / "data" / "raw" / "mnist"
    raw.mkdir(parents=True)
    for f in MNIST_DIR.iterdir():
        (raw / f.name).symlink_to(f)
    cmd = [sys.executable, str(STAGES / "prepare.py"), "--params", str(ROOT / "params.yaml")]
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True, timeout=300).returncode == 0
    before = tree_digest(tmp_path / "data" / "prepared")
    target = raw / "train-labels-idx1-ubyte.gz"
    import gzip

    contents = bytearray(gzip.decompress(target.read_bytes()))
    contents[100] ^= 1  # one label changed: a well-formed, substituted file
    target.unlink()
    target.write_bytes(gzip.compress(bytes(contents)))
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "train-labels-idx1-ubyte.gz: checksum mismatch" in done.stderr
    assert "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5" in done.stderr
    target.write_bytes(gzip.compress(bytes(contents))[:5000])  # truncated
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "damaged gzip file" in done.stderr
    assert tree_digest(tmp_path / "data" / "prepared") == before


def test_damaged_parquet_split_is_detected_by_the_next_stage(workdir, tmp_path):
    import shutil

    copy = tmp_path / "work"
    shutil.copytree(workdir / "data" / "prepared", copy / "data" / "prepared")
    split = copy / "data" / "prepared" / "train.parquet"
    data = bytearray(split.read_bytes())
    data[len(data) // 2] ^= 0x40  # bit rot inside the pixel pages, after prepare
    split.write_bytes(bytes(data))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["sweep"]["grids"] = SMOKE_GRIDS
    (copy / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, str(STAGES / "sweep.py"), "--params", "params.yaml"],
                          cwd=copy, env=venv_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "train.parquet" in done.stderr and "rerun `dvc repro prepare`" in done.stderr
    assert not (copy / "results").exists()


# ----------------------------------------------------------------- concurrency

WRITER = """
import os, sys, time
from pipeline.infra import tracking
from pipeline.params.study import TrackingParams
cfg = TrackingParams(uri=sys.argv[1], experiment="concurrency")
client = tracking.client(cfg)
exp = tracking.experiment_id(client, cfg)
run = tracking.retry(client.create_run, exp, run_name=sys.argv[2]).info.run_id
print("READY", flush=True)
while not os.path.exists("go"):
    time.sleep(0.05)
for step in range(int(sys.argv[3])):
    tracking.log_metrics(client, run, {"a": step, "b": 2 * step}, step=step)
tracking.terminate(client, run, "FINISHED")
print(run, tracking.LOCK_RETRIES)
"""


@pytest.mark.slow
def test_eight_concurrent_writers_on_sqlite_lose_no_metric_point(tmp_path):
    """8 processes log to one sqlite store at once, starting while another connection holds it
    locked for longer than sqlite's busy timeout (MLflow sets 20 s): every writer meets
    "database is locked", retries, and no metric point is lost."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, f"w{i}", "40"], cwd=tmp_path,
                              env=venv_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    for p in procs:  # all writers have a run and wait for the signal
        assert p.stdout.readline().strip() == "READY", p.stderr.read()[-1500:]
    con = sqlite3.connect(tmp_path / "mlflow.db", timeout=60)
    con.execute("BEGIN EXCLUSIVE")
    (tmp_path / "go").touch()
    time.sleep(25)
    con.commit()
    con.close()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    retries = [int(o[0].split()[1]) for o in outs]
    assert min(retries) >= 1, "a writer never met the lock: the test did not test the retry"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for out, _ in outs:
        run_id = out.split()[0]
        for key in ("a", "b"):
            history = client.get_metric_history(run_id, key)
            assert sorted(m.step for m in history) == list(range(40)), (run_id, key)
        assert client.get_run(run_id).info.status == "FINISHED"


def test_eight_concurrent_trials_log_every_point(tmp_path, prepared_mnist):
    from pipeline.sweep.run import run_sweep
    from tests.sweep_helpers import tiny_params

    grids = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "latent_dim": list(range(2, 10))}}
    params = tiny_params(tmp_path, prepared_mnist, grids, num_cpus=8, scheduler="none",
                         extra={"train.epochs": 3})

    try:
        run_sweep(params, tmp_path)
    finally:
        stop_ray()
    rows = pq.read_table(tmp_path / "sweep" / "trials.parquet").to_pylist()
    assert len(rows) == 8
    from mlflow.tracking import MlflowClient

    client = MlflowClient(params.tracking.uri)
    points = 0
    for row in rows:
        # the trial's own per-epoch metrics; system/* are sampled by the clock, not per epoch
        logged = client.get_run(row["mlflow_run_id"]).data.metrics
        keys = sorted(k for k in logged if not k.startswith("system/"))
        assert {"train_loss", "val_loss", "val_mi", "images_per_second"} <= set(keys)
        for key in keys:
            history = client.get_metric_history(row["mlflow_run_id"], key)
            assert [m.step for m in history] == [1, 2, 3], (row["trial_id"], key)
            points += len(history)
    assert points == 8 * 3 * len(keys)  # every run: every metric at every epoch


# ----------------------------------------------------------------- security


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoints_load_without_running_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "checkpoint.pt"
    evil.write_bytes(pickle.dumps({"format_version": 1, "model": _Payload()}))
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_local_ray_refuses_clients_without_its_token():
    """Ray 2.60 listens on every interface (it cannot be bound to 127.0.0.1): the project
    keeps Ray's token authentication on, so a client without the token is refused."""
    import ray

    from pipeline.infra.cluster import connect
    from pipeline.params.study import ClusterParams

    assert os.environ.get("RAY_AUTH_MODE", "token") != "disabled"
    connect(ClusterParams(num_cpus=1))
    try:
        address = ray.get_runtime_context().gcs_address
        probe = f"import ray; ray.init(address={address!r}); print('CONNECTED')"
        stranger = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180,
                                  env={**venv_env(), "RAY_AUTH_TOKEN": "not-the-token-" + "0" * 32})
        assert stranger.returncode != 0 and "CONNECTED" not in stranger.stdout
        assert "Failed to connect" in stranger.stderr or "auth" in stranger.stderr.lower()
    finally:
        stop_ray()


def test_credentials_in_a_tracking_uri_are_never_shown():
    from pipeline.infra import tracking
    from pipeline.params.study import TrackingParams

    uri = "http://alice:s3cret@127.0.0.1:9"
    assert tracking.redact(uri) == "http://127.0.0.1:9"
    assert tracking.redact("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    with pytest.raises(tracking.TrackingError) as err:
        tracking.client(TrackingParams(uri=uri, connect_timeout_s=2))
    assert "s3cret" not in str(err.value) and "alice" not in str(err.value)
