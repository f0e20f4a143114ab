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
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.data.shipping import unpack
from pipeline.infra import atomic, storage
from pipeline.infra.layout import RECONSTRUCTIONS, SAMPLES
from pipeline.sweep.space import write_digest
from pipeline.sweep.sysmetrics import MonitorSpec, TrialMonitor
from pipeline.train import checkpoint as ckpt
from pipeline.train.artifacts import reconstruction_grid, sample_grid
from pipeline.train.trainer import Trainer, TrainingDiverged, resume

AUDIT_DIR = "starts"  # inside the Ray experiment directory
# Ray Train's storage modules log "Checkpoint successfully created at ..." at INFO on every
# report (every trial, every epoch); the progress table already says it.
QUIET_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")


def placement() -> dict[str, Any]:
    """Where this trial runs: Ray node, process, the GPU ids Ray assigned (Ray sets
    CUDA_VISIBLE_DEVICES to them, so a trial with a GPU sees only its own)."""
    import ray

    ctx = ray.get_runtime_context()
    gpu_ids = ray.get_gpu_ids()
    return {"node_id": ctx.get_node_id(), "pid": os.getpid(),
            "gpu_ids": ",".join(str(g) for g in gpu_ids),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def _audit_file(audit_dir: str) -> tuple[storage.Location, str]:
    from ray import tune

    return storage.open_uri(audit_dir, "."), f"{tune.get_context().get_trial_id()}.jsonl"


def record(audit_dir: str | None, event: str, epoch: int, **extra: Any) -> None:
    """Add to `<experiment>/starts/<trial id>.jsonl` one line per (re)start and end of the
    trial, so a resumed sweep can be audited (which trials ran again, from which epoch). It
    lives outside the trial directory, which Ray re-syncs from the worker on a restart, in the
    sweep's storage (a path or an object store, `audit_dir` its URI: pipeline.infra.storage).
    An object cannot be appended to: the file is read and written whole (one writer: the trial)."""
    if not audit_dir:
        return
    loc, name = _audit_file(audit_dir)
    line = json.dumps({"event": event, "epoch": epoch, "time": time.time(), "pid": os.getpid(), **extra})
    loc.write_text(name, (loc.read_text(name) or "") + line + "\n")


def diverged_before(audit_dir: str | None) -> str | None:
    """The reason this trial diverged in an earlier run of the sweep, if it did."""
    if not audit_dir:
        return None
    loc, name = _audit_file(audit_dir)
    text = loc.read_text(name)
    events = [json.loads(line) for line in (text or "").splitlines() if line.strip()]
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


def run_trial(config: dict[str, Any], monitor: MonitorSpec | None = None,
              data: dict[str, Any] | None = None) -> None:
    """One trial; `data`: the prepared data carried by Ray (pipeline.data.shipping), read from
    this node's copy instead of the driver's data directory."""
    from ray import tune

    for name in QUIET_LOGGERS:  # their INFO lines would flood the sweep's console
        logging.getLogger(name).setLevel(logging.WARNING)
    with TrialMonitor(monitor, tune.get_context().get_trial_id()):
        _train(config, unpack(data) if data is not None else None)


def _train(config: dict[str, Any], data_dir: str | None = None) -> None:
    from ray import tune

    reason = diverged_before(config.get("audit_dir"))
    if reason:
        raise TrainingDiverged(reason)
    here = {"data_dir": data_dir} if data_dir else {}  # where this node holds the data
    spec = ckpt.RunSpec.from_dict({**config["spec"], **here})
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            state = ckpt.load(d)
            trainer = resume({**state, "spec": {**state["spec"], **here}})
    else:
        trainer = Trainer(spec)
    record(config.get("audit_dir"), "start", trainer.epoch)
    where = {**placement(), "device": str(trainer.device), "torch_threads": spec.train.threads}
    last = spec.train.epochs

    ended = []

    def on_epoch(epoch: int, metrics: dict[str, float], _saved) -> None:
        with tempfile.TemporaryDirectory(prefix="infovae-ckpt-") as tmp:
            write_checkpoint_dir(trainer, tmp, final=epoch == last)
            if epoch == last:  # before the report: ASHA stops a trial at its last one (max_t),
                record(config.get("audit_dir"), "end", epoch)  # and nothing after it would run
                ended.append(epoch)
            tune.report({**metrics, **where, "reported_at": time.time()},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        trainer.run(on_epoch=on_epoch)
    except TrainingDiverged as err:
        record(config.get("audit_dir"), "diverged", trainer.epoch, reason=str(err))
        raise
    if not ended:  # restored from its last epoch's checkpoint: nothing was left to train
        record(config.get("audit_dir"), "end", trainer.epoch)
