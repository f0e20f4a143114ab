"""Bad and partial inputs caught before compute, naming the key or the cell (issue 13).

Bad params through the real `dvc repro` (prepare runs first: it must refuse them), duplicate
YAML keys, NaN and infinity, a profile's base values; a report over partial inputs; a damaged
checkpoint named with the command that retrains just its cell; runs left RUNNING by a killed
process closed by the next stage on the store.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.infra import tracking
from pipeline.params.load import ParamsError, load_params
from pipeline.params.study import TrackingParams
from pipeline.report.study import build_report
from tests.conftest import ROOT
from tests.test_report import _params, write_study

pytestmark = pytest.mark.faults

BASE_LINES = {  # text edits of the resolved params.yaml -> the message that must name the key
    "grid axis typo": ("    alpha_lambda:\n", "    alpha_lambda:\n      train.epochz: [3]\n",
                       "sweep.grids.alpha_lambda.train.epochz: unknown params key"),
    "search key typo": ("    train.lr:\n", "    train.lrr:\n", "sweep.search.train.lrr: unknown params key"),
    "duplicate key": ("  batch_size: 100\n", "  batch_size: 100\n  batch_size: 50\n",
                      "duplicate key 'batch_size'"),
    "inf penalty": ("    gradient_penalty: 0.0\n", "    gradient_penalty: .inf\n",
                    "objective.adversarial.gradient_penalty: Input should be a finite number"),
    "nan bandwidth": ("    bandwidth: authors_v1", "    bandwidth: .nan",
                      "objective.mmd.bandwidth.float: Input should be a finite number"),
}


@pytest.mark.parametrize("name", list(BASE_LINES))
def test_bad_params_are_refused_by_the_first_stage_naming_the_key(tmp_path, name):
    old, new, message = BASE_LINES[name]
    text = (ROOT / "params.yaml").read_text()
    assert old in text
    (tmp_path / "params.yaml").write_text(text.replace(old, new, 1))
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py"), "--params", "params.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()  # nothing computed


def test_a_nan_base_value_under_a_profile_is_refused_when_composing(tmp_path):
    """The smoke profile sets train.lr itself; a NaN in the base study is still an error, and
    `infovae params -S profile=smoke` writes nothing."""
    import shutil

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "conf" / "config.yaml").write_text((ROOT / "conf" / "config.yaml").read_text()
                                                   + "train:\n  lr: .nan\n")
    smoke = tmp_path / "conf" / "profile" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("train:\n", "train:\n  lr: 0.001\n", 1))
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "params", "--root", str(tmp_path),
                           "-S", "profile=smoke"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "conf/ (the base study)" in done.stderr and "train.lr: Input should be a finite" in done.stderr
    assert not (tmp_path / "params.yaml").exists()


def test_grid_cells_are_validated_by_prepare_too(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["sweep"]["grids"] = {"bad": {"divergence": ["mmd"], "alpha": [3.0], "lambda": [10.0]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "sweep.grids.bad: cell" in done.stderr, done.stderr[-2000:]


def test_nan_and_inf_in_any_float_param_and_good_params_still_load():
    for key, value in (("train.lr", float("nan")), ("objective.alpha", float("-inf")),
                       ("data.threshold", float("nan")), ("sweep.auto_gpu_share", float("inf"))):
        with pytest.raises(ParamsError, match=f"{key}.*finite number"):
            load_params(ROOT / "params.yaml", {key: value})
    assert load_params(ROOT / "params.yaml").train.lr == 0.001


# ----------------------------------------------------------------- partial report


def test_report_refuses_a_missing_cell_unless_allowed_and_then_says_partial(tmp_path):
    client = tracking.client(TrackingParams(), tmp_path)
    exp = tracking.experiment_id(client, TrackingParams(), tmp_path)
    parent = client.create_run(exp, run_name="sweep").info.run_id
    write_study(tmp_path, ("table1", "latent_dim"), parent_run_id=parent)
    path = tmp_path / "results/eval/metrics.parquet"
    metrics = pd.read_parquet(path)
    gone = metrics[metrics["status"] == "EVALUATED"].iloc[0]
    metrics[metrics["cell"] != gone["cell"]].to_parquet(path)
    with pytest.raises(PipelineError, match=f"1 of {len(metrics)} cells have no evaluation row: "
                                            f"{gone['cell']} \\({gone['cell_label']}\\)"):
        build_report(_params(), tmp_path, log=lambda _m: None)
    assert not (tmp_path / "report").exists()
    params = _params()
    params.report = params.report.model_copy(update={"allow_partial": True})
    result = build_report(params, tmp_path, log=lambda _m: None)
    html = (tmp_path / "report/index.html").read_text()
    assert "(PARTIAL: 1 of" in html and gone["cell"] in html
    assert result["mlflow_run_id"] is None
    assert client.list_artifacts(parent) == []  # not uploaded as the study's report


def test_report_refuses_an_incomplete_sweep(tmp_path):
    write_study(tmp_path, ("table1",))
    sweep = tmp_path / "results/sweep/sweep.json"
    sweep.write_text(json.dumps({**json.loads(sweep.read_text()), "complete": False,
                                 "incomplete": "interrupted by SIGINT"}))
    with pytest.raises(PipelineError, match="the sweep is incomplete \\(interrupted by SIGINT\\)"):
        build_report(_params(), tmp_path, log=lambda _m: None)


# ----------------------------------------------------------------- runs left RUNNING

OWNER = """
import os, sys, time
from pipeline.infra import tracking
from pipeline.params.study import TrackingParams
cfg = TrackingParams(uri=sys.argv[1], experiment=sys.argv[2])
c = tracking.client(cfg)
run = c.create_run(tracking.experiment_id(c, cfg), tags={tracking.OWNER_TAG: tracking.owner()})
print(run.info.run_id, flush=True)
os.kill(os.getpid(), 9) if sys.argv[3] == "die" else time.sleep(120)
"""


def test_runs_left_running_by_a_killed_process_are_closed_by_the_next_stage(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-c", OWNER, uri, "another-sweep"]
    alive = subprocess.Popen([*cmd, "live"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        live = alive.stdout.readline().split()[0]
        dead = subprocess.run([*cmd, "die"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        orphan = dead.stdout.split()[0]
        client = tracking.client(TrackingParams(uri=uri, experiment="infovae"))  # any experiment
        assert "closed 1 MLflow run(s) left RUNNING" in capsys.readouterr().out
        run = client.get_run(orphan)
        assert run.info.status == "KILLED" and "infovae.orphaned" in run.data.tags
        assert client.get_run(live).info.status == "RUNNING"  # a live owner's run is left alone
    finally:
        alive.kill()
