"""Benchmark: what the sweep costs over the training it runs (issue 5), on real MNIST.

(a) One trial alone vs the same trial in a sweep. One configuration (MLP 512-512, latent 10,
    ELBO, batch 100, 1 thread; TRIAL images x epochs: ~30 s of training on one core) trained
    by pipeline.train.standalone.train_one (what `infovae train` runs: a checkpoint every epoch, the
    image grids at the end) and as a one-cell, one-trial sweep by pipeline.sweep.run.run_sweep
    (local Ray, num_cpus=2, a fresh sqlite MLflow store and fresh Ray in a temporary
    directory). The RunSpec is the sweep's own (pipeline.sweep.search.trial_spec), so both
    train the same run with the same seed: their final val_loss must agree. Alternated
    (alone, sweep, sweep, alone, ...); ratios are medians of the per-pair ratios, with their
    min-max as the noise. Compared:
    - inside the trial: the trial's span (its audit lines, <storage>/<experiment>/starts/:
      after its Trainer is built, until its last epoch is reported) against train_one after
      its Trainer is built (both: epochs, validation, checkpoints, image grids). Goal: <= 10%.
    - the training loop alone: the epochs' own train_epoch seconds (reported by each).
    - end to end: run_sweep's wall time (preflight, MLflow, Ray start, Tune, worker start,
      the trial, the summary) against train_one's whole call; ray.shutdown is shown apart.
(b) Throughput of two concurrent 1-CPU trials vs one: a two-cell sweep (train.seed 0 and 1,
    the same cost) at max_concurrent_trials 2 vs 1, Ray kept up between the sweeps,
    alternated (1 2, 2 1, ...). Aggregate images/s three ways: from the trials' reported
    images_per_second (train_epoch only), from the trials' spans (first start to last end:
    everything a trial does) and from Tune's fit time (plus the workers' start). Goal: >= 1.6x.
(c) Start-up: run_sweep's own mlflow_start and ray_start (from (a): a fresh store and a fresh
    Ray each run; the preflight is timed apart), and in fresh
    processes (alternated, medians): a bare `ray.init(num_cpus=2)` + `stop_ray()`, the
    pipeline's connect() (+ check_resources), and a bare MlflowClient's first write (create
    experiment and run) in a fresh sqlite store.

Beside every wall figure: the CPU cores obtained (CPU seconds / wall seconds) by the process
that did the work (the trial's Ray worker, read from /proc by bench.common.CpuSampler) and the
machine's busy cores over the same interval (all processes, ours included), so a reader can
tell other work on the shared 2-core machine from the code's cost. Ray's and Tune's console
output goes to a log file (its path is printed at the end).

    python -m bench.bench_sweep
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench import common
from bench.common import ROOT, CpuSampler, median_range, output_to, prepared_mnist
from pipeline.infra.cluster import shutdown as stop_ray

row = partial(common.row, width=20)  # room for "median (min-max)"

TRIAL = {"train.train_size": 50000, "train.epochs": 4}  # ~6.6k img/s on one core here: ~30 s
PAIRS = 2  # (a): alone/sweep pairs
CONCURRENT = {"train.train_size": 15000, "train.epochs": 3, "train.validation_size": 2000}
ROUNDS = 2  # (b): runs at each concurrency, alternated
STARTS = 3  # (c): fresh processes of each kind
GOAL_OVERHEAD, GOAL_SCALING = 0.10, 1.6
AGGREGATES = (("reported", "reported (train_epoch)"), ("span", "trial spans"), ("fit", "Tune fit time"))


def sweep_params(base: Path, data_dir: Path, grids: dict, train: dict, concurrency: int | None = None):
    from pipeline.params.load import load_params

    return load_params(ROOT / "params.yaml", {
        **train,
        "data.out_dir": str(data_dir),
        "sweep.name": "bench", "sweep.grids": grids, "sweep.trials_per_cell": 1, "sweep.search": {},
        "sweep.scheduler": "none", "cluster.num_cpus": 2, "sweep.cpus_per_trial": 1,
        "sweep.gpus_per_trial": 0, "sweep.max_concurrent_trials": concurrency, "sweep.max_failures": 0,
        "sweep.storage_path": str(base / "ray"), "sweep.out_dir": str(base / "sweep"),
        "tracking.uri": f"sqlite:///{base / 'mlflow.db'}", "tracking.artifact_root": str(base / "artifacts"),
    })


def trial_records(storage: Path, experiment: str) -> list[dict[str, Any]]:
    """Each trial's audit span (first start, last end, worker pid) and its reported results."""
    exp = storage / experiment
    results: dict[str, list[dict]] = {}
    for f in exp.rglob("result.json"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            results.setdefault(r["trial_id"], []).append(r)
    out = []
    for f in sorted((exp / "starts").glob("*.jsonl")):
        lines = [json.loads(line) for line in f.read_text().splitlines()]
        starts = [x for x in lines if x["event"] == "start"]
        ends = [x for x in lines if x["event"] == "end"]
        out.append({"id": f.stem, "start": starts[0]["time"], "end": ends[-1]["time"],
                    "pid": starts[0]["pid"],
                    "results": sorted(results.get(f.stem, []), key=lambda r: r["epoch"])})
    return out


def run_sweep_once(params, base: Path, log: Path, keep_ray: bool = False) -> dict[str, Any]:
    """run_sweep with its console output sent to `log`; then its trials' records."""

    from pipeline.sweep.run import run_sweep

    base.mkdir(parents=True)
    t0 = time.time()
    with output_to(log):
        out = run_sweep(params, base)
        t1 = time.time()
        if not keep_ray:
            stop_ray()
    return {"out": out, "t0": t0, "t1": t1, "shutdown": time.time() - t1,
            "trials": trial_records(base / "ray", out["experiment"])}


# ---------------------------------------------------------------------- (a) alone vs sweep

def alone(spec, out: Path, cpu: CpuSampler) -> dict[str, Any]:
    from pipeline.train.standalone import train_one

    events: list[float] = []
    t0, c0 = time.time(), time.process_time()
    result = train_one(spec, out, log=lambda _msg: events.append(time.time()))
    t1, used = time.time(), time.process_time() - c0
    built = events[0]  # "training on ...": logged once the Trainer is built
    return {"whole": t1 - t0, "build": built - t0, "run": events[-1] - built,
            "train": sum(h["epoch_seconds"] for h in result.history),
            "ips": statistics.median(h["images_per_second"] for h in result.history),
            "val_loss": result.final["val_loss"], "cores": used / (t1 - t0),
            "machine": cpu.machine_cores(t0, t1)}


def in_sweep(params, base: Path, log: Path, cpu: CpuSampler) -> dict[str, Any]:
    r = run_sweep_once(params, base, log)
    (t,) = r["trials"]
    res = t["results"]
    span = t["end"] - t["start"]
    return {"whole": r["t1"] - r["t0"], "shutdown": r["shutdown"], "seconds": r["out"]["seconds"],
            "span": span, "before": t["start"] - r["t0"], "after": r["t1"] - t["end"],
            "train": sum(x["epoch_seconds"] for x in res),
            "ips": statistics.median(x["images_per_second"] for x in res), "val_loss": res[-1]["val_loss"],
            "cores": cpu.cpu(t["pid"], t["start"], t["end"]) / span,
            "machine": cpu.machine_cores(t["start"], t["end"]),
            "others": (cpu.tree_cpu(t["start"], t["end"]) - cpu.cpu(t["pid"], t["start"], t["end"])) / span,
            "tree_cores": cpu.tree_cpu(r["t0"], r["t1"]) / (r["t1"] - r["t0"])}


def part_a(tmp: Path, data_dir: Path, log: Path, cpu: CpuSampler) -> list[dict[str, Any]]:
    from pipeline.params.grid import expand
    from pipeline.sweep.search import trial_spec

    grids = {"bench": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0]}}
    probe = sweep_params(tmp / "probe", data_dir, grids, TRIAL)
    spec = trial_spec(probe, expand(probe)[0], {}, str(data_dir))  # the trial's own RunSpec
    n, epochs = TRIAL["train.train_size"], TRIAL["train.epochs"]
    print(f"(a) one trial alone vs in a one-trial sweep: MLP 512-512, latent 10, ELBO, {n} images x "
          f"{epochs} epochs, 1 thread; local Ray num_cpus=2, fresh sqlite MLflow and fresh Ray per "
          f"sweep; alternated, {PAIRS} pairs (load average {os.getloadavg()[0]:.1f})", flush=True)
    pairs = []
    for i in range(PAIRS):
        got = {}
        for kind in (("alone", "sweep") if i % 2 == 0 else ("sweep", "alone")):
            if kind == "alone":
                got[kind] = alone(spec, tmp / f"alone{i}", cpu)
            else:
                params = sweep_params(tmp / f"a{i}", data_dir, grids, TRIAL)
                got[kind] = in_sweep(params, tmp / f"a{i}", log, cpu)
        pairs.append(got)
    show_a(pairs)
    return pairs


