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
ASHA figure is an expectation and the no-stopping figure an upper bound. The evaluation of
a cell is dominated by the importance-sampled log-likelihood: (n_test + n_train) images x the
measured seconds of one image's K-sample estimate, plus class-mismatch sampling (784 decoder
passes per image for PixelCNN, at the measured rows per second), plus the latent metrics and
semi-supervised SVMs timed on random encodings; the classifier's one-off training is not
projected.
"""

from __future__ import annotations

import heapq
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.params.load import Params
from pipeline.sweep.grid import Cell
from pipeline.sweep.search import trial_spec

PLAN = "plan.json"  # in sweep.out_dir
PIXELS = 784


def family(spec) -> str:
    likelihood = getattr(spec.model, "likelihood", "bernoulli")  # a Gaussian decoder: twice the outputs
    tail = "" if likelihood == "bernoulli" else f"/{likelihood}"
    return f"{spec.model.encoder}/{spec.model.decoder}/{spec.objective.divergence}{tail}"


def asha_epochs(epochs: int, grace: int, factor: float) -> float:
    """Expected epochs of a trial under ASHA: rungs at grace x factor^k; 1/factor survive each."""
    rungs = [grace * factor**k for k in range(64) if grace * factor**k < epochs] + [epochs]
    total, last, alive = 0.0, 0, 1.0
    for rung in rungs:
        total += alive * (min(rung, epochs) - last)
        last, alive = min(rung, epochs), alive / factor
    return total


def schedule(durations: list[float], slots: int) -> float:
    """Makespan of a greedy longest-first assignment of jobs to `slots` parallel slots."""
    load = [0.0] * max(1, slots)
    for d in sorted(durations, reverse=True):
        heapq.heappush(load, heapq.heappop(load) + d)
    return max(load)


def worker_start_s() -> float:
    """Seconds a fresh Python process takes to import the trainable (torch, Ray, the models):
    what a trial's Ray worker pays before it trains."""
    import subprocess
    import sys

    clock = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.sweep.trainable"], check=True,
                   capture_output=True, timeout=300)
    return time.perf_counter() - clock


SAMPLE_BATCH = 128  # images drawn to time generation (the evaluation draws 1000 at a time)


