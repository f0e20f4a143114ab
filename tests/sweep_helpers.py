"""Tiny, real sweeps for the tests: the repository's params.yaml shrunk (lightning-hydra style)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.params.load import load_params
from tests.conftest import ROOT

TINY_MODEL = {"model.hidden": [32], "model.latent_dim": 2, "model.pixelcnn_layers": 2,
              "model.pixelcnn_maps": 4, "model.pixelcnn_cond_maps": 2,
              "objective.adversarial.hidden": [16]}
TINY_TRAIN = {"train.epochs": 2, "train.train_size": 300, "train.validation_size": 100,
              "train.diagnostics_size": 100, "train.batch_size": 50, "train.checkpoint_every": 1}


def tiny_params(tmp: Path, data_dir: Path, grids: dict, **sweep: Any):
    overrides = {
        **TINY_MODEL, **TINY_TRAIN,
        "data.out_dir": str(data_dir),
        "sweep.grids": grids,
        "sweep.trials_per_cell": sweep.pop("trials_per_cell", 1),
        "sweep.search": sweep.pop("search", {}),
        "sweep.storage_path": str(tmp / "ray"),
        "sweep.out_dir": str(tmp / "sweep"),
        "cluster.num_cpus": sweep.pop("num_cpus", 2),
        "sweep.cpus_per_trial": sweep.pop("cpus_per_trial", 1),
        "sweep.gpus_per_trial": sweep.pop("gpus_per_trial", 0),
        "sweep.max_failures": 0,
        "tracking.uri": sweep.pop("tracking_uri", f"sqlite:///{tmp / 'mlflow.db'}"),
        "tracking.artifact_root": str(tmp / "artifacts"),
    }
    overrides.update(sweep.pop("extra", {}))
    for key in ("address", "num_gpus"):
        if key in sweep:
            overrides[f"cluster.{key}"] = sweep.pop(key)
    overrides.update({f"sweep.{k}": v for k, v in sweep.items()})
    return load_params(ROOT / "params.yaml", overrides)


def trials(tmp: Path):
    return pq.read_table(tmp / "sweep" / "trials.parquet").to_pylist()


def best(tmp: Path) -> dict:
    return json.loads((tmp / "sweep" / "best.json").read_text())


def starts(tmp: Path) -> dict[str, list[dict]]:
    """trial id -> its audit lines (pipeline.sweep.trainable.record): one per start and end."""
    out = {}
    for f in (tmp / "ray").glob("*/starts/*.jsonl"):
        out[f.stem] = [json.loads(line) for line in f.read_text().splitlines()]
    return out


def intervals(tmp: Path) -> list[tuple[float, float]]:
    """(first start, last result) wall times of every trial, from Ray's trial directories."""
    return [(lines[0]["time"], lines[-1]["time"]) for lines in starts(tmp).values()]


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def write_params(path: Path, params) -> Path:
    """Write validated params as a params.yaml a stage script can read."""
    import yaml

    raw = params.model_dump(by_alias=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def redone_finished_trials(audit: dict[str, list[dict]], finished_before: set[str], epochs: int) -> list[str]:
    """Trials that had finished before a kill yet were trained again after it. Only one that
    finished after Tune's last durable snapshot (synced in the background) may be: it resumes
    from that snapshot's checkpoint, never from scratch (asserted here)."""
    redone = []
    for trial, lines in audit.items():
        restarts = [x for x in lines if x["event"] == "start"][1:]
        if trial in finished_before and any(x["epoch"] < epochs for x in restarts):
            redone.append(trial)
            assert all(x["epoch"] >= 1 for x in restarts), lines
    return redone
