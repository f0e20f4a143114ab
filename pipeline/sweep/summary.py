"""After the fit: the sweep's tables (pipeline.infra.layout): one row per trial
(trials.parquet) and the best usable trial of each cell (best.json), which evaluate reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.infra import atomic
from pipeline.infra.layout import BEST, SWEEP, TRIALS
from pipeline.infra.storage import Location, uri_of
from pipeline.params.grid import Cell
from pipeline.sweep.logger import is_metric
from pipeline.sweep.outcome import INTERRUPTED, Outcome
from pipeline.sweep.space import DIGEST, checkpoint_digest, parse_digest
from pipeline.train.checkpoint import RunSpec
from pipeline.train.outcome import diverged, likelihood_of


def _relative(path: str | None, base: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return path


def _checkpoint(t, base: Path, store: Location | None) -> dict[str, Any]:
    """Where a trial's checkpoint is, as best.json says it (a path relative to the repository,
    or the URI of its directory in an object store), and its digest as written with it."""
    if t.checkpoint is None:
        return {"checkpoint": None, **checkpoint_digest(None)}
    if store is None or not store.remote:
        return {"checkpoint": _relative(t.checkpoint.path, base), **checkpoint_digest(t.checkpoint.path)}
    where = Location(store.fs, t.checkpoint.path, uri_of(store, t.checkpoint.path))
    return {"checkpoint": where.uri, **parse_digest(where.read_text(DIGEST))}


def summarise(trials: list, runs: dict[str, str], cells: list[Cell], outcomes: dict[str, Outcome],
              metric: str, base: Path,
              store: Location | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    for t in trials:
        cfg, last = t.config, dict(t.last_result or {})
        got = outcomes[t.trial_id]
        status = got.status
        spec = RunSpec.from_dict(cfg["spec"])
        row = {
            "trial_id": t.trial_id, "cell": cfg["cell"], "cell_label": cfg["cell_label"],
            "grids": ",".join(cfg["grids"]), "status": status,
            "error": got.reason if status in ("FAILED", INTERRUPTED) else None,
            "failure": got.kind, "epochs_budget": spec.train.epochs,
            "epochs_done": int(last.get("epoch", 0)), "mlflow_run_id": runs.get(t.trial_id),
            **_checkpoint(t, base, store),
            **spec.columns(),
            "suggested": json.dumps(cfg.get("suggested", {}), sort_keys=True),
            "node_id": last.get("node_id"), "device": last.get("device"), "gpu_ids": last.get("gpu_ids"),
            "cuda_visible_devices": last.get("cuda_visible_devices"),
            "torch_threads": last.get("torch_threads"),
            "spec": json.dumps({k: v for k, v in cfg["spec"].items() if k != "data_dir"}, sort_keys=True),
        }
        row.update({k: float(v) for k, v in last.items() if is_metric(k)})
        rows.append(row)
    best: dict[str, Any] = {}
    for cell in cells:
        mine = [r for r in rows if r["cell"] == cell.id]
        usable = [r for r in mine if r["status"] not in ("FAILED", INTERRUPTED) and r.get(metric) is not None]
        finished = [r for r in usable if r["status"] == "FINISHED"] or usable
        # A trial that ran away (pipeline.train.outcome) can have the lowest loss of its cell
        # (an adversary beaten: a negative loss); choose among the others while there are any.
        finished = [r for r in finished
                    if not diverged(r, likelihood=likelihood_of(r.get("spec")))] or finished
        entry = {"label": cell.label, "grids": list(cell.grids), "overrides": cell.overrides,
                 "method": cell.method, "decoder": cell.decoder, "trials": len(mine),
                 "failed": sum(r["status"] == "FAILED" for r in mine)}
        if finished:
            top = min(finished, key=lambda r: r[metric])
            entry.update(trial_id=top["trial_id"], status=top["status"], metric=metric,
                         value=top[metric], checkpoint=top["checkpoint"], mlflow_run_id=top["mlflow_run_id"],
                         checkpoint_bytes=top["checkpoint_bytes"], checkpoint_sha256=top["checkpoint_sha256"])
        else:
            entry.update(trial_id=None, status="FAILED" if mine else INTERRUPTED,
                         errors=sorted({r["error"] for r in mine if r["error"]}) or ["no trial ran"])
        best[cell.id] = entry
    return rows, best


def write_outputs(out_dir: Path, rows: list[dict], best: dict, sweep: dict) -> None:
    atomic.write_parquet(out_dir / TRIALS, rows)
    atomic.write_json(out_dir / BEST, best)
    atomic.write_json(out_dir / SWEEP, sweep)
