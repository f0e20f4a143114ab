"""`infovae retrain --cell <id>`: train one cell's best trial again, in place.

For a finished trial whose checkpoint was damaged after the sweep (evaluation names it: its
size and sha256 no longer match those recorded when it was written). Tune's state counts the
trial finished, so neither `dvc repro` nor `dvc repro -f -s sweep` would train it again. This
trains the trial's own spec (trials.parquet: the cell's overrides and Optuna's suggestion, its
seed) from the start, replaces the checkpoint directory atomically, and records the new digest
in best.json; `dvc repro` then re-summarises the sweep (its outputs changed) and evaluates the
retrained cell only (the evaluation cache is keyed by the checkpoint's digest).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.infra import atomic, storage
from pipeline.infra.layout import BEST, TRIALS
from pipeline.sweep.space import file_digest


class RetrainError(PipelineError):
    pass


def retrain_cell(params, cell: str, base_dir: str | Path = ".", log=print) -> dict[str, Any]:
    from pipeline.sweep.trainable import write_checkpoint_dir
    from pipeline.train import checkpoint as ckpt
    from pipeline.train.trainer import Trainer

    base = Path(base_dir).resolve()
    out = base / params.sweep.out_dir
    if not (out / BEST).is_file():
        raise RetrainError(f"missing {out / BEST}: run the sweep first (dvc repro sweep)")
    best = json.loads((out / BEST).read_text())
    if cell not in best:
        raise RetrainError(f"--cell {cell}: not a cell of this sweep (cells: {', '.join(sorted(best))})")
    entry = best[cell]
    if not entry.get("checkpoint") or not entry.get("trial_id"):
        raise RetrainError(f"cell {cell} ({entry.get('label')}) has no finished trial to retrain")
    rows = [r for r in pq.read_table(out / TRIALS).to_pylist() if r["trial_id"] == entry["trial_id"]]
    if not rows:
        raise RetrainError(f"trial {entry['trial_id']} of cell {cell} is not in {TRIALS}: rerun the sweep")
    data_dir = str(base / params.data.out_dir)
    spec = ckpt.RunSpec.from_dict({**json.loads(rows[0]["spec"]), "data_dir": data_dir})
    log(f"retraining cell {cell} ({entry.get('label')}), trial {entry['trial_id']}: "
        f"{spec.train.epochs} epochs into {entry['checkpoint']}")
    trainer = Trainer(spec)
    trainer.run()
    if storage.is_remote(entry["checkpoint"]):  # each file replaced whole, by a PUT
        with tempfile.TemporaryDirectory(prefix="infovae-retrain-") as tmp:
            write_checkpoint_dir(trainer, tmp, final=True)
            storage.upload(Path(tmp), storage.open_uri(entry["checkpoint"], base))
            digest = file_digest(Path(tmp) / ckpt.FILENAME)
    else:
        target = base / entry["checkpoint"]
        with atomic.replace_dir(target) as tmp:
            if target.is_dir():  # Tune's own files beside ours
                for f in target.iterdir():
                    if f.is_file():
                        shutil.copy2(f, tmp / f.name)
            write_checkpoint_dir(trainer, tmp, final=True)
        digest = file_digest(target / ckpt.FILENAME)
    best[cell] = {**entry, "checkpoint_bytes": digest["bytes"], "checkpoint_sha256": digest["sha256"]}
    atomic.write_json(out / BEST, best)
    log(f"cell {cell} retrained (sha256 {digest['sha256'][:12]}); run `dvc repro` to evaluate it and rebuild "
        "the report")
    return {"cell": cell, "trial_id": entry["trial_id"], **digest}