def _calibrate(spec, eval_rows: int, eval_k: int) -> dict[str, float]:
    """Seconds of: setting up a trial (data loading), one training step, one validation image,
    one checkpoint save with its image grids, one decoder pass on 16 images; and decoder rows
    per second; and one image's importance-sampled log-likelihood with K samples (the real
    estimator, pipeline.evaluation.loglik), for this spec."""
    import torch

    from pipeline.evaluation.loglik import decoder_log_lik, model_log_likelihood
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
    autoregressive = trainer.model.decoder.autoregressive
    with tempfile.TemporaryDirectory(prefix="infovae-plan-") as tmp:
        clock = time.perf_counter()
        trainer.save(tmp)
        if not autoregressive:  # written every epoch (pipeline.sweep.trainable)
            sample_grid(trainer.model, n=100)
            reconstruction_grid(trainer.model, trainer.val_x, n=50)
        save = time.perf_counter() - clock
    model, d = trainer.model.eval(), spec.model.latent_dim
    dev = trainer.device
    with torch.no_grad():
        z16 = torch.randn(16, d, device=dev)
        model.decoder.logits(z16, torch.zeros(16, 1, 28, 28, device=dev))
        clock = time.perf_counter()
        model.decoder.logits(z16, torch.zeros(16, 1, 28, 28, device=dev))
        pass16 = time.perf_counter() - clock
        log_lik = decoder_log_lik(model.decoder)
        x = trainer.val_x[:1]
        # A rate: an autoregressive decoder's rows are whole passes, so fewer of them suffice.
        rows = min(eval_rows, 128) if autoregressive else eval_rows
        warm = max(1, rows // 8)
        log_lik(x, torch.randn(1, warm, d, device=dev))
        clock = time.perf_counter()
        log_lik(x, torch.randn(1, rows, d, device=dev))
        rows_per_s = rows / max(time.perf_counter() - clock, 1e-9)
    grad_rows = max(1, min(eval_rows, 64))  # AIS's leapfrog: forward and backward, per (x, z) row
    z = torch.randn(1, grad_rows, d, device=dev, requires_grad=True)
    log_lik(x, z).sum().backward()
    clock = time.perf_counter()
    log_lik(x, z).sum().backward()
    grad_rows_per_s = grad_rows / max(time.perf_counter() - clock, 1e-9)
    # One generated image (class mismatch): the PixelCNN's cached ancestral sampler costs far less
    # than 784 full passes, so it is timed, not derived from the pass rate.
    with torch.no_grad():
        clock = time.perf_counter()
        model.decoder.sample(torch.randn(SAMPLE_BATCH, d, device=dev))
        sample_image = (time.perf_counter() - clock) / SAMPLE_BATCH
    images = 1 if autoregressive else 4
    clock = time.perf_counter()
    model_log_likelihood(model, trainer.val_x[:images], "is", eval_k, seed=0, rows=eval_rows)
    loglik_image = (time.perf_counter() - clock) / images
    return {"setup_s": setup, "step_s": step, "val_image_s": val_image, "save_s": save,
            "pass16_s": pass16, "decoder_rows_per_s": rows_per_s, "loglik_image_s": loglik_image,
            "grad_rows_per_s": grad_rows_per_s, "sample_image_s": sample_image}


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


def latent_seconds(params: Params, latent_dim: int, n_test: int) -> float:
    """Seconds of a cell's latent metrics (test and train encodings) and semi-supervised SVMs,
    timed on random encodings of the evaluated sizes with the real metric functions."""
    import numpy as np
    import torch

    from pipeline.evaluation.metrics.latent import latent_diagnostics
    from pipeline.evaluation.metrics.semisupervised import semisupervised_error

    ev = params.evaluate
    n = min(ev.latent_size or n_test, n_test)
    g = torch.Generator().manual_seed(0)
    mean, std = torch.randn(n, latent_dim, generator=g), torch.rand(n, latent_dim, generator=g) + 0.1
    clock = time.perf_counter()
    latent_diagnostics(mean, std, generator=g)
    seconds = 2 * (time.perf_counter() - clock)  # test and train encodings
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(ev.semisupervised_pool, latent_dim))
    test = rng.normal(size=(n_test, latent_dim))
    clock = time.perf_counter()
    semisupervised_error(pool, rng.integers(0, 10, len(pool)), test, rng.integers(0, 10, n_test),
                         ev.semisupervised_labels, ev.semisupervised_repeats, 0)
    return seconds + time.perf_counter() - clock


def eval_seconds(params: Params, spec, cal: dict[str, float], n_test: int,
                 grids: tuple[str, ...] | None = None) -> float:
    """A cell's evaluation: the metrics evaluate.metric_grids asks of a cell of these grids."""
    from pipeline.evaluation.evaluate import wanted

    ev = params.evaluate
    names = {m.name for m in wanted(ev, grids)}
    images = min(ev.loglik_test_size or n_test, n_test) + ev.loglik_train_size
    rows = (ev.loglik_test_size or n_test) * ev.prior_samples if "loglik_prior" in names else 0
    seconds = images * cal["loglik_image_s"] + rows / cal["decoder_rows_per_s"]
    if "class_mismatch" in names:  # (a calibration from before sample_image_s: 784 passes a sample)
        passes = PIXELS if spec.model.decoder == "pixelcnn" else 1
        seconds += ev.class_mismatch_samples * cal.get("sample_image_s", passes / cal["decoder_rows_per_s"])
    if "loglik_ais" in names:  # (chains + 4 pilot chains) x (1 + (steps - 1) x leapfrog) per image
        ais = min(ev.ais_test_size, n_test)
        grad_rows = ais * (ev.ais_chains + 4) * (1 + (ev.ais_steps - 1) * ev.ais_leapfrog)
        seconds += grad_rows / cal["grad_rows_per_s"] + ais * cal["loglik_image_s"]
    return seconds + (cal["latent_s"] if "latent" in names or "semisupervised" in names else 0.0)


