"""The plan before compute: cells, trials, epochs and a projected time on this machine.

Each distinct model family of the grid (encoder, decoder, divergence) is calibrated in this
process with the real training code (pipeline.train.trainer.Trainer on two batches of the
prepared data, after one warm-up epoch), on the device and thread count a trial gets. A
trial's time is then

    worker_s + setup_s + epochs x (ceil(n_train / batch) x step + n_val x val_image_s + save_s) + end_s

(worker_s: a fresh process importing the trainable; setup_s: loading the data; save_s: the
checkpoint and image grids of an epoch; end_s: PixelCNN's final sample grids, 784 decoder
passes each; Ray's own bookkeeping is not included) and the sweep's time is a greedy
longest-first schedule of all trials over the concurrent slots. With ASHA a trial's expected
epochs are sum_k r^-k x (rung_{k+1} - rung_k) (a fraction 1/r survives each rung), so the
ASHA figure is an expectation and the no-stopping figure an upper bound. The evaluation
is not projected here: it is the evaluate stage's, which calibrates on the trained models
(pipeline.evaluation.plan), so no evaluate setting is the sweep's to read.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.infra.layout import PLAN
from pipeline.infra.timing import duration, schedule
from pipeline.params.grid import Cell
from pipeline.params.load import Params
from pipeline.sweep.search import trial_spec

PIXELS = 784


def asha_epochs(epochs: int, grace: int, factor: float) -> float:
    """Expected epochs of a trial under ASHA: rungs at grace x factor^k; 1/factor survive each."""
    rungs = [grace * factor**k for k in range(64) if grace * factor**k < epochs] + [epochs]
    total, last, alive = 0.0, 0, 1.0
    for rung in rungs:
        total += alive * (min(rung, epochs) - last)
        last, alive = min(rung, epochs), alive / factor
    return total


def worker_start_s() -> float:
    """Seconds a fresh Python process takes to import the trainable (torch, Ray, the models):
    what a trial's Ray worker pays before it trains."""
    import subprocess
    import sys

    clock = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.sweep.trainable"], check=True,
                   capture_output=True, timeout=300)
    return time.perf_counter() - clock


def _calibrate(spec) -> dict[str, float]:
    """Seconds of: setting up a trial (data loading), one training step, one validation image,
    one checkpoint save with its image grids, one decoder pass on 16 images, for this spec."""
    import torch

    from pipeline.train.artifacts import reconstruction_grid, sample_grid
    from pipeline.train.trainer import Trainer

    bs = spec.train.batch_size
    val_n = max(spec.train.diagnostics_size or 0, 100)
    train = spec.train.model_copy(update={"train_size": 2 * bs, "validation_size": val_n, "epochs": 2})
    clock = time.perf_counter()
    trainer = Trainer(replace(spec, train=train))
    setup = time.perf_counter() - clock
    trainer.train_epoch()  # warm-up: allocations, first-call costs
    step = trainer.train_epoch()["epoch_seconds"] / 2
    clock = time.perf_counter()
    trainer.validate()
    val_image = (time.perf_counter() - clock) / val_n
    with tempfile.TemporaryDirectory(prefix="infovae-plan-") as tmp:
        clock = time.perf_counter()
        trainer.save(tmp)
        if not trainer.model.decoder.autoregressive:  # written every epoch (pipeline.sweep.trainable)
            sample_grid(trainer.model, n=100)
            reconstruction_grid(trainer.model, trainer.val_x, n=50)
        save = time.perf_counter() - clock
    model, d, dev = trainer.model.eval(), spec.model.latent_dim, trainer.device
    with torch.no_grad():
        z16 = torch.randn(16, d, device=dev)
        model.decoder.logits(z16, torch.zeros(16, 1, 28, 28, device=dev))
        clock = time.perf_counter()
        model.decoder.logits(z16, torch.zeros(16, 1, 28, 28, device=dev))
        pass16 = time.perf_counter() - clock
    return {"setup_s": setup, "step_s": step, "val_image_s": val_image, "save_s": save, "pass16_s": pass16}


def epoch_seconds(spec, cal: dict[str, float], n_train: int, n_val: int) -> float:
    return math.ceil(n_train / spec.train.batch_size) * cal["step_s"] + n_val * cal["val_image_s"] \
        + cal["save_s"]


def fixed_seconds(spec, cal: dict[str, float], worker_s: float) -> float:
    """A trial's cost besides its epochs: worker start, data loading, PixelCNN's final grids."""
    end = 2 * PIXELS * cal["pass16_s"] if spec.model.decoder == "pixelcnn" else 0.0
    return worker_s + cal["setup_s"] + end


