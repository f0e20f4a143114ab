"""The best checkpoint of each cell as an output DVC tracks: `<sweep.out_dir>/models/<cell id>/`
holds the cell's checkpoint.pt, the digest written with it, and card.json (the cell, its label,
the trial and MLflow run it came from, where Tune keeps the original).

Why a copy: Tune's storage (sweep.storage_path) is not a DVC output (it holds every trial's every
checkpoint, and may be an object store DVC does not see), so without this `dvc push` would carry
the tables of a study but none of its trained models. The sweep's out_dir is a cached DVC
output, so `dvc push` / `dvc pull` move these files with the rest of the study's results; the
MLflow side of the same models is pipeline.evaluation.models.

Each copy is checked against the digest its trial wrote (sha256 of checkpoint.pt): a damaged or
missing original is left out and said so on stderr, never copied as if it were the model (the
evaluate stage names it, with the command that retrains the cell). The folder is replaced
whole (a temporary sibling, then a rename), so a summary interrupted half-way leaves the
previous one.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.infra import atomic
from pipeline.infra.storage import is_remote, open_uri
from pipeline.sweep.space import DIGEST, file_digest
from pipeline.train.checkpoint import FILENAME

MODELS = "models"
CARD = "card.json"


def _copy_from(where: str, base: Path, dest: Path) -> None:
    """checkpoint.pt and its digest of the checkpoint directory `where` (a path relative to the
    repository, or an object store URI as best.json writes it) into `dest`."""
    dest.mkdir(parents=True)
    if not is_remote(where):
        src = Path(where) if Path(where).is_absolute() else base / where
        for name in (FILENAME, DIGEST):
            shutil.copyfile(src / name, dest / name)  # inside replace_dir's temporary folder
        return
    loc = open_uri(where, base)
    for name in (FILENAME, DIGEST):
        with loc.fs.open_input_stream(f"{loc.path}/{name}") as f:
            (dest / name).write_bytes(f.read())


def export_best(best: dict[str, dict[str, Any]], base: Path, out_dir: Path) -> dict[str, int]:
    """Copy each cell's best checkpoint into out_dir/models; returns {"models": n, "skipped": m}."""
    copied = skipped = 0
    with atomic.replace_dir(out_dir / MODELS) as tmp:
        for cell_id, entry in sorted(best.items()):
            where = entry.get("checkpoint")
            if not where:
                continue
            dest = tmp / cell_id
            try:
                _copy_from(where, base, dest)
                got = file_digest(dest / FILENAME)["sha256"]
            except OSError as err:
                got, why = None, f"cannot be read ({type(err).__name__}: {err})"
            else:
                why = "does not match the digest written with it"
            want = entry.get("checkpoint_sha256")
            if got is None or (want and got != want):
                shutil.rmtree(dest, ignore_errors=True)
                print(f"sweep: the best checkpoint of {cell_id} ({where}) {why}: not in {MODELS}/",
                      file=sys.stderr)
                skipped += 1
                continue
            card = {"cell": cell_id, "label": entry.get("label"), "method": entry.get("method"),
                    "trial_id": entry.get("trial_id"), "mlflow_run_id": entry.get("mlflow_run_id"),
                    "source": where, "sha256": got}
            (dest / CARD).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
            copied += 1
    return {"models": copied, "skipped": skipped}

