"""Benchmark: a whole study's wall time, split into its parts: the default (laptop) study,
then the smoke study (issues 6 and 12).

For each, a fresh copy of the repository (bench.common.study_copy, the profile composed, the
MNIST files of ../shared linked in) runs `dvc repro` once; its output is read line by line as
it comes, each line stamped with the time it arrived (stage scripts run unbuffered). From the
stamps:
- each stage's whole span: from DVC's "Running stage 'x'" line to its "Updating lock file"
  line (the stage script, then DVC hashing and caching its outs);
- inside it, the figures the stage prints in its closing JSON line (prepare: seconds; sweep:
  seconds.mlflow_start, .ray_start, .fit; evaluate: seconds, with the classifier's training
  from its log lines; report: seconds); what is left before that line is Python's start-up and
  imports (and, for the sweep, its parent run and summary);
- the script's exit (Ray's shutdown, for the sweep) from the last time the script's process was
  seen alive (bench.common.CpuSampler, every 0.25 s), the rest of the span being DVC's commit;
- DVC's own start-up and the checks between stages;
- the evaluation by metric, from the evaluate stage's table (seconds_<metric> of every cell).
Beside each stage: the CPU cores its processes obtained (DVC, the script, Ray's workers: CPU
seconds / wall seconds) and the machine's busy cores (every process) over the same interval.
Goals on the 2-core machine: the laptop study < 60 min, the smoke study < 3 min. Then a second
`dvc repro`, which must do nothing, is timed too.

    python -m bench.bench_study                     # laptop, then smoke (about 30 min)
    python -m bench.bench_study --profile smoke     # one profile
    python -m bench.bench_study --profile laptop -S train.seed=1 --keep /tmp/seed1
        # other params (DVC/Hydra overrides), and the study copy kept (report/, results/)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.common import CpuSampler, study_copy
from pipeline.infra.workspace import venv_env

STAGES = ("prepare", "sweep", "evaluate", "report")
GOALS = {"laptop": 3600.0, "smoke": 180.0}  # seconds on the 2-core machine


def stream(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[list[tuple[float, str]], float, float]:
    """Run cmd; every line of its output (stdout and stderr) with the time it arrived."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    lines = [(time.time(), line.rstrip("\n")) for line in proc.stdout]
    if proc.wait() != 0:
        tail = "\n".join(text for _, text in lines[-60:])
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}:\n{tail}")
    return lines, t0, time.time()


RAY_PREFIX = re.compile(r"^(\x1b\[\d+m)?\(\w+ pid=\d+(, ip=[\d.]+)?\)(\x1b\[0m)? ?")


def first(lines: list[tuple[float, str]], *starts: str) -> float | None:
    """When the first line starting with one of `starts` arrived (a Ray worker's prefix aside)."""
    return next((t for t, text in lines if RAY_PREFIX.sub("", text.strip()).startswith(starts)), None)


def closing_json(lines: list[tuple[float, str]]) -> tuple[float, dict[str, Any]]:
    """The stage's last line that is a JSON object, and when it arrived."""
    for t, text in reversed(lines):
        if text.startswith("{"):
            try:
                return t, json.loads(text)
            except json.JSONDecodeError:
                continue
    raise SystemExit("a stage printed no closing JSON line")


def stages(lines: list[tuple[float, str]], t0: float, t1: float, cpu: CpuSampler) -> dict[str, dict]:
    marks = [(i, t, text.split("'")[1]) for i, (t, text) in enumerate(lines)
             if text.startswith("Running stage '")]
    if [m[2] for m in marks] != list(STAGES):
        raise SystemExit(f"expected stages {STAGES}, DVC ran {[m[2] for m in marks]}")
    out: dict[str, dict] = {}
    previous_end = t0
    for k, (i, start, name) in enumerate(marks):
        section = lines[i:marks[k + 1][0]] if k + 1 < len(marks) else lines[i:]
        said, result = closing_json(section)
        after = [x for x in section if x[0] >= said]
        end = first(after, "Updating lock file", "Generating lock file") or said
        gone = cpu.last_seen(f"stages/{name}.py") or said
        gone = min(max(gone, said), end)
        seconds = result.get("seconds")
        inner = sum(seconds.values()) if isinstance(seconds, dict) else float(seconds or 0.0)
        out[name] = {"before": start - previous_end, "start": start, "said": said, "gone": gone, "end": end,
                     "result": result, "inner": inner, "startup": said - start - inner,
                     "exit": gone - said, "commit": end - gone, "lines": section,
                     "cores": cpu.tree_cpu(start, end) / (end - start),
                     "machine": cpu.machine_cores(start, end)}
        previous_end = end
    out["dvc"] = {"finish": t1 - previous_end}
    return out


