"""Statuses that tell the truth (issue 13): a cell that sets its own train.epochs finishes
FINISHED, not KILLED (the global budget is not its budget), with or without ASHA."""

from __future__ import annotations

import pytest

from pipeline.infra.cluster import shutdown as stop_ray
from tests.sweep_helpers import best, tiny_params, trials

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("scheduler", ["none", "asha"])
def test_cells_with_their_own_epochs_finish_as_finished(tmp_path, prepared_mnist, scheduler):

    from pipeline.sweep.run import run_sweep

    grids = {"g": {"divergence": ["kl"], "alpha": [0.0], "lambda": [1.0], "train.epochs": [1, 3]}}
    params = tiny_params(tmp_path, prepared_mnist, grids, scheduler=scheduler, asha={"grace_period": 1},
                         extra={"train.epochs": 2})
    try:
        summary = run_sweep(params, tmp_path)
    finally:
        stop_ray()
    rows = trials(tmp_path)
    assert sorted((r["epochs_budget"], r["epochs_done"], r["status"]) for r in rows) == [
        (1, 1, "FINISHED"), (3, 3, "FINISHED")]
    assert summary["FINISHED"] == 2 and summary["KILLED"] == 0
    assert all(e["status"] == "FINISHED" and e["checkpoint_sha256"] for e in best(tmp_path).values())
