"""The evaluate stage's plan: each cell's projected evaluation time, made before it measures.

The evaluation projects itself, from the trained models it is about to measure, so no
evaluate setting is the sweep's to read (a change of `evaluate.*` reruns only this stage and
the report). One checkpoint of each model family (encoder, decoder, divergence, likelihood) is
loaded and timed on the device and threads a job gets, with the real estimators:

    cell = (n_loglik + n_train_loglik) x loglik_image_s        importance-sampled NLL, if asked
         + n_prior x prior_samples / decoder_rows_per_s          the prior-proposal NLL, if asked
         + class_mismatch_samples x sample_image_s               generated images to classify
         + n_ais x (chains + 4) x (1 + (steps - 1) x leapfrog) / grad_rows_per_s     AIS, if asked
         + latent_s                                              latent metrics and the SVMs

with only the metrics evaluate.metric_grids gives the cell's grids (pipeline.evaluation.evaluate
.wanted). The stage's time is a greedy longest-first schedule of the cells over
evaluate.max_concurrent slots; the classifier's one-off training is not projected.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.infra import atomic
from pipeline.infra.layout import PLAN
from pipeline.infra.timing import duration, schedule
from pipeline.params.evaluate import EvaluateParams

SAMPLE_BATCH = 128  # images drawn to time generation (the evaluation draws 1000 at a time)
PIXELS = 784


def calibrate(model, x, settings: EvaluateParams) -> dict[str, float]:
    """Seconds of one image's K-sample importance-sampled NLL (pipeline.evaluation.loglik), one
    generated image (the decoder's own sampler: PixelCNN's cached one costs far less than 784
    passes), and decoder rows per second without and with a backward pass (AIS's leapfrog),
    for a trained model in eval mode and binary images x [n >= 4, 1, 28, 28] on its device."""
    import torch

    from pipeline.evaluation.estimate import model_log_likelihood
    from pipeline.evaluation.loglik import decoder_log_lik

    d, dev = model.encoder.latent_dim, x.device
    autoregressive = model.decoder.autoregressive
    log_lik = decoder_log_lik(model.decoder)
    with torch.no_grad():
        # A rate: an autoregressive decoder's rows are whole passes, so fewer of them suffice.
        rows = min(settings.loglik_rows, 128) if autoregressive else settings.loglik_rows
        log_lik(x[:1], torch.randn(1, max(1, rows // 8), d, device=dev))  # warm-up
        clock = time.perf_counter()
        log_lik(x[:1], torch.randn(1, rows, d, device=dev))
        rows_per_s = rows / max(time.perf_counter() - clock, 1e-9)
        clock = time.perf_counter()
        model.decoder.sample(torch.randn(SAMPLE_BATCH, d, device=dev))
        sample_image = (time.perf_counter() - clock) / SAMPLE_BATCH
    grad_rows = max(1, min(settings.loglik_rows, 64))
    z = torch.randn(1, grad_rows, d, device=dev, requires_grad=True)
    log_lik(x[:1], z).sum().backward()
    clock = time.perf_counter()
    log_lik(x[:1], z).sum().backward()
    grad_rows_per_s = grad_rows / max(time.perf_counter() - clock, 1e-9)
    images = 1 if autoregressive else 4
    clock = time.perf_counter()
    model_log_likelihood(model, x[:images], "is", settings.loglik_k, seed=0, rows=settings.loglik_rows,
                         proposal=settings.loglik_proposal)
    return {"decoder_rows_per_s": rows_per_s, "sample_image_s": sample_image,
            "grad_rows_per_s": grad_rows_per_s,
            "loglik_image_s": (time.perf_counter() - clock) / images}


def latent_seconds(settings: EvaluateParams, latent_dim: int, n_test: int, n_train: int) -> float:
    """Seconds of a cell's latent metrics (test and train encodings, the unbiased MMD on up to
    mmd_samples train codes) and semi-supervised SVMs, timed on random encodings of the
    evaluated sizes with the real metric functions."""
    import numpy as np
    import torch

    from pipeline.evaluation.metrics.semisupervised import semisupervised_error
    from pipeline.model.latent_stats import latent_diagnostics, mmd_unbiased_to_prior

    n = min(settings.latent_size or n_test, n_test)
    g = torch.Generator().manual_seed(0)
    mean, std = torch.randn(n, latent_dim, generator=g), torch.rand(n, latent_dim, generator=g) + 0.1
    clock = time.perf_counter()
    latent_diagnostics(mean, std, generator=g)
    seconds = 2 * (time.perf_counter() - clock)  # test and train encodings
    m = min(settings.mmd_samples, n_train)  # Fig. 3A's unbiased MMD on sampled train codes
    codes = torch.randn(m, latent_dim, generator=g)
    clock = time.perf_counter()
    mmd_unbiased_to_prior(codes, generator=g)
    seconds += time.perf_counter() - clock
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(settings.semisupervised_pool, latent_dim))
    test = rng.normal(size=(n_test, latent_dim))
    clock = time.perf_counter()
    semisupervised_error(pool, rng.integers(0, 10, len(pool)), test, rng.integers(0, 10, n_test),
                         settings.semisupervised_labels, settings.semisupervised_repeats, 0)
    return seconds + time.perf_counter() - clock


def cell_seconds(settings: EvaluateParams, decoder: str, cal: dict[str, float], n_test: int,
                 grids: tuple[str, ...] | None = None) -> float:
    """A cell's evaluation: the metrics evaluate.metric_grids asks of a cell of these grids."""
    from pipeline.evaluation.evaluate import wanted

    names = {m.name for m in wanted(settings, grids)}
    n_loglik = min(settings.loglik_test_size or n_test, n_test)
    images = n_loglik + settings.loglik_train_size if "nll" in names else 0
    rows = n_loglik * settings.prior_samples if "loglik_prior" in names else 0
    seconds = images * cal["loglik_image_s"] + rows / cal["decoder_rows_per_s"]
    if "class_mismatch" in names:  # (a calibration without sample_image_s: 784 passes a sample)
        passes = PIXELS if decoder == "pixelcnn" else 1
        per_image = cal.get("sample_image_s", passes / cal["decoder_rows_per_s"])
        seconds += settings.class_mismatch_samples * per_image
    if "loglik_ais" in names:  # (chains + 4 pilot chains) x (1 + (steps - 1) x leapfrog) per image
        ais = min(settings.ais_test_size, n_test)
        grad_rows = ais * (settings.ais_chains + 4) * (1 + (settings.ais_steps - 1) * settings.ais_leapfrog)
        seconds += grad_rows / cal["grad_rows_per_s"] + ais * cal["loglik_image_s"]
    return seconds + (cal["latent_s"] if "latent" in names or "semisupervised" in names else 0.0)


