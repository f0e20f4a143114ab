"""The cluster recipes of docs/cluster.md (Ray's launcher YAML, a KubeRay RayJob, `ray job
submit`) say what this code accepts: every params override they pass validates against the
schema, and they start Ray the way a joining node must (token authentication, a head that
trains nothing, the project's `cluster` extra installed)."""

from __future__ import annotations

import re

import pytest
import yaml

from pipeline.params.load import load_params
from tests.conftest import ROOT

DOCS = ROOT / "docs"
OVERRIDE = re.compile(r"-S\s+([a-z_]+(?:\.[a-z_]+)+)=(\S+?)[\"\\]?(?=\s|$)")


def overrides(text: str) -> dict[str, object]:
    return {k: yaml.safe_load(v) for k, v in OVERRIDE.findall(text)}


def test_every_override_of_the_recipes_is_a_valid_params_key():
    texts = {p.name: p.read_text() for p in [DOCS / "cluster.md", *sorted((DOCS / "cluster").glob("*.yaml"))]}
    found = {name: overrides(t) for name, t in texts.items()}
    assert found["cluster.md"] and found["kuberay-rayjob.yaml"]
    for given in found.values():
        for key, value in given.items():
            load_params(ROOT / "params.yaml", {key: value})  # raises, naming the key, if wrong
    assert str(found["kuberay-rayjob.yaml"]["sweep.storage_path"]).startswith("s3://")
    assert str(found["kuberay-rayjob.yaml"]["tracking.uri"]).startswith("http://")


def test_a_recipe_storage_path_with_credentials_would_be_refused():
    with pytest.raises(Exception, match="carries credentials"):
        load_params(ROOT / "params.yaml", {"sweep.storage_path": "s3://b/p?access_key=A&secret_key=B"})


def test_the_launcher_starts_token_authenticated_nodes_with_the_cluster_extra():
    cfg = yaml.safe_load((DOCS / "cluster" / "aws.yaml").read_text())
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("'.[cluster]'" in c for c in cfg["setup_commands"])
    for cmd in cfg["head_start_ray_commands"][1:2] + cfg["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token" in cmd and "ray start" in cmd
    head = cfg["head_start_ray_commands"]
    assert any("mlflow server" in c and "--artifacts-destination s3://" in c for c in head)
    job = yaml.safe_load((DOCS / "cluster" / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and "dvc repro" in job["spec"]["entrypoint"]
    assert job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    extra = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'cluster = \["ray\[default,client\]==[\d.]+", "boto3', extra)