def classifier_seconds(section: list[tuple[float, str]]) -> float:
    began = first(section, "training the classifier")
    ended = first(section, "classifier: test accuracy")
    return ended - began if began is not None and ended is not None else 0.0


def evaluation_parts(rows: list[dict[str, Any]]) -> tuple[dict, dict]:
    """From the evaluate stage's table (results/eval/metrics.parquet, one row per cell): seconds
    per metric (every cell, and the PixelCNN cells alone: autoregressive sampling makes them the
    expensive ones) and each cell's own compute seconds, by decoder kind. The table, not the
    log, as cells may run at once as Ray tasks (evaluate.max_concurrent)."""
    metrics: dict[str, list[float]] = {}
    cells: dict[str, list[float]] = {}
    for row in rows:
        pixelcnn = row.get("decoder") == "pixelcnn"
        spent = {k[len("seconds_"):]: v for k, v in row.items() if k.startswith("seconds_") and v is not None}
        for name, sec in spent.items():
            got = metrics.setdefault(name, [0.0, 0.0])
            got[0] += sec
            got[1] += sec if pixelcnn else 0.0
        if spent:
            cells.setdefault("pixelcnn" if pixelcnn else "factorized", []).append(sum(spent.values()))
    return metrics, cells


def bench(profile: str, overrides: list[str], keep: Path | None) -> None:
    """Run one study in a fresh copy and print its time split."""
    t_all = time.perf_counter()
    goal = GOALS.get(profile)
    env = {**venv_env(), "PYTHONUNBUFFERED": "1"}
    log = Path(tempfile.gettempdir()) / f"bench_study-{profile}-{os.getpid()}.log"
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        repo = study_copy(Path(tmp) / "repo", profile=profile, overrides=overrides)
        env["PYTHONPATH"] = str(repo)  # the copy's own code, whatever the checkout does meanwhile
        copied = time.perf_counter() - t
        print(f"{profile} study{' ' + ' '.join(overrides) if overrides else ''}: `dvc repro` in a fresh "
              f"copy of the repository ({copied:.1f} s to copy); load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores at start", flush=True)
        with CpuSampler(interval=0.25) as cpu:
            lines, t0, t1 = stream(["dvc", "repro"], repo, env)
        log.write_text("\n".join(f"{t - t0:8.2f}  {text}" for t, text in lines) + "\n")
        eval_rows = pq.read_table(repo / "results" / "eval" / "metrics.parquet").to_pylist()
        again, a0, a1 = stream(["dvc", "repro"], repo, env)
        noop_ok = any("Data and pipelines are up to date." in text for _, text in again)
        noop_ok = noop_ok and not any(text.startswith("Running stage") for _, text in again)
        if keep:
            shutil.copytree(repo, keep, symlinks=True, dirs_exist_ok=True)
    total = t1 - t0
    s = stages(lines, t0, t1, cpu)
    sw = s["sweep"]["result"]["seconds"]
    clf = classifier_seconds(s["evaluate"]["lines"])

    parts: list[tuple[str, float]] = []
    for name in STAGES:
        st = s[name]
        parts.append((f"dvc: {'start-up, ' if name == 'prepare' else ''}checks before {name}", st["before"]))
        if name == "sweep":
            parts += [(f"{name}: python start, imports, parent run, summary", st["startup"]),
                      (f"{name}: preflight (grid, verified data splits)", sw.get("preflight", 0.0)),
                      (f"{name}: MLflow start (store, experiment)", sw["mlflow_start"]),
                      (f"{name}: Ray start", sw["ray_start"]),
                      (f"{name}: Tune fit (the trials)", sw["fit"])]
        else:
            parts += [(f"{name}: python start and imports", st["startup"]),
                      (f"{name}: the stage's own work (its seconds)", st["inner"])]
        parts += [(f"{name}: process exit", st["exit"]), (f"{name}: dvc saves outs, lock", st["commit"])]
    parts.append(("dvc: finishing", s["dvc"]["finish"]))

    print(f"\n  {'part':<52} {'seconds':>8} {'share':>7}")
    for name, sec in parts:
        print(f"  {name:<52} {sec:>8.1f} {sec / total:>7.1%}")
    verdict = "" if goal is None else f"   goal < {goal:.0f} s  {'OK' if total < goal else 'MISSED'}"
    print(f"  {'total (dvc repro wall time)':<52} {total:>8.1f} {1:>7.0%}{verdict}")
    if abs(sum(sec for _, sec in parts) - total) > 0.05:
        print(f"  (parts sum to {sum(sec for _, sec in parts):.1f} s)")

    starts = sum(s[n]["startup"] for n in STAGES)
    grouped = [
        ("start-up: python start + imports, 4 stages", starts),
        ("start-up: sweep preflight (grid, verified data)", sw.get("preflight", 0.0)),
        ("start-up: MLflow (sweep)", sw["mlflow_start"]),
        ("start-up: Ray (sweep)", sw["ray_start"]),
        ("training: Tune fit", sw["fit"]),
        ("evaluation (evaluate's seconds)", s["evaluate"]["inner"]),
        ("  of which the classifier's training", clf),
        ("report (report's seconds)", s["report"]["inner"]),
        ("data preparation (prepare's seconds)", s["prepare"]["inner"]),
        ("process exits (sweep: Ray shutdown)", sum(s[n]["exit"] for n in STAGES)),
        ("DVC: start-up, checks, saving outs, finishing",
         sum(s[n]["before"] + s[n]["commit"] for n in STAGES) + s["dvc"]["finish"]),
    ]
    print(f"\n  {'grouped':<52} {'seconds':>8} {'share':>7}")
    for name, sec in grouped:
        print(f"  {name:<52} {sec:>8.1f} {sec / total:>7.1%}")

    metrics, cells = evaluation_parts(eval_rows)
    n_pix = len(cells.get("pixelcnn", []))
    print(f"\n  {'evaluate, by metric (compute s)':<40} {'all cells s':>12} {f'{n_pix} PixelCNN s':>14}")
    for name, (every, pix) in sorted(metrics.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:<40} {every:>12.1f} {pix:>14.1f}")
    for kind, spans in sorted(cells.items()):
        print(f"  {f'per {kind} cell (median of {len(spans)}), s':<40} {statistics.median(spans):>12.1f}")
    print(f"  (class_mismatch of the first cell includes training the classifier: {clf:.1f} s)")

    print(f"\n  {'stage':<10} {'span s':>8} {'CPU cores obtained':>19} {'machine busy':>13}")
    for name in STAGES:
        st = s[name]
        print(f"  {name:<10} {st['end'] - st['start']:>8.1f} {st['cores']:>19.2f} {st['machine']:>13.2f}")
    print(f"  {'whole':<10} {total:>8.1f} {cpu.tree_cpu(t0, t1) / total:>19.2f} "
          f"{cpu.machine_cores(t0, t1):>13.2f}")

    print(f"\nsecond `dvc repro` (nothing to do): {a1 - a0:.1f} s, "
          f"{'up to date, no stage ran' if noop_ok else 'UNEXPECTED: a stage ran or no up-to-date message'}")
    print("\nthe stages' closing JSON lines:")
    for name in STAGES:
        print(f"  {name}: {json.dumps(s[name]['result'])}")
    print(f"\nCPU sampler: {cpu.overhead:.1f} CPU s; dvc repro output with arrival times: {log}")
    print(f"benchmark wall time {time.perf_counter() - t_all:.0f} s\n", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append",
                    help="laptop, smoke, ... (repeatable; default: laptop then smoke)")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a params override for every study run (DVC/Hydra syntax)")
    ap.add_argument("--keep", type=Path, help="copy the finished study here (one profile only)")
    args = ap.parse_args()
    profiles = args.profile or ["laptop", "smoke"]
    if args.keep and len(profiles) > 1:
        ap.error("--keep needs exactly one --profile")
    for profile in profiles:
        bench(profile, args.set, args.keep)


if __name__ == "__main__":
    main()
