"""Each stage reads only what it declares: dvc.yaml's params equal pipeline.params.stages, and a
stage's view refuses to read anything else."""

from __future__ import annotations

import pytest
import yaml

from pipeline.params.load import ParamsError, load_params
from pipeline.params.stages import STAGE_PARAMS, stage_params
from tests.conftest import ROOT


def test_dvc_yaml_declares_exactly_what_each_stage_reads():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGE_PARAMS)
    for name, stage in stages.items():
        assert sorted(stage["params"]) == sorted(STAGE_PARAMS[name]), name


def test_a_stage_view_refuses_undeclared_reads():
    params = load_params(ROOT / "params.yaml")
    view = stage_params(params, "evaluate")
    assert view.evaluate == params.evaluate and view.data.out_dir == params.data.out_dir
    with pytest.raises(ParamsError, match=r"evaluate stage reads data\.binarization"):
        _ = view.data.binarization
    with pytest.raises(ParamsError, match=r"evaluate stage reads the model section"):
        _ = view.model
    report = stage_params(params, "report")
    with pytest.raises(ParamsError, match=r"report stage reads the cluster section"):
        _ = report.cluster


def test_a_stage_view_overrides_only_its_own_sections():
    view = stage_params(load_params(ROOT / "params.yaml"), "sweep")
    assert view.with_overrides({"train.epochs": 3}).train.epochs == 3
    with pytest.raises(ParamsError, match="report.dpi is not a key"):
        view.with_overrides({"report.dpi": 10})