def show_a(pairs: list[dict[str, Any]]) -> None:
    def col(kind: str, key: str) -> list[float]:
        return [p[kind][key] for p in pairs]

    def ratios(f) -> list[float]:
        return [f(p["alone"], p["sweep"]) for p in pairs]

    s = [p["sweep"] for p in pairs]
    row("alone: Trainer built (s)", median_range(col("alone", "build")))
    row("alone: built -> images written (s)", median_range(col("alone", "run")))
    row("  of which train_epoch (s); images/s", median_range(col("alone", "train")),
        median_range(col("alone", "ips"), "{:.0f}"))
    row("  CPU cores obtained / machine busy", median_range(col("alone", "cores")),
        median_range(col("alone", "machine")))
    row("trial: span, audit start to end (s)", median_range(col("sweep", "span")))
    row("  of which train_epoch (s); images/s", median_range(col("sweep", "train")),
        median_range(col("sweep", "ips"), "{:.0f}"))
    row("  CPU cores obtained (worker) / machine busy", median_range(col("sweep", "cores")),
        median_range(col("sweep", "machine")))
    row("  cores of driver + Ray meanwhile (not worker)", median_range(col("sweep", "others")))
    row("run_sweep wall (s)", median_range(col("sweep", "whole")))
    parts = ("preflight", "mlflow_start", "ray_start", "fit")
    for key in parts:
        row(f"  seconds.{key}", median_range([x["seconds"][key] for x in s]))
    row("  rest (parent run, Tuner, summary, outputs)", median_range(
        [x["whole"] - sum(x["seconds"][k] for k in parts) for x in s]))
    row("  from the call to the trial's start (s)", median_range(col("sweep", "before")))
    row("    of which Tune set-up, worker start, Trainer", median_range(
        [x["before"] - sum(x["seconds"][k] for k in parts[:3]) for x in s]))
    row("  from the trial's end to the return (s)", median_range(col("sweep", "after")))
    row("  CPU cores obtained by driver + Ray + worker", median_range(col("sweep", "tree_cores")))
    row("stop_ray() after it (s)", median_range(col("sweep", "shutdown")))
    same = all(abs(p["alone"]["val_loss"] - p["sweep"]["val_loss"]) < 1e-6 for p in pairs)
    row("same run: final val_loss alone == in the trial", "yes" if same else "NO",
        " ".join(f"{p['alone']['val_loss']:.5f}/{p['sweep']['val_loss']:.5f}" for p in pairs))
    inside = ratios(lambda a, b: b["span"] / a["run"] - 1)
    ok = "OK" if statistics.median(inside) <= GOAL_OVERHEAD else "MISSED"
    row("overhead inside trial: span / alone's run - 1", median_range(inside, "{:+.1%}"),
        f"goal <= {GOAL_OVERHEAD:.0%}", ok)
    row("  CPU seconds ratio (trial / alone, same part)", median_range(ratios(
        lambda a, b: (b["span"] * b["cores"]) / (a["run"] * a["cores"]) - 1), "{:+.1%}"))
    row("  training loop only: train_epoch seconds", median_range(
        ratios(lambda a, b: b["train"] / a["train"] - 1), "{:+.1%}"))
    row("  the rest (validation, checkpoints, images)", median_range(
        ratios(lambda a, b: (b["span"] - b["train"]) - (a["run"] - a["train"])), "{:+.2f} s"),
        "trial - alone")
    row("overhead end to end: run_sweep / train_one - 1", median_range(
        ratios(lambda a, b: b["whole"] / a["whole"] - 1), "{:+.1%}"))
    row("  in seconds: run_sweep - train_one", median_range(ratios(lambda a, b: b["whole"] - a["whole"])))
    row("  with ray.shutdown", median_range(
        ratios(lambda a, b: (b["whole"] + b["shutdown"]) / a["whole"] - 1), "{:+.1%}"))