def trial_seconds(spec, cal: dict[str, float], n_train: int, n_val: int, epochs: float,
                  worker_s: float = 0.0) -> float:
    return epochs * epoch_seconds(spec, cal, n_train, n_val) + fixed_seconds(spec, cal, worker_s)


def make_plan(params: Params, cells: list[Cell], data_dir: str, slots: int, log=print) -> dict[str, Any]:
    """The plan of the sweep: counts, calibration, projected seconds."""
    from pipeline.data.splits import read_metadata

    sweep, epochs = params.sweep, params.train.epochs
    meta = {s: read_metadata(Path(data_dir) / f"{s}.parquet")["rows"]
            for s in ("train", "validation", "test")}
    specs = {c.id: trial_spec(params, c, {}, data_dir) for c in cells}
    cals: dict[str, dict[str, float]] = {}
    clock = time.perf_counter()
    worker = worker_start_s()
    for spec in specs.values():
        if spec.family not in cals:
            cals[spec.family] = _calibrate(spec)
    def expected(epochs: int) -> float:
        return (asha_epochs(epochs, sweep.asha.grace_period, sweep.asha.reduction_factor)
                if sweep.scheduler == "asha" and sweep.trials_per_cell > 1 else float(epochs))
    per_epoch, fixed, trials_max, trials_exp = {}, {}, [], []
    for cell in cells:
        spec = specs[cell.id]
        cal = cals[spec.family]
        epochs_cell = spec.train.epochs  # a grid may set train.epochs per cell
        n_train = min(spec.train.train_size or meta["train"], meta["train"])
        n_val = min(spec.train.validation_size or meta["validation"], meta["validation"])
        full = trial_seconds(spec, cal, n_train, n_val, epochs_cell, worker)
        per_epoch[cell.id] = epoch_seconds(spec, cal, n_train, n_val)
        fixed[cell.id] = fixed_seconds(spec, cal, worker)
        trials_max += [full] * sweep.trials_per_cell
        # With ASHA the first trials of a cell run their rungs; one survivor per cell at least.
        rest = trial_seconds(spec, cal, n_train, n_val, expected(epochs_cell), worker)
        trials_exp += [full] + [rest] * (sweep.trials_per_cell - 1)
    plan = {
        "cells": len(cells), "trials": len(cells) * sweep.trials_per_cell,
        "trials_per_cell": sweep.trials_per_cell, "epochs": epochs,
        "epochs_total": sweep.trials_per_cell * sum(specs[c.id].train.epochs for c in cells),
        "expected_epochs_per_trial": round(expected(epochs), 2), "concurrent_trials": slots,
        "sweep_s": round(schedule(trials_exp, slots), 1),
        "sweep_max_s": round(schedule(trials_max, slots), 1),
        "calibration_s": round(time.perf_counter() - clock, 2), "families": cals,
        "worker_start_s": round(worker, 2), "epoch_s_by_cell": per_epoch, "fixed_s_by_cell": fixed,
        "epochs_by_cell": {c.id: specs[c.id].train.epochs for c in cells},
        "created": time.time(),
    }
    return plan


def plan_line(plan: dict[str, Any]) -> str:
    sweep = duration(plan["sweep_s"])
    if plan["sweep_max_s"] > plan["sweep_s"] * 1.01:
        sweep += f" (at most {duration(plan['sweep_max_s'])} if ASHA stops none)"
    return (f"plan: {plan['cells']} cells x {plan['trials_per_cell']} trials = {plan['trials']} trials x "
            f"{plan['epochs']} epochs, {plan['concurrent_trials']} at once; projected sweep {sweep} "
            f"(calibrated in {plan['calibration_s']:.1f} s on {len(plan['families'])} model families)")


def announce(params: Params, cells: list[Cell], data_dir: str, slots: int, client, parent: str,
             out_dir: Path, log=print) -> dict[str, Any]:
    """Calibrate, print the plan line, write `<sweep.out_dir>/plan.json` and record the plan on
    the parent MLflow run (tags infovae.plan.*, the artifact plan.json, its description)."""
    import torch

    from pipeline.infra import atomic, tracking
    from pipeline.sweep.context import parent_note

    threads = torch.get_num_threads()
    try:
        plan = make_plan(params, cells, data_dir, slots)
    finally:
        torch.set_num_threads(threads)
    plan["line"] = plan_line(plan)
    log(plan["line"])
    atomic.write_json(out_dir / PLAN, plan)
    tracking.set_tags(client, parent, {
        **{f"infovae.plan.{k}": plan[k] for k in ("cells", "trials", "epochs", "concurrent_trials", "sweep_s",
                                                  "sweep_max_s")},
        "mlflow.note.content": parent_note(params, len(cells), plan["line"])})
    tracking.log_files(client, parent, [out_dir / PLAN], "sweep")
    return plan
