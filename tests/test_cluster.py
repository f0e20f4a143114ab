"""A Ray cluster of two nodes on loopback whose second node cannot see the first one's files
(issue 23): the sweep and the evaluation run across both with nothing shared but an object store
and a tracking server, as on cloud VMs or KubeRay pods."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from pipeline.infra.workspace import venv_env
from tests.conftest import ROOT, bucket_uri, free_port
from tests.sweep_helpers import best, tiny_params, trials, write_params
from tests.test_evaluate_study import SHRUNK


def _kill_own(address: str) -> None:
    """SIGKILL what is left of this test's nodes: the processes naming its GCS address (a raylet
    or agent Ray started in a process group of its own), nothing else on the machine."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(address in arg for arg in p.info["cmdline"] or ()):
                p.kill()


@pytest.mark.cluster
def test_two_nodes_sharing_no_path_run_the_sweep_and_the_evaluation(
        tmp_path, tmp_path_factory, prepared_mnist, s3, mlflow_server):
    """Two `ray start --block` nodes, each its own process group, stopped by this test alone (not
    `ray stop`, which stops every Ray on the machine); the stages join them as a user's would, in
    processes of their own. The second node runs in a mount namespace of its own with an empty
    tmpfs over this session's whole temporary tree (the prepared data, the repository-like
    directory, best.json, the evaluation's copies): a trial or an evaluation there that opened one
    of the driver's paths would fail. Token authentication is set explicitly on every process:
    Ray reads RAY_AUTH_MODE at import, and a joining node or driver does not turn it on by itself
    against a head that did (once ~/.ray/auth_token exists)."""
    if not shutil.which("unshare"):
        pytest.skip("needs util-linux's unshare (a mount namespace for the second node)")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=100000000",
              "--disable-usage-stats"]
    env = {**venv_env(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    ray_bin = str(ROOT / ".venv" / "bin" / "ray") if (ROOT / ".venv" / "bin" / "ray").exists() else "ray"
    hidden = tmp_path_factory.getbasetemp()
    nodes_started = []

    def start(*args, hide=None):
        log = hidden.parent / f"{hidden.name}-{port}-node{len(nodes_started)}.log"
        cmd = [ray_bin, "start", "--block", *args, *common]
        if hide is not None:  # this node sees an empty directory where the driver's files are
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs infovae-hidden "$0" && exec "$@"', str(hide), *cmd]
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=open(log, "wb"),
                                stderr=subprocess.STDOUT)
        nodes_started.append(proc)
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.time() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)

    try:
        start("--head", f"--port={port}", "--include-dashboard=false")
        start(f"--address={address}", hide=hidden)
        grids = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "latent_dim": [2, 3, 4, 5]}}
        extra = {**SHRUNK, "evaluate.max_concurrent": 2, "evaluate.out_dir": "results/eval",
                 "evaluate.summary": "results/eval/summary.json", "evaluate.plots_dir": "results/eval/plots"}
        params = tiny_params(tmp_path, prepared_mnist, grids, address=address, scheduler="none",
                             num_cpus=None, extra=extra)
        path = write_params(tmp_path / "params.yaml", params)
        sweep = [sys.executable, str(ROOT / "stages" / "sweep.py"), "--params", str(path)]

        # A tracking store in a file: refused, with the fix, before any training.
        refused = subprocess.run(sweep, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        said = refused.stderr + refused.stdout
        assert refused.returncode != 0
        assert "is a file on this machine, but the Ray cluster has 2 nodes" in said
        assert "mlflow server" in said and not (tmp_path / "ray").exists()

        # A tracking server and an object store: the sweep runs on both nodes.
        params = tiny_params(tmp_path, prepared_mnist, grids, address=address, scheduler="none",
                             num_cpus=None, tracking_uri=mlflow_server,
                             storage_path=bucket_uri(s3, "cluster"), extra=extra)
        write_params(path, params)
        done = subprocess.run(sweep, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert not (tmp_path / "ray").exists()  # every checkpoint went to the store
        assert all(e["checkpoint"].startswith("s3://cluster/ray/") for e in best(tmp_path).values())
        rows = trials(tmp_path)
        assert len(rows) == 4 and all(r["status"] == "FINISHED" for r in rows)
        # Which node sees the prepared data's path: the head only (the harness hides it).
        probe = (f"import json, os, ray; ray.init(address={address!r}, logging_level='ERROR')\n"
                 "from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On\n"
                 "see = ray.remote(os.path.exists)\n"
                 "ids = [n['NodeID'] for n in ray.nodes() if n['Alive']]\n"
                 "print(json.dumps({i: ray.get(see.options(num_cpus=0, scheduling_strategy=On(i, soft=False))"
                 f".remote({str(prepared_mnist)!r})) for i in ids}}))")
        listed = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                timeout=120, check=True)
        sees = json.loads(listed.stdout.strip().splitlines()[-1])
        assert sorted(sees.values()) == [False, True], sees
        nodes = set(sees)
        assert {r["node_id"] for r in rows} == nodes  # trials trained on both, the hidden one included

        # The evaluation as Ray tasks, two at once on one CPU each: on both nodes.
        evaluate = [sys.executable, str(ROOT / "stages" / "evaluate.py"), "--params", str(path)]
        done = subprocess.run(evaluate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        measured = pq.read_table(tmp_path / "results" / "eval" / "metrics.parquet").to_pylist()
        assert len(measured) == 4 and all(r["status"] == "EVALUATED" for r in measured)
        assert {r["ray_node_id"] for r in measured} == nodes
        assert all(r["mmd"] is not None and r["ss_error_20"] is not None for r in measured)
    finally:
        for proc in reversed(nodes_started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _kill_own(address)
