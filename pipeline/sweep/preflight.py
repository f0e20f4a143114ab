"""Before any trial: every check that needs no cluster, and the sweep's identity.

The grid cells and the search space are checked against the schema, the prepared data fully
verified; the fingerprint names the Ray experiment, so rerunning the same sweep resumes it
(finished trials are not rerun) and a changed sweep starts afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.data.splits import content_digest, load_split
from pipeline.params.grid import Cell, expand
from pipeline.params.load import Params, ParamsError
from pipeline.sweep.search import trial_spec


def fingerprint(params: Params, cells: list[Cell], data_dir: str | Path) -> str:
    """The study's identity: what its cells compute, how they are searched and scheduled, and
    the content of the data they train on. Nothing that says where or how fast (threads,
    CPUs per trial, mirrors, time-outs, paths) enters it, so changing such a setting resumes
    the same Ray experiment, where every finished trial stays finished."""
    sweep = params.sweep
    search = {"search": {k: v.model_dump() for k, v in sorted(sweep.search.items())},
              "trials_per_cell": sweep.trials_per_cell, "startup_trials": sweep.startup_trials,
              "seed": sweep.seed, "metric": sweep.metric, "scheduler": sweep.scheduler,
              "first_trial_at_base": sweep.first_trial_at_base}
    if sweep.scheduler == "asha":
        search["asha"] = sweep.asha.model_dump()
    blob = json.dumps({"cells": sorted(c.id for c in cells), **search, "data": content_digest(data_dir)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def preflight(params: Params, base: Path) -> tuple[list[Cell], str]:
    """All checks that need no cluster: cells, search space, prepared data."""
    cells = expand(params)
    data_dir = str((base / params.data.out_dir).resolve())
    for split in ("train", "validation"):  # fully verified (checksums): a damaged split stops here
        load_split(data_dir, split)
    for key, dim in params.sweep.search.items():
        values = dim.choices if dim.type == "categorical" else [dim.low, dim.high]
        for value in values:
            if dim.type == "int":
                value = int(value)
            try:
                trial_spec(params, cells[0], {key: value}, data_dir)
            except ParamsError as err:
                raise ParamsError(f"sweep.search.{key}: value {value!r} is invalid: {err}") from None
    return cells, data_dir