def make_plan(jobs: list, settings: EvaluateParams, base: Path, data_dir: Path) -> dict[str, Any]:
    """Every job's projected seconds (by cell), calibrated on one checkpoint of each family."""
    import torch

    from pipeline.data.splits import load_split, read_metadata
    from pipeline.evaluation.context import binarize_once
    from pipeline.train.checkpoint import FILENAME
    from pipeline.train.trainer import choose_device, load_trained

    clock = time.perf_counter()
    if not jobs:
        return {"cells": 0, "evaluate_s": 0.0, "evaluate_s_by_cell": {},
                "concurrent": settings.max_concurrent, "families": {}, "calibration_s": 0.0,
                "created": time.time(),
                "line": "evaluation plan: every cell's measurement is cached; nothing to measure"}
    threads = torch.get_num_threads()
    n_test = read_metadata(data_dir / "test.parquet")["rows"]
    n_train = read_metadata(data_dir / "train.parquet")["rows"]
    test = load_split(data_dir, "test")
    cals: dict[str, dict[str, float]] = {}
    latent: dict[tuple[int, int], float] = {}  # by (latent dim, train codes): not the family's
    by_cell: dict[str, float] = {}
    try:
        torch.set_num_threads(settings.threads)
        for job in jobs:
            try:
                model, spec = load_trained(base / job.checkpoint / FILENAME)
            except Exception:  # noqa: BLE001 - unreadable: its job fails and names the cell
                continue
            pref = spec.train.device if settings.device == "checkpoint" else settings.device
            device = choose_device(pref)
            if spec.family not in cals:
                x = binarize_once(test, settings.seed, "test", spec.model.likelihood)
                cals[spec.family] = calibrate(model.to(device), x[:4].to(device), settings)
            key = (spec.model.latent_dim, min(spec.train.train_size or n_train, n_train))
            if key not in latent:
                latent[key] = latent_seconds(settings, *key[:1], n_test, key[1])
            cal = {**cals[spec.family], "latent_s": latent[key]}
            by_cell[job.cell] = round(cell_seconds(settings, spec.model.decoder, cal, n_test, job.grids), 1)
    finally:
        torch.set_num_threads(threads)
    slots = settings.max_concurrent
    plan = {"cells": len(jobs), "evaluate_s": round(schedule(list(by_cell.values()), slots), 1),
            "evaluate_s_by_cell": by_cell, "concurrent": settings.max_concurrent, "families": cals,
            "calibration_s": round(time.perf_counter() - clock, 2), "created": time.time()}
    plan["line"] = (f"evaluation plan: {len(jobs)} cells to measure, {settings.max_concurrent} at once; "
                    f"projected {duration(plan['evaluate_s'])} (calibrated in {plan['calibration_s']:.1f} s "
                    f"on {len(cals)} model families)")
    return plan


def announce(jobs: list, settings: EvaluateParams, base: Path, data_dir: Path, out_dir: Path,
             log=print) -> dict[str, Any]:
    """Make the plan, print its line and write `<evaluate.out_dir>/plan.json`."""
    plan = make_plan(jobs, settings, base, data_dir)
    log(plan["line"])
    atomic.write_json(out_dir / PLAN, plan)
    return plan
