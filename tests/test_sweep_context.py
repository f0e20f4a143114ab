"""What a researcher sees of a sweep: the plan before compute, Ray's table while it runs, and
MLflow runs with their context (dataset inputs, system metrics, source, description, the
sweep's own params) and a checkpoint that loads back from a run id. Real Ray and MLflow."""

from __future__ import annotations

import json
import re

import pytest
import ray
import torch

from pipeline.data.splits import read_metadata
from pipeline.infra.cluster import shutdown as stop_ray
from pipeline.infra.timing import schedule
from pipeline.sweep.plan import asha_epochs
from pipeline.sweep.run import run_sweep
from pipeline.train import checkpoint as ckpt
from pipeline.train.from_run import load_run
from tests.sweep_helpers import best, tiny_params, trials
from tests.test_sweep import TWO_METHODS, _no_ray_left  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.slow  # one sweep on Ray, shared by the module


def test_asha_expected_epochs_known_answers():
    # rungs 1, 2, 4 of 8 epochs, half survive each: 1 + 1/2 + 2/4 + 4/8
    assert asha_epochs(8, 1, 2) == pytest.approx(2.5)
    assert asha_epochs(3, 4, 2) == 3  # grace beyond the budget: nothing is stopped
    assert asha_epochs(20, 4, 2) == pytest.approx(4 + 4 / 2 + 8 / 4 + 4 / 8)


def test_schedule_is_longest_first_makespan():
    assert schedule([3, 3, 2, 2, 2], 2) == 7  # {3, 2, 2} and {3, 2}
    assert schedule([5, 1, 1], 4) == 5
    assert schedule([1, 1, 1, 1], 1) == 4


@pytest.fixture(scope="module")
def context_sweep(tmp_path_factory, prepared_mnist):
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("ctx")
    params = tiny_params(tmp, prepared_mnist, TWO_METHODS, scheduler="none",
                         search={"train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}},
                         extra={"tracking.system_metrics_s": 0.5})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary = run_sweep(params, tmp)
    (tmp / "driver.log").write_text(out.getvalue())  # for a reader of a failure
    if ray.is_initialized():
        stop_ray()
    return tmp, params, summary, out.getvalue()


def _runs(params):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(params.tracking.uri)
    exp = c.get_experiment_by_name(params.tracking.experiment)
    runs = c.search_runs([exp.experiment_id], max_results=100)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return c, parent[0], [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_plan_is_printed_recorded_and_compared(context_sweep):
    tmp, params, _, log = context_sweep
    plan = json.loads((tmp / "sweep" / "plan.json").read_text())
    assert (plan["cells"], plan["trials"], plan["epochs"], plan["epochs_total"]) == (2, 2, 2, 4)
    assert 0 < plan["sweep_s"] <= plan["sweep_max_s"]
    assert "evaluate_s" not in plan  # the evaluate stage plans itself (pipeline.evaluation.plan)
    assert set(plan["families"]) == {"mlp/mlp/kl", "mlp/mlp/mmd"}
    assert plan["line"] in log and log.index(plan["line"]) < log.index("== Status ==")
    sweep = json.loads((tmp / "sweep" / "sweep.json").read_text())
    assert sweep["plan"]["sweep_s"] == plan["sweep_s"] and sweep["seconds"]["fit"] > 0
    _, parent, _ = _runs(params)
    assert float(parent.data.tags["infovae.plan.sweep_s"]) == plan["sweep_s"]
    assert plan["line"] in parent.data.tags["mlflow.note.content"]


def test_ray_table_shows_epoch_budget_validation_metrics_and_time_left(context_sweep):
    _, _, _, log = context_sweep
    header = next(line for line in log.splitlines() if "epoch/2" in line)
    for column in ("cell", "lr", "val_loss", "val_nelbo", "val_mi", "time (s)"):
        assert column in header, column
    assert re.search(r"Plan: 2 trials x 2 epochs, projected .*; \d/4 epochs done in .*time left <= ", log)


def test_parent_run_logs_the_sweep_not_the_base_file(context_sweep):
    _, params, _, _ = context_sweep
    _, parent, _ = _runs(params)
    p = parent.data.params
    assert json.loads(p["sweep.grids.g"]) == TWO_METHODS["g"]
    assert json.loads(p["sweep.search.train.lr"])["high"] == 3e-3
    assert p["sweep.trials_per_cell"] == "1" and p["train.epochs"] == "2"
    assert not any(k.startswith(("model.", "objective.")) for k in p)
    assert parent.data.tags["mlflow.source.name"] == "stages/sweep.py"
    assert re.fullmatch(r"[0-9a-f]{40}", parent.data.tags["mlflow.source.git.commit"])


def test_trial_runs_have_inputs_system_metrics_and_a_description(context_sweep, prepared_mnist):
    _, params, _, _ = context_sweep
    client, _, children = _runs(params)
    assert len(children) == 2
    digest = read_metadata(prepared_mnist / "train.parquet")["pixels_sha256"][:12]
    for run in children:
        inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        assert set(inputs) == {"mnist-train", "mnist-validation"}
        assert inputs["mnist-train"].dataset.digest == digest
        assert {t.value for t in inputs["mnist-train"].tags} == {"training"}
        system = [k for k in run.data.metrics if k.startswith("system/")]
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(system)
        note = run.data.tags["mlflow.note.content"]
        assert run.data.tags["infovae.cell_label"] in note and run.info.run_id in note
        assert ("ELBO" in note) != ("MMD-VAE" in note)
        assert "mlflow.source.git.commit" in run.data.tags


def test_checkpoint_loads_from_its_run_id_and_trial_paths_are_short(context_sweep):
    tmp, params, _, _ = context_sweep
    row = trials(tmp)[0]
    model, spec = load_run(row["mlflow_run_id"], tracking_uri=params.tracking.uri)
    state = ckpt.load(tmp / row["checkpoint"])
    assert spec.objective.divergence == row["divergence"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name
    for entry in best(tmp).values():  # <storage>/<experiment>/<trial id>/checkpoint_000001
        rel = entry["checkpoint"]
        assert re.fullmatch(r"ray/[\w.-]+/[0-9a-f]+(_\d+)?/checkpoint_\d+", rel), rel
