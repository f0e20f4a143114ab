"""params.yaml validation: every error names the key path and what is allowed."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline.params.compose import compose, compose_file, defaults_text, schema_defaults, write_params
from pipeline.params.load import ParamsError, load_params, parse_params
from tests.conftest import ROOT


def _raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repository_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.validation_size == 5000
    assert params.data.train_size == 55000


PROFILES = sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml"))


def test_params_yaml_is_the_composed_base_study(tmp_path):
    """params.yaml is what `dvc exp run` (Hydra composition of conf/) writes for no overrides:
    a hand edit of it, or of conf/, that the other does not carry fails here."""
    compose_file(ROOT, [], tmp_path / "composed.yaml")
    assert yaml.safe_load((tmp_path / "composed.yaml").read_text()) == _raw()


def test_conf_defaults_mirror_the_schema():
    """conf/defaults.yaml is generated from the schema (`infovae params --write-defaults`)."""
    assert (ROOT / "conf" / "defaults.yaml").read_text() == defaults_text()
    assert yaml.safe_load(defaults_text()) == schema_defaults()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_composes_to_valid_params(profile):
    params = compose(ROOT, [f"profile={profile}"])
    assert params.profile == profile


def test_a_profile_replaces_values_key_by_key_and_keeps_the_rest():
    smoke = compose(ROOT, ["profile=smoke", "train.lr=0.002"])
    base = load_params(ROOT / "params.yaml")
    assert smoke.train.epochs != base.train.epochs and smoke.train.lr == 0.002
    assert smoke.train.batch_size == base.train.batch_size  # not named by the profile
    assert set(base.sweep.grids) <= set(smoke.sweep.grids)  # mappings merge: every grid stays


def test_an_invalid_base_value_is_an_error_even_when_a_profile_replaces_it(tmp_path):
    import shutil

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    config = tmp_path / "conf" / "config.yaml"
    config.write_text(config.read_text() + "train:\n  epochs: -3\n")
    with pytest.raises(ParamsError, match=r"train\.epochs"):
        write_params(tmp_path, ["profile=smoke"])  # smoke sets train.epochs itself
    assert not (tmp_path / "params.yaml").exists()  # nothing half-written


@pytest.mark.parametrize("mutate, pattern", [
    (lambda r: r["data"].update(binarisation="dynamic"), r"data\.binarisation: unknown key"),
    (lambda r: r.update(dta={}), r"dta: unknown key"),
    (lambda r: r["data"].update(validation_size="5000"), r"data\.validation_size: .*integer.*'5000'"),
    (lambda r: r["data"].update(validation_size=0), r"data\.validation_size: .*greater than or equal to 1"),
    (lambda r: r["data"].update(binarization="stochastic"),
     r"data\.binarization: Input should be 'dynamic', 'threshold' or 'fixed'"),
    (lambda r: r["data"].update(threshold=1.5), r"data\.threshold: .*less than 1"),
    (lambda r: r["data"].update(train_sizes=[500, 70000]), r"train_sizes: 70000 is outside 1\.\.55000"),
    (lambda r: r["data"].update(dataset="fashion_mnist", binarization="fixed"),
     r"'fixed' is the Larochelle binarized MNIST"),
    (lambda r: r.update(profiles={"smoke": {}}), r"profiles: unknown key"),
])
def test_invalid_params_are_rejected_with_the_key_named(mutate, pattern):
    raw = _raw()
    mutate(raw)
    with pytest.raises(ParamsError, match=pattern):
        parse_params(raw)


def test_load_params_file_errors(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    shutil.copy(ROOT / "params.yaml", bad)
    assert load_params(bad).data.dataset == "mnist"


def test_dvc_exp_run_composes_the_profile_that_dvc_exp_show_shows(tmp_path):
    """`dvc exp run -S profile=smoke` composes conf/ (DVC's Hydra composition) into the
    experiment's params.yaml: `dvc exp show` lists the smoke values (train.epochs 2, latent dim
    5), not the base study's. Queued, so nothing is trained here; the slow end-to-end test runs
    the study itself."""
    import json
    import subprocess

    from pipeline.infra.workspace import study_copy, venv_env
    from tests.conftest import MNIST_DIR

    repo = study_copy(ROOT, tmp_path / "repo", MNIST_DIR)
    queued = subprocess.run(["dvc", "exp", "run", "--queue", "-S", "profile=smoke"], cwd=repo, env=venv_env(),
                            capture_output=True, text=True, timeout=300)
    assert queued.returncode == 0, queued.stderr
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, env=venv_env(), capture_output=True,
                           text=True, timeout=300, check=True)
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "params" in node and isinstance(node["params"], dict) and "params.yaml" in node["params"]:
                found.append(node["params"]["params.yaml"]["data"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(shown.stdout))
    base = load_params(ROOT / "params.yaml")
    seen = {(p.get("profile"), p["train"]["epochs"], p["model"]["latent_dim"]) for p in found}
    assert ("smoke", 2, 5) in seen and (base.profile, base.train.epochs, base.model.latent_dim) in seen
