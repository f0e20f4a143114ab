"""Connecting to Ray: a local instance by default, a cluster when an address is given.

An address is probed with a plain TCP connect first, so an unreachable cluster fails in
seconds with the address named (ray.init alone retries for much longer).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.infra.env import QUIET, quiet_defaults
from pipeline.params.study import ClusterParams, SweepParams


class ClusterError(PipelineError):
    pass


def address_of(cluster: ClusterParams) -> str | None:
    return cluster.address or os.environ.get("RAY_ADDRESS") or None


def probe(address: str, timeout: float = 3.0) -> None:
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"cluster.address {address!r}: expected host:port (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ClusterError(f"Ray cluster at {address} is unreachable ({err}); start it with "
                           "`ray start --head` or fix cluster.address / RAY_ADDRESS") from None


def connect(cluster: ClusterParams) -> None:
    """ray.init for the sweep or the evaluation; a no-op when this process is already connected."""
    quiet_defaults()
    import ray

    if ray.is_initialized():
        return
    address = address_of(cluster)
    if address:
        probe(address)
        import pipeline

        # Ship this package to the cluster's workers; nodes only need the dependencies.
        ray.init(address=address, include_dashboard=False, log_to_driver=True,
                 runtime_env={"py_modules": [str(Path(pipeline.__file__).parent)],
                              "env_vars": {k: os.environ[k] for k in QUIET if k in os.environ}})
    else:
        # Ray 2.60's gRPC servers listen on every interface even for a local instance (and it
        # turns a 127.0.0.1 node address into the machine's own): Ray's token authentication,
        # left on (pipeline.infra.env), is what keeps them private. No dashboard is started.
        # Ray starts its processes (GCS, raylet, and through it the workers) with SIGINT blocked,
        # so a Ctrl-C to the terminal's process group reaches only the driver, which stops the
        # sweep gracefully; SIGTERM (a scheduler's, `timeout`'s, a closed terminal's) killed
        # them, and the driver 60 s later. So SIGTERM is blocked too while they start (they
        # inherit the mask). So the SIGTERM of ray.shutdown's graceful stop cannot reach them: it
        # would wait 1 s per process for nothing before its SIGKILL (11 s at the smoke sweep's
        # end), and shutdown() skips that wait.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            # address="local": a new instance of this process's own, even where `ray start` left a
            # cluster on this machine (ray.init() alone would join it, and refuse num_cpus there).
            ray.init(address="local", num_cpus=cluster.num_cpus, num_gpus=cluster.num_gpus,
                     include_dashboard=False, log_to_driver=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        atexit.register(shutdown)  # after Ray's own atexit handler: runs before it


def shutdown() -> None:
    """ray.shutdown; the processes of a local instance this process started are killed without
    the graceful SIGTERM they block (the same end: ray.shutdown SIGKILLs them after 1 s each).
    Registered at exit by connect(); call it to stop Ray earlier (a test, between sweeps).

    Private API, wrapped here only: ray._private.worker._global_node and
    Node.kill_all_processes(check_alive, allow_graceful, wait), checked against Ray 2.60. Where
    they differ, the plain ray.shutdown runs (slower, the same result)."""
    import ray

    try:
        from ray._private import worker

        node = worker._global_node
        kill = node.kill_all_processes if node is not None else None
        if kill is not None:
            def kill_at_once(*args, allow_graceful=False, **kwargs):
                return kill(*args, allow_graceful=False, **kwargs)
            node.kill_all_processes = kill_at_once
    except (ImportError, AttributeError):
        pass
    ray.shutdown()


def check_tracking(uri: str) -> None:
    """Trials log their system metrics from the node they run on, and a tracking store in a
    file (sqlite:///..., a path) is on one machine only: on a cluster of several nodes the other
    nodes' would be lost (or written to a stray file of theirs). Refused, with the fix."""
    import ray

    if "://" in uri and not uri.startswith(("sqlite:", "file:")):
        return  # a tracking server (http, https, databricks...) every node reaches
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if nodes > 1:
        raise ClusterError(
            f"tracking.uri {uri} is a file on this machine, but the Ray cluster has {nodes} nodes: start a "
            "tracking server on the head (`mlflow server --backend-store-uri sqlite:///mlflow.db "
            "--artifacts-destination s3://bucket/mlartifacts --host 0.0.0.0`) and set tracking.uri to "
            "http://<head>:5000 (docs/cluster.md)")


def gpus_per_trial(sweep: SweepParams) -> float:
    """The GPU share of a trial; "auto" resolves against the connected cluster."""
    if sweep.gpus_per_trial != "auto":
        return float(sweep.gpus_per_trial)
    import ray

    return sweep.auto_gpu_share if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def check_resources(sweep: SweepParams) -> None:
    """A trial's CPUs and GPUs must fit on one node, or it would wait forever."""
    check_fits({"CPU": (sweep.cpus_per_trial, "sweep.cpus_per_trial"),
                "GPU": (gpus_per_trial(sweep), "sweep.gpus_per_trial")}, "trial")


def check_fits(needs: dict[str, tuple[float, str]], what: str) -> None:
    """needs: resource -> (amount, params key); each must fit on one live node."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, (need, param) in needs.items():
        most = max((n.get(key, 0.0) for n in nodes), default=0.0)
        if need > most:
            raise ClusterError(
                f"{param} = {need:g} but the largest Ray node offers {most:g} {key}s: "
                f"no {what} could ever start (lower {param} or add resources)")
