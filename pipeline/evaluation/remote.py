"""Evaluating grid cells as Ray tasks: several at once, on the sweep's Ray (local or a cluster).

Each cell is one task holding evaluate.threads CPUs and evaluate.gpus_per_cell GPUs; Ray sets
CUDA_VISIBLE_DEVICES to the task's own GPUs, and a task given none evaluates on the CPU (the
checkpoint's "auto"/"cuda" device notwithstanding). The MNIST classifier that scores generated
samples is made (trained or loaded) once, in a task of its own, before the cells start: cells
running at once would otherwise all train it. A task writes its cell's cache file itself, so
cells finished before an interruption are not evaluated again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.evaluation.jobs import evaluate_job
from pipeline.infra.cluster import check_fits, connect
from pipeline.params.evaluate import EvaluateParams


class RemoteEvaluationError(PipelineError):
    pass


def gpus_per_cell(params: EvaluateParams) -> float:
    if params.gpus_per_cell != "auto":
        return float(params.gpus_per_cell)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _task_params(params: EvaluateParams) -> EvaluateParams:
    """Inside a task: the CPU when Ray gave it no GPU (CUDA may still be visible there)."""
    import ray

    if ray.get_gpu_ids() or params.device == "cpu":
        return params
    return params.model_copy(update={"device": "cpu"})


def _prepare_classifier(params: EvaluateParams, data_dir: str) -> dict[str, Any]:
    import torch

    from pipeline.evaluation.classifier import get_classifier
    from pipeline.train.trainer import choose_device

    p = _task_params(params)
    torch.set_num_threads(p.threads)
    device = choose_device("auto" if p.device == "checkpoint" else p.device)
    return get_classifier(data_dir, p.classifier, device)[1]


def _evaluate(job, params: EvaluateParams, base: str, data_dir: str) -> dict[str, Any]:
    import ray


    return evaluate_job(job, _task_params(params), Path(base), Path(data_dir),
                        log=lambda m: print(f"{job.label}{m}", flush=True),
                        extra={"ray_gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids())})


def run_on_ray(jobs: list, params, run_params: EvaluateParams, base: Path, data_dir: Path,
               log=print, progress=None) -> dict[str, dict[str, Any]]:
    import ray

    connect(params.cluster)
    gpus = gpus_per_cell(run_params)
    check_fits({"CPU": (run_params.threads, "evaluate.threads"),
                "GPU": (gpus, "evaluate.gpus_per_cell")}, "evaluation")
    options = {"num_cpus": run_params.threads, "num_gpus": gpus, "max_retries": 0}
    evaluate = ray.remote(_evaluate).options(**options)
    if run_params.class_mismatch_samples:
        meta = _get(ray.remote(_prepare_classifier).options(**options).remote(run_params, str(data_dir)),
                    "preparing the classifier")
        log(f"classifier ready: test accuracy {meta['test_accuracy']:.4f}")
    log(f"evaluating {len(jobs)} cells as Ray tasks, at most {params.evaluate.max_concurrent} at once "
        f"({run_params.threads} CPUs, {gpus:g} GPUs each)")
    # Longest first (the PixelCNN cells cost 10-100x the others), so that no long cell starts
    # last and holds up the stage while the other workers idle.
    pending = sorted(jobs, key=lambda j: not j.autoregressive)
    running, out = {}, {}
    try:
        while pending or running:
            while pending and len(running) < params.evaluate.max_concurrent:
                job = pending.pop(0)
                if progress is not None:
                    progress.start(job)
                else:
                    log(f"{job.label}: evaluating {job.checkpoint}")
                ref = evaluate.remote(job, run_params, str(base), str(data_dir))
                running[ref] = (job, time.perf_counter())
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job, started = running.pop(ref)
            out[job.cell] = _get(ref, f"evaluating {job.label}")
            if progress is not None:
                progress.finish(job)
            else:
                log(f"{job.label}: done in {time.perf_counter() - started:.1f} s")
    finally:
        for ref in running:  # only after a failure or an interrupt
            ray.cancel(ref, force=True)
    return out


def _get(ref, what: str):
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if isinstance(err.cause, BaseException) else err
        raise RemoteEvaluationError(f"{what} failed: {type(cause).__name__}: {cause}") from None