# ---------------------------------------------------------------------- (b) concurrency

def concurrent_run(params, base: Path, log: Path, cpu: CpuSampler) -> dict[str, Any]:
    r = run_sweep_once(params, base, log, keep_ray=True)
    trials = r["trials"]
    start, end = min(t["start"] for t in trials), max(t["end"] for t in trials)
    images = sum(x["images_per_second"] * x["epoch_seconds"] for t in trials for x in t["results"])
    spans = sorted((t["start"], t["end"]) for t in trials)
    overlap = max(0.0, min(e for _, e in spans) - max(s for s, _ in spans)) / (end - start)
    trial_cpu = sum(cpu.cpu(t["pid"], t["start"], t["end"]) for t in trials)
    rates = [statistics.median(x["images_per_second"] for x in t["results"]) for t in trials]
    return {"reported": statistics.mean(rates) * params.sweep.max_concurrent_trials,
            "span": images / (end - start), "fit": images / r["out"]["seconds"]["fit"],
            "overlap": overlap, "cores": trial_cpu / (end - start), "machine": cpu.machine_cores(start, end),
            "cpu_per_image": trial_cpu / images, "images": images}


def part_b(tmp: Path, data_dir: Path, log: Path, cpu: CpuSampler) -> None:
    from pipeline.infra.cluster import connect

    grids = {"bench": {"train.seed": [0, 1]}}
    n, epochs = CONCURRENT["train.train_size"], CONCURRENT["train.epochs"]
    print(f"\n(b) two 1-CPU trials at once vs one at a time: a two-cell sweep (MLP 512-512, ELBO, "
          f"{n} images x {epochs} epochs each), max_concurrent_trials 2 vs 1, Ray (num_cpus=2) kept up; "
          f"alternated, {ROUNDS} runs each (load average {os.getloadavg()[0]:.1f})", flush=True)
    with output_to(log):
        connect(sweep_params(tmp / "b-probe", data_dir, grids, CONCURRENT).cluster)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for i in range(ROUNDS):
        for conc in ((1, 2) if i % 2 == 0 else (2, 1)):
            base = tmp / f"b{i}-{conc}"
            runs[conc].append(concurrent_run(sweep_params(base, data_dir, grids, CONCURRENT, conc), base, log,
                                             cpu))
    with output_to(log):

        stop_ray()
    for conc in (1, 2):
        r = runs[conc]
        print(f"  concurrency {conc}:")
        for key, what in AGGREGATES:
            row(f"    aggregate images/s, {what}", median_range([x[key] for x in r], "{:.0f}"))
        row("    trials' CPU cores obtained / machine busy", median_range([x["cores"] for x in r]),
            median_range([x["machine"] for x in r]))
        row("    overlap of the trial spans (of their union)",
            median_range([x["overlap"] for x in r], "{:.0%}"))
    for key, what in AGGREGATES:
        ratios = [b[key] / a[key] for a, b in zip(runs[1], runs[2])]
        goal = f"goal >= {GOAL_SCALING}x" if key == "span" else ""
        verdict = ("OK" if statistics.median(ratios) >= GOAL_SCALING else "MISSED") if key == "span" else ""
        row(f"  scaling 2 / 1, {what}", median_range(ratios, "{:.2f}x"), goal, verdict)
    cpu_scaling = [2 * a["cpu_per_image"] / b["cpu_per_image"] for a, b in zip(runs[1], runs[2])]
    row("  scaling if each had a core (CPU s / image)", median_range(cpu_scaling, "{:.2f}x"))
    pair_cores = statistics.median(x["cores"] for x in runs[2])
    if pair_cores < GOAL_SCALING:
        print(f"  note: the two trials obtained {pair_cores:.2f} CPU cores of {os.cpu_count()}: the rest "
              "went to the Ray driver and to other work on the machine (machine busy cores above)")


