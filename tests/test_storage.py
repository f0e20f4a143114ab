"""The sweep's storage in an object store (issue 23): `sweep.storage_path: s3://...` against a
real S3-compatible server (moto's, started on 127.0.0.1 by these tests and stopped by them),
the errors a user gets for a bad or unreachable store before any training, and the same study
through S3 as through a local directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.infra import storage
from pipeline.infra.cluster import shutdown as stop_ray
from pipeline.params.load import load_params
from pipeline.sweep.run import run_sweep
from tests.conftest import CREDENTIALS, ROOT, bucket_uri, free_port
from tests.sweep_helpers import best, tiny_params, trials

ONE_CELL = {"g": {"method": [{"divergence": "mmd", "alpha": 1.0, "lambda": 100.0}]}}


@pytest.fixture(autouse=True)
def _no_ray_left():
    yield
    import ray

    if ray.is_initialized():
        stop_ray()


@pytest.mark.parametrize("value, says", [
    ("ftp://host/ray", "unsupported scheme 'ftp'"),
    ("s3:///ray", "names no bucket"),
    ("s3://b/ray?secret_key=abc", "carries credentials (secret_key)"),
])
def test_a_bad_storage_uri_is_refused_by_the_params_check_naming_the_key(value, says):
    with pytest.raises(Exception, match=r"sweep\.storage_path") as err:
        load_params(ROOT / "params.yaml", {"sweep.storage_path": value})
    assert says in str(err.value)


def test_a_location_in_s3_writes_reads_and_answers_the_probe(s3):
    loc = storage.resolve(bucket_uri(s3, "probe-bucket", "a/b"), ".")
    assert loc.remote and loc.path == "probe-bucket/a/b"
    assert storage.probe(loc) < 10
    assert loc.read_text("x.jsonl") is None
    loc.write_text("x.jsonl", "one\n")
    loc.write_text("x.jsonl", loc.read_text("x.jsonl") + "two\n")
    assert loc.read_text("x.jsonl") == "one\ntwo\n"
    child = loc.child("exp", "starts")
    assert child.uri.startswith("s3://probe-bucket/a/b/exp/starts?endpoint_override=")
    assert storage.open_uri(child.uri, ".").path == "probe-bucket/a/b/exp/starts"


def test_an_unreachable_store_fails_in_seconds_naming_it_and_writes_no_local_directory(
        tmp_path, prepared_mnist, monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    uri = f"s3://nowhere/ray?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    params = tiny_params(tmp_path, prepared_mnist, ONE_CELL, storage_path=uri)
    began = time.time()
    with pytest.raises(storage.StorageError, match=r"sweep\.storage_path: the store s3://nowhere/ray"):
        run_sweep(params, tmp_path)
    assert time.time() - began < 10  # a refused endpoint: one TCP connect, no S3 retries
    assert not list(tmp_path.rglob("s3:*")) and not (ROOT / "s3:").exists()
    assert not (tmp_path / "mlflow.db").exists()  # refused before MLflow or Ray were started


@pytest.mark.slow
def test_a_sweep_in_s3_resumes_there_keeps_mlflow_artifacts_there_and_evaluate_reads_it(
        tmp_path, prepared_mnist, s3, monkeypatch):
    """(That a sweep in S3 trains and measures exactly what a local one does is
    tests/test_cluster.py's, across two nodes sharing no path.)"""
    from pipeline.evaluation.study import evaluate_study
    from tests.test_evaluate_study import SHRUNK

    uri = bucket_uri(s3, "study")
    # MLflow's artifacts in the store too (boto3, the endpoint from MLFLOW_S3_ENDPOINT_URL)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://{s3}")
    params = tiny_params(tmp_path, prepared_mnist, ONE_CELL, storage_path=uri,
                         extra={**SHRUNK, "evaluate.classifier.path": "classifier/clf.pt",
                                "tracking.artifact_root": "s3://study/mlflow"})
    run_sweep(params, tmp_path)
    store = storage.resolve(f"s3://study/mlflow?endpoint_override={s3}&scheme=http", tmp_path)
    logged = [f.path for f in store.fs.get_file_info(pafs.FileSelector(store.path, recursive=True))]
    assert any(p.endswith("/checkpoint/checkpoint.pt") for p in logged), logged
    assert trials(tmp_path)[0]["status"] == "FINISHED"
    entry = next(iter(best(tmp_path).values()))
    assert entry["checkpoint"].startswith("s3://study/ray/") and entry["checkpoint_sha256"]
    assert not (tmp_path / "ray").exists() and not list(tmp_path.rglob("s3:*"))
    assert storage.open_uri(entry["checkpoint"], tmp_path).read_text("checkpoint.digest.json")

    # A second run finds Tune's state in the store: nothing is trained again.
    run_sweep(params, tmp_path)
    audit = storage.resolve(uri, tmp_path)
    found = audit.fs.get_file_info(pafs.FileSelector(audit.path, recursive=True))
    starts = [f for f in found if f.path.endswith(".jsonl")]
    assert len(starts) == 1
    lines = [json.loads(x) for x in audit.fs.open_input_stream(starts[0].path).read().decode().splitlines()]
    assert [e["event"] for e in lines] == ["start", "end"]  # ended once, at its last epoch

    # The evaluation copies the checkpoint here once, verified, and measures it.
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={
        "out_dir": str(tmp_path / "eval"), "summary": str(tmp_path / "eval/summary.json"),
        "plots_dir": str(tmp_path / "eval/plots")})})
    said = []
    evaluate_study(params, tmp_path, log=said.append)
    row = pq.read_table(tmp_path / "eval" / "metrics.parquet").to_pylist()[0]
    assert row["status"] == "EVALUATED" and row["mmd"] is not None
    assert sum("checkpoint copied from s3://study/ray/" in m for m in said) == 1
    copy = tmp_path / "eval" / "cache" / "checkpoints" / row["cell"] / "checkpoint.pt"
    assert copy.is_file() and not list(copy.parent.parent.glob("*.part"))
    said.clear()
    evaluate_study(params, tmp_path, log=said.append)  # the copy and the row are reused
    assert not any("copied" in m for m in said) and any("cached" in m for m in said)


def test_shipped_data_is_written_once_per_node_and_a_damaged_copy_is_replaced(prepared_mnist, tmp_path):
    """pipeline.data.shipping: what a Ray node trains from when it cannot see the repository."""
    from pipeline.data.shipping import pack, unpack
    from pipeline.data.splits import load_split

    packed = pack(prepared_mnist)
    assert set(packed["files"]) == {"train.parquet", "validation.parquet"}
    here = Path(unpack(packed, tmp_path))
    assert here.parent == tmp_path / "infovae-data" and unpack(packed, tmp_path) == str(here)
    first = load_split(here, "validation", limit=5).images
    assert torch.equal(first, load_split(prepared_mnist, "validation", limit=5).images)
    stamp = (here / "train.parquet").stat().st_mtime_ns
    assert unpack(packed, tmp_path) == str(here) and (here / "train.parquet").stat().st_mtime_ns == stamp
    damaged = bytearray((here / "train.parquet").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (here / "train.parquet").write_bytes(bytes(damaged))
    assert unpack(packed, tmp_path) == str(here)  # replaced whole, not trained on
    assert (here / "train.parquet").read_bytes() == (prepared_mnist / "train.parquet").read_bytes()
    assert not [p for p in (tmp_path / "infovae-data").iterdir() if p.name.startswith(".")]
