"""Evaluating grid cells as Ray tasks: several at once, on the sweep's Ray (local or a cluster).

Each cell is one task holding evaluate.threads CPUs and evaluate.gpus_per_cell GPUs; Ray sets
CUDA_VISIBLE_DEVICES to the task's own GPUs, and a task given none evaluates on the CPU (the
checkpoint's "auto"/"cuda" device notwithstanding). The MNIST classifier that scores generated
samples is made (trained or loaded) once, in a task of its own, before the cells start: cells
running at once would otherwise all train it.

No task reads the repository's disk (a cluster's nodes share none): the prepared data travels in
Ray's object store (pipeline.data.shipping), each task gets its checkpoint's files and the
classifier's as arguments, and writes them to its node's temporary directory. The driver writes
each finished cell's cache file, so cells finished before an interruption are not evaluated again.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.data.shipping import pack, unpack
from pipeline.data.splits import SPLITS
from pipeline.errors import PipelineError
from pipeline.evaluation.jobs import Job, evaluate_job
from pipeline.infra import atomic
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


def _prepare_classifier(params: EvaluateParams, data: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The classifier made (or loaded) on the task's node: its meta and its cache file's bytes."""
    import torch

    from pipeline.evaluation.classifier import get_classifier
    from pipeline.train.trainer import choose_device

    p = _task_params(params)
    torch.set_num_threads(p.threads)
    device = choose_device("auto" if p.device == "checkpoint" else p.device)
    meta = get_classifier(unpack(data), p.classifier, device)[1]
    return meta, Path(p.classifier.path).read_bytes()


def _evaluate(job: Job, params: EvaluateParams, data: dict[str, Any], files: dict[str, bytes],
              classifier: bytes | None) -> dict[str, Any]:
    """One cell on whichever node Ray chose, from the files it was given (none read from the
    repository's paths); its row, which the driver caches."""
    import ray

    settings = _task_params(params)
    with tempfile.TemporaryDirectory(prefix="infovae-eval-") as tmp:
        for name, blob in files.items():
            (Path(tmp) / name).write_bytes(blob)
        if classifier is not None:
            (Path(tmp) / "classifier.pt").write_bytes(classifier)
            settings = settings.model_copy(update={"classifier": settings.classifier.model_copy(
                update={"path": str(Path(tmp) / "classifier.pt")})})
        here = replace(job, checkpoint=tmp, cache=Path(tmp) / "row.json")
        return evaluate_job(here, settings, Path("/"), Path(unpack(data)),
                            log=lambda m: print(f"{job.label}{m}", flush=True),
                            extra={"ray_gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
                                   "ray_node_id": ray.get_runtime_context().get_node_id()})


def _files(base: Path, job: Job) -> dict[str, bytes]:
    """The files of a job's checkpoint directory (checkpoint.pt and its digest, a few MB)."""
    return {f.name: f.read_bytes() for f in (base / job.checkpoint).iterdir() if f.is_file()}


def run_on_ray(jobs: list, params, run_params: EvaluateParams, base: Path, data_dir: Path,
               log=print, progress=None) -> dict[str, dict[str, Any]]:
    import ray

    connect(params.cluster)
    gpus = gpus_per_cell(run_params)
    check_fits({"CPU": (run_params.threads, "evaluate.threads"),
                "GPU": (gpus, "evaluate.gpus_per_cell")}, "evaluation")
    options = {"num_cpus": run_params.threads, "num_gpus": gpus, "max_retries": 0}
    evaluate = ray.remote(_evaluate).options(**options)
    data = ray.put(pack(data_dir, SPLITS))
    classifier = None
    if run_params.class_mismatch_samples:
        meta, classifier = _get(ray.remote(_prepare_classifier).options(**options).remote(run_params, data),
                                "preparing the classifier")
        classifier = ray.put(classifier)
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
                ref = evaluate.remote(job, run_params, data, _files(base, job), classifier)
                running[ref] = (job, time.perf_counter())
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job, started = running.pop(ref)
            row = {**_get(ref, f"evaluating {job.label}"), "checkpoint": job.checkpoint}
            atomic.write_json(job.cache, row)  # here, where the stage reads it again
            out[job.cell] = row
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