# ---------------------------------------------------------------------- (c) start-up

def start_child(kind: str) -> None:
    """In a fresh process: time one start-up of `kind` and print it as JSON."""
    from pipeline.infra.env import quiet_defaults

    quiet_defaults()  # the pipeline's environment (no usage stats, no telemetry)
    out = {}
    t = time.perf_counter()
    if kind in ("ray", "connect"):
        import ray

        from pipeline.infra.cluster import check_resources, connect
        from pipeline.params.study import ClusterParams, SweepParams

        out["import"] = time.perf_counter() - t
        t = time.perf_counter()
        if kind == "ray":
            ray.init(num_cpus=2)
        else:
            connect(ClusterParams(num_cpus=2))
            check_resources(SweepParams())
        out["start"] = time.perf_counter() - t
        t = time.perf_counter()
        stop_ray()
        out["stop"] = time.perf_counter() - t
    else:
        from mlflow.tracking import MlflowClient

        out["import"] = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
            exp = client.create_experiment("bench", artifact_location=Path(tmp, "artifacts").as_uri())
            out["start"] = time.perf_counter() - t  # creates the database and its schema
            t = time.perf_counter()
            client.set_terminated(client.create_run(exp).info.run_id)
            out["first_run"] = time.perf_counter() - t
            t = time.perf_counter()
            client.set_terminated(client.create_run(exp).info.run_id)
            out["second_run"] = time.perf_counter() - t
    print(json.dumps(out))


