"""The Ray Tune trainable: one trial = one training run (pipeline.train.trainer) of the trial's spec.

It lives in the package, not in a test or script, because Ray workers import it by name.
Every epoch reports its metrics with a checkpoint; a restarted trial resumes from the last
checkpoint exactly (pipeline.train.trainer.resume). The checkpoint of a factorized-decoder trial also
holds sample and reconstruction grids (PixelCNN sampling is 784 passes: only at the end), and
the size and sha256 of checkpoint.pt (pipeline.sweep.space.DIGEST), written with it.

A trial that diverged records it in its audit file; when a resumed sweep retries errored trials
(it must, for those that failed outside the model), a diverged one fails again at once with
its reason instead of training again.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.infra import atomic
from pipeline.infra.layout import RECONSTRUCTIONS, SAMPLES
from pipeline.sweep.space import write_digest
from pipeline.sweep.sysmetrics import MonitorSpec, TrialMonitor
from pipeline.train import checkpoint as ckpt
from pipeline.train.artifacts import reconstruction_grid, sample_grid
from pipeline.train.trainer import Trainer, TrainingDiverged, resume

AUDIT_DIR = "starts"  # inside the Ray experiment directory


def placement() -> dict[str, Any]:
    """Where this trial runs: Ray node, process, the GPU ids Ray assigned (Ray sets
    CUDA_VISIBLE_DEVICES to them, so a trial with a GPU sees only its own)."""
    import ray

    ctx = ray.get_runtime_context()
    gpu_ids = ray.get_gpu_ids()
    return {"node_id": ctx.get_node_id(), "pid": os.getpid(),
            "gpu_ids": ",".join(str(g) for g in gpu_ids),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def record(audit_dir: str | None, event: str, epoch: int, **extra: Any) -> None:
    """Append to `<experiment>/starts/<trial id>.jsonl` one line per (re)start and end of the
    trial, so a resumed sweep can be audited (which trials ran again, from which epoch). It
    lives outside the trial directory, which Ray re-syncs from the worker on a restart."""
    if not audit_dir:
        return
    from ray import tune

    path = Path(audit_dir) / f"{tune.get_context().get_trial_id()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"event": event, "epoch": epoch, "time": time.time(), "pid": os.getpid(), **extra})
    with open(path, "a") as f:
        f.write(line + "\n")


def diverged_before(audit_dir: str | None) -> str | None:
    """The reason this trial diverged in an earlier run of the sweep, if it did."""
    if not audit_dir:
        return None
    from ray import tune

    path = Path(audit_dir) / f"{tune.get_context().get_trial_id()}.jsonl"
    if not path.is_file():
        return None
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return next((e["reason"] for e in reversed(events) if e.get("event") == "diverged"), None)


def write_checkpoint_dir(trainer: Trainer, directory: str | Path, final: bool) -> None:
    """checkpoint.pt (+ its digest) and, when due, the sample and reconstruction grids."""
    trainer.save(directory)
    write_digest(directory, ckpt.FILENAME)
    if final or not trainer.model.decoder.autoregressive:
        n = 100 if not trainer.model.decoder.autoregressive else 16
        atomic.write_bytes(Path(directory) / SAMPLES, sample_grid(trainer.model, n=n))
        atomic.write_bytes(Path(directory) / RECONSTRUCTIONS,
                           reconstruction_grid(trainer.model, trainer.val_x, n=20 if n == 16 else 50))


def run_trial(config: dict[str, Any], monitor: MonitorSpec | None = None) -> None:
    from ray import tune

    with TrialMonitor(monitor, tune.get_context().get_trial_id()):
        _train(config)


def _train(config: dict[str, Any]) -> None:
    from ray import tune

    reason = diverged_before(config.get("audit_dir"))
    if reason:
        raise TrainingDiverged(reason)
    spec = ckpt.RunSpec.from_dict(config["spec"])
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            trainer = resume(ckpt.load(d))
    else:
        trainer = Trainer(spec)
    record(config.get("audit_dir"), "start", trainer.epoch)
    where = {**placement(), "device": str(trainer.device), "torch_threads": spec.train.threads}
    last = spec.train.epochs

    def on_epoch(epoch: int, metrics: dict[str, float], _saved) -> None:
        with tempfile.TemporaryDirectory(prefix="infovae-ckpt-") as tmp:
            write_checkpoint_dir(trainer, tmp, final=epoch == last)
            tune.report({**metrics, **where, "reported_at": time.time()},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        trainer.run(on_epoch=on_epoch)
    except TrainingDiverged as err:
        record(config.get("audit_dir"), "diverged", trainer.epoch, reason=str(err))
        raise
    record(config.get("audit_dir"), "end", trainer.epoch)