def make_plan(params: Params, cells: list[Cell], data_dir: str, slots: int, log=print) -> dict[str, Any]:
    """The plan of the sweep (and its evaluation): counts, calibration, projected seconds."""
    from pipeline.data.splits import read_metadata

    sweep, epochs = params.sweep, params.train.epochs
    meta = {s: read_metadata(Path(data_dir) / f"{s}.parquet")["rows"]
            for s in ("train", "validation", "test")}
    specs = {c.id: trial_spec(params, c, {}, data_dir) for c in cells}
    cals: dict[str, dict[str, float]] = {}
    clock = time.perf_counter()
    worker = worker_start_s()
    for spec in specs.values():
        if family(spec) not in cals:
            cals[family(spec)] = _calibrate(spec, params.evaluate.loglik_rows, params.evaluate.loglik_k)
            cals[family(spec)]["latent_s"] = latent_seconds(params, spec.model.latent_dim, meta["test"])
    def expected(epochs: int) -> float:
        return (asha_epochs(epochs, sweep.asha.grace_period, sweep.asha.reduction_factor)
                if sweep.scheduler == "asha" and sweep.trials_per_cell > 1 else float(epochs))
    per_epoch, fixed, trials_max, trials_exp, evals = {}, {}, [], [], {}
    for cell in cells:
        spec = specs[cell.id]
        cal = cals[family(spec)]
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
        evals[cell.id] = eval_seconds(params, spec, cal, meta["test"], cell.grids)
    plan = {
        "cells": len(cells), "trials": len(cells) * sweep.trials_per_cell,
        "trials_per_cell": sweep.trials_per_cell, "epochs": epochs,
        "epochs_total": sweep.trials_per_cell * sum(specs[c.id].train.epochs for c in cells),
        "expected_epochs_per_trial": round(expected(epochs), 2), "concurrent_trials": slots,
        "sweep_s": round(schedule(trials_exp, slots), 1),
        "sweep_max_s": round(schedule(trials_max, slots), 1),
        "evaluate_s": round(schedule(list(evals.values()), params.evaluate.max_concurrent), 1),
        "evaluate_s_by_cell": evals,
        "calibration_s": round(time.perf_counter() - clock, 2), "families": cals,
        "worker_start_s": round(worker, 2), "epoch_s_by_cell": per_epoch, "fixed_s_by_cell": fixed,
        "epochs_by_cell": {c.id: specs[c.id].train.epochs for c in cells},
        "created": time.time(),
    }
    plan["total_s"] = round(plan["sweep_s"] + plan["evaluate_s"], 1)
    return plan


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def plan_line(plan: dict[str, Any]) -> str:
    sweep = duration(plan["sweep_s"])
    if plan["sweep_max_s"] > plan["sweep_s"] * 1.01:
        sweep += f" (at most {duration(plan['sweep_max_s'])} if ASHA stops none)"
    return (f"plan: {plan['cells']} cells x {plan['trials_per_cell']} trials = {plan['trials']} trials x "
            f"{plan['epochs']} epochs, {plan['concurrent_trials']} at once; projected sweep {sweep}, "
            f"evaluation {duration(plan['evaluate_s'])}, total {duration(plan['total_s'])} "
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
                                                  "sweep_max_s", "evaluate_s", "total_s")},
        "mlflow.note.content": parent_note(params, len(cells), plan["line"])})
    tracking.log_files(client, parent, [out_dir / PLAN], "sweep")
    return plan
