"""The best checkpoints as a DVC-tracked output (pipeline.sweep.models): copied byte for byte,
checked against the digest their trial wrote, a damaged one left out; local and object store."""

from __future__ import annotations

import json

import pytest

from pipeline.infra import storage
from pipeline.sweep.models import CARD, MODELS, export_best
from pipeline.sweep.space import DIGEST, file_digest, write_digest
from pipeline.train.checkpoint import FILENAME
from tests.conftest import bucket_uri


def _checkpoint(directory, payload: bytes) -> dict:
    directory.mkdir(parents=True)
    (directory / FILENAME).write_bytes(payload)
    return write_digest(directory, FILENAME)


def test_best_checkpoints_are_copied_and_a_damaged_one_is_left_out(tmp_path, capsys):
    base = tmp_path / "repo"
    good = _checkpoint(base / "results/ray/t1/checkpoint_000001", b"model one")
    bad = _checkpoint(base / "results/ray/t2/checkpoint_000001", b"model two")
    (base / "results/ray/t2/checkpoint_000001" / FILENAME).write_bytes(b"model two, damaged")
    best = {"cell-a": {"checkpoint": "results/ray/t1/checkpoint_000001", "checkpoint_sha256": good["sha256"],
                       "label": "a", "method": "MMD-VAE", "trial_id": "t1", "mlflow_run_id": "r1"},
            "cell-b": {"checkpoint": "results/ray/t2/checkpoint_000001", "checkpoint_sha256": bad["sha256"]},
            "cell-c": {"checkpoint": None, "status": "FAILED"}}
    out = base / "results/sweep"
    (out / MODELS / "stale").mkdir(parents=True)  # a previous summary's folder is replaced whole

    assert export_best(best, base, out) == {"models": 1, "skipped": 1}
    assert sorted(p.name for p in (out / MODELS).iterdir()) == ["cell-a"]
    copy = out / MODELS / "cell-a"
    assert (copy / FILENAME).read_bytes() == b"model one"
    assert file_digest(copy / FILENAME)["sha256"] == good["sha256"]
    assert json.loads((copy / DIGEST).read_text())["sha256"] == good["sha256"]
    card = json.loads((copy / CARD).read_text())
    assert card == {"cell": "cell-a", "label": "a", "method": "MMD-VAE", "trial_id": "t1",
                    "mlflow_run_id": "r1", "source": "results/ray/t1/checkpoint_000001",
                    "sha256": good["sha256"]}
    assert "cell-b" in capsys.readouterr().err  # said, not silently dropped


@pytest.mark.slow
def test_best_checkpoints_in_an_object_store_are_copied_out(tmp_path, s3):
    local = tmp_path / "ckpt"
    digest = _checkpoint(local, b"remote model")
    uri = bucket_uri(s3, "models-export", "ray/t1/checkpoint_000001")
    loc = storage.resolve(uri, tmp_path)
    loc.fs.create_dir(loc.path)
    storage.upload(local, loc)
    best = {"cell-r": {"checkpoint": loc.uri, "checkpoint_sha256": digest["sha256"]}}
    assert export_best(best, tmp_path, tmp_path / "sweep") == {"models": 1, "skipped": 0}
    assert (tmp_path / "sweep" / MODELS / "cell-r" / FILENAME).read_bytes() == b"remote model"
