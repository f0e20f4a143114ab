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
    assert time.time() - began < 30
    assert not list(tmp_path.rglob("s3:*")) and not (ROOT / "s3:").exists()
    assert not (tmp_path / "mlflow.db").exists()  # refused before MLflow or Ray were started


@pytest.mark.slow
def test_a_sweep_in_s3_trains_what_a_local_one_does_resumes_there_and_evaluate_reads_it(
        tmp_path, prepared_mnist, s3, monkeypatch):
    from pipeline.evaluation.study import evaluate_study
    from tests.test_evaluate_study import SHRUNK

    extra = {**SHRUNK, "evaluate.classifier.path": "classifier/clf.pt"}
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir(), remote.mkdir()
    run_sweep(tiny_params(local, prepared_mnist, ONE_CELL, extra=extra), local)
    uri = bucket_uri(s3, "study")
    # MLflow's artifacts in the store too (boto3, the endpoint from MLFLOW_S3_ENDPOINT_URL)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://{s3}")
    params = tiny_params(remote, prepared_mnist, ONE_CELL, storage_path=uri,
                         extra={**extra, "tracking.artifact_root": "s3://study/mlflow"})
    run_sweep(params, remote)
    store = storage.resolve(f"s3://study/mlflow?endpoint_override={s3}&scheme=http", remote)
    logged = [f.path for f in store.fs.get_file_info(pafs.FileSelector(store.path, recursive=True))]
    assert any(p.endswith("/checkpoint/checkpoint.pt") for p in logged), logged

    # The same training, wherever its checkpoints went: every validation metric equal.
    a, b = trials(local)[0], trials(remote)[0]
    assert a["status"] == b["status"] == "FINISHED"
    for k in (k for k in a if k.startswith("val_")):
        assert a[k] == pytest.approx(b[k], rel=1e-6), k
    entry = next(iter(best(remote).values()))
    assert entry["checkpoint"].startswith("s3://study/ray/") and entry["checkpoint_sha256"]
    assert not (remote / "ray").exists() and not list(remote.rglob("s3:*"))
    fs_loc = storage.open_uri(entry["checkpoint"], remote)
    assert fs_loc.read_text("checkpoint.digest.json")

    # A second run finds Tune's state in the store: nothing is trained again.
    run_sweep(params, remote)
    audit = storage.resolve(uri, remote)
    found = audit.fs.get_file_info(pafs.FileSelector(audit.path, recursive=True))
    starts = [f for f in found if f.path.endswith(".jsonl")]
    assert len(starts) == 1
    lines = [json.loads(x) for x in audit.fs.open_input_stream(starts[0].path).read().decode().splitlines()]
    assert [e["event"] for e in lines] == ["start", "end"]  # ended once, at its last epoch

    # The evaluation copies the checkpoint here once and measures what a local one measures.
    out = {}
    for base, p in ((local, tiny_params(local, prepared_mnist, ONE_CELL, extra=extra)), (remote, params)):
        p = p.model_copy(update={"evaluate": p.evaluate.model_copy(update={
            "out_dir": str(base / "eval"), "summary": str(base / "eval/summary.json"),
            "plots_dir": str(base / "eval/plots")})})
        evaluate_study(p, base, log=lambda m: None)
        out[base] = pq.read_table(base / "eval" / "metrics.parquet").to_pylist()[0]
    assert out[remote]["status"] == "EVALUATED"
    for k in ("mmd", "logdet_cov", "mi", "active_units"):
        assert out[remote][k] == pytest.approx(out[local][k], rel=1e-6, abs=1e-9), k
    assert list(Path(remote / "eval" / "cache" / "checkpoints").iterdir())
