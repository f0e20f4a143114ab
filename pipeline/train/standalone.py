"""Train one configuration from params.yaml outside any sweep (`infovae train`).

Writes into the output directory: checkpoint.pt (every checkpoint_every epochs, atomically),
history.json (per-epoch metrics), spec.json (the resolved configuration), samples.png and
reconstructions.png. `--resume` continues from checkpoint.pt exactly where it stopped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.infra import atomic
from pipeline.params.load import Params
from pipeline.train import checkpoint as ckpt
from pipeline.train.artifacts import reconstruction_grid, sample_grid
from pipeline.train.trainer import RunResult, Trainer, resume

SHOWN = ("train_loss", "val_loss", "val_nelbo", "val_recon", "val_kl", "val_mmd", "val_mi",
         "images_per_second")


def spec_from_params(params: Params) -> ckpt.RunSpec:
    return ckpt.RunSpec(params.model, params.objective, params.train, params.data.out_dir)


def train_one(spec: ckpt.RunSpec, out_dir: str | Path, resume_run: bool = False,
              log=print) -> RunResult:
    out = Path(out_dir)
    if resume_run:
        trainer = resume(ckpt.load(out))
        saved = trainer.spec
        # A resumed run keeps its own configuration; only the number of epochs may grow.
        trainer.spec = ckpt.RunSpec(saved.model, saved.objective,
                                    saved.train.model_copy(update={"epochs": spec.train.epochs}),
                                    saved.data_dir)
        ignored = [k for k in ("model", "objective") if getattr(saved, k) != getattr(spec, k)]
        ignored += [f"train.{k}" for k, v in spec.train.model_dump().items()
                    if k != "epochs" and getattr(saved.train, k) != v]
        if ignored:
            log(f"warning: resuming keeps the run's own settings; ignoring changed {', '.join(ignored)}")
        log(f"resuming {out} at epoch {trainer.epoch} of {trainer.spec.train.epochs}")
    else:
        if (out / ckpt.FILENAME).exists():
            raise ckpt.CheckpointError(f"{out} already holds a run; pass --resume to continue it "
                                       "or choose another --out")
        trainer = Trainer(spec)
    atomic.write_json(out / "spec.json", trainer.spec.to_dict())
    log(f"training on {trainer.device} with {spec.train.threads} thread(s): "
        f"{spec.objective.divergence} alpha={spec.objective.alpha} lambda={spec.objective.lambda_}, "
        f"{spec.model.encoder}/{spec.model.decoder} d={spec.model.latent_dim}")

    def on_epoch(epoch, metrics, saved):
        atomic.write_json(out / "history.json", trainer.history)
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in SHOWN if k in metrics)
        log(f"epoch {epoch}/{spec.train.epochs} {shown}")

    result = trainer.run(on_epoch=on_epoch, checkpoint_dir=out)
    atomic.write_bytes(out / "samples.png", sample_grid(trainer.model))
    atomic.write_bytes(out / "reconstructions.png", reconstruction_grid(trainer.model, trainer.val_x))
    log(json.dumps({"status": result.status, "epochs": result.epochs, **{
        k: round(v, 4) for k, v in result.final.items() if k in SHOWN}}))
    sys.stdout.flush()
    return result