def part_c(tmp: Path, data_dir: Path, pairs: list[dict[str, Any]]) -> None:
    from pipeline.sweep.preflight import preflight

    print(f"\n(c) start-up: run_sweep's own figures (from (a)) and fresh processes, {STARTS} of each, "
          f"alternated (seconds; load average {os.getloadavg()[0]:.1f})", flush=True)
    got: dict[str, list[dict]] = {"ray": [], "connect": [], "mlflow": []}
    for i in range(STARTS):
        for kind in (("ray", "connect", "mlflow") if i % 2 == 0 else ("mlflow", "connect", "ray")):
            done = subprocess.run([sys.executable, "-m", "bench.bench_sweep", "--start", kind], cwd=ROOT,
                                  capture_output=True, text=True, check=True)
            got[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    params = sweep_params(tmp / "c", data_dir, {"bench": {"divergence": ["kl"]}}, TRIAL)
    pre = []
    for _ in range(STARTS):
        t = time.perf_counter()
        preflight(params, tmp)
        pre.append(time.perf_counter() - t)
    s = [p["sweep"]["seconds"] for p in pairs]
    row("run_sweep seconds.mlflow_start (fresh store)", median_range([x["mlflow_start"] for x in s]))
    row("  of which preflight (verify 2 data splits)", median_range(pre))
    row("run_sweep seconds.ray_start (fresh Ray)", median_range([x["ray_start"] for x in s]))

    def line(name: str, kind: str, key: str) -> None:
        row(name, median_range([x[key] for x in got[kind]]))

    line("bare: import ray", "ray", "import")
    line("bare: ray.init(num_cpus=2)", "ray", "start")
    line("bare: stop_ray()", "ray", "stop")
    line("pipeline connect() + check_resources()", "connect", "start")
    line("  its stop_ray()", "connect", "stop")
    line("bare: import mlflow (MlflowClient)", "mlflow", "import")
    line("bare: sqlite store + experiment (first write)", "mlflow", "start")
    line("bare: create + terminate the first run", "mlflow", "first_run")
    line("bare: create + terminate a second run", "mlflow", "second_run")


def main() -> None:
    t0 = time.perf_counter()
    log = Path(tempfile.gettempdir()) / f"bench_sweep-{os.getpid()}.log"
    with tempfile.TemporaryDirectory() as tmp, CpuSampler() as cpu:
        tmp = Path(tmp)
        data_dir = prepared_mnist(tmp / "mnist")
        pairs = part_a(tmp, data_dir, log, cpu)
        part_b(tmp, data_dir, log, cpu)
        part_c(tmp, data_dir, pairs)
    print(f"\nCPU sampler: {cpu.overhead:.1f} CPU s over the run; Ray/Tune output: {log}")
    print(f"benchmark wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--start":
        start_child(sys.argv[2])
    else:
        main()
