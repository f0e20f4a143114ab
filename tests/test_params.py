"""params.yaml validation: every error names the key path and what is allowed."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline.params.load import ParamsError, load_params, parse_params
from tests.conftest import ROOT


def _raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repository_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.validation_size == 5000
    assert params.data.train_size == 55000


@pytest.mark.parametrize("profile", sorted(_raw().get("profiles") or {}))
def test_every_profile_is_valid(profile):
    raw = _raw()
    raw["profile"] = profile
    parse_params(raw)


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
    (lambda r: r.update(profile="nosuch"), r"unknown profile 'nosuch'"),
    (lambda r: r.update(profile="bad", profiles={"bad": {"data": {"split_seed": -1}}}),
     r"with profile 'bad':\n  data\.split_seed"),
])
def test_invalid_params_are_rejected_with_the_key_named(mutate, pattern):
    raw = _raw()
    mutate(raw)
    with pytest.raises(ParamsError, match=pattern):
        parse_params(raw)


def test_profile_overrides_are_deep_merged():
    raw = _raw()
    raw["profile"] = "t"
    raw["profiles"] = {"t": {"data": {"train_sizes": [100]}}}
    params = parse_params(raw)
    assert params.data.train_sizes == [100] and params.data.validation_size == 5000


def test_load_params_file_errors(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    shutil.copy(ROOT / "params.yaml", bad)
    assert load_params(bad).data.dataset == "mnist"
