"""What the sweep shows while it runs: Ray's trial table with epoch/budget, the validation
metrics that matter and the time left; short trial directory names.

The time left is the plan's remaining work, rescaled by how fast the epochs done so far ran
against the plan: the unfinished trials' epochs left x their cell's planned epoch seconds x
(measured / planned seconds of the epochs done so far), scheduled longest-first over the
concurrent slots. Trials the scheduler stops early make it an upper bound.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from ray.tune import CLIReporter

from pipeline.infra.timing import duration, schedule

METRICS = {"val_loss": "val_loss", "val_nelbo": "val_nelbo", "val_mi": "val_mi"}


def trial_dirname(trial) -> str:
    """`<trial id>`: Tune's default name embeds the config (with host paths) in every checkpoint path."""
    return trial.trial_id


def use_table_reporter() -> None:
    """Ray's new output engine ignores a custom progress reporter; the table needs the classic one."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


def time_left(trials: list, plan: dict[str, Any]) -> tuple[float | None, float]:
    """(seconds left, measured/planned seconds per epoch) for the trials Tune holds now; trials
    not created yet count with the full budget at the mean planned epoch time."""
    per_epoch, fixed, epochs = plan["epoch_s_by_cell"], plan["fixed_s_by_cell"], plan["epochs"]
    mean_epoch = sum(per_epoch.values()) / max(1, len(per_epoch))
    mean_fixed = sum(fixed.values()) / max(1, len(fixed))
    remaining, planned_done, measured = [], 0.0, 0.0
    for t in trials:
        cell = t.config.get("cell")
        epoch_s, fixed_s = per_epoch.get(cell, mean_epoch), fixed.get(cell, mean_fixed)
        budget = plan.get("epochs_by_cell", {}).get(cell, epochs)  # a grid may set train.epochs
        last = t.last_result or {}
        done = int(last.get("epoch", 0))
        if done:
            planned_done += fixed_s + done * epoch_s
            measured += float(last.get("time_total_s", 0.0))
        if t.status not in ("TERMINATED", "ERROR"):
            remaining.append((budget - done) * epoch_s + (0.0 if done else fixed_s))
    # Trials Tune has not created yet: each cell's planned trials less those seen, at that cell's
    # budget and epoch time (cells' budgets differ: a grid may set train.epochs).
    seen = Counter(t.config.get("cell") for t in trials)
    per_cell = plan.get("trials_per_cell", 1)
    budgets = plan.get("epochs_by_cell", {})
    for cell, epoch_s in per_epoch.items():
        for _ in range(max(0, per_cell - seen.get(cell, 0))):
            remaining.append(fixed.get(cell, mean_fixed) + budgets.get(cell, epochs) * epoch_s)
    unplanned = plan["trials"] - len(trials) - sum(max(0, per_cell - seen.get(c, 0)) for c in per_epoch)
    remaining += [mean_fixed + epochs * mean_epoch] * max(0, unplanned)
    ratio = measured / planned_done if planned_done > 0 and measured > 0 else 1.0
    return schedule([r * ratio for r in remaining], plan["concurrent_trials"]), ratio


class PlanReporter(CLIReporter):
    """CLIReporter with epoch/budget, val_loss, val_nelbo, val_mi, and a plan/ETA line."""

    def __init__(self, plan: dict[str, Any], search_keys: list[str], every_s: int = 30):
        # A searched key's value as the trial runs it, read from its resolved spec: present in
        # every trial, also where the cell fixes the key (then Optuna suggests none, and Tune's
        # best-trial line would fail on the missing suggestion).
        params = {"cell_label": "cell",
                  **{"spec/" + k.replace(".", "/"): k.split(".")[-1] for k in search_keys}}
        super().__init__(metric_columns={"epoch": f"epoch/{plan['epochs']}", **METRICS,
                                         "time_total_s": "time (s)"},
                         parameter_columns=params, total_samples=plan["trials"], max_column_length=52,
                         max_report_frequency=every_s, print_intermediate_tables=True,
                         max_progress_rows=40)  # metric and mode: set by Tune from TuneConfig
        self.plan, self.started = plan, time.time()

    def eta_line(self, trials: list) -> str:
        elapsed = time.time() - self.started
        left, ratio = time_left(trials, self.plan)
        epochs = sum(int((t.last_result or {}).get("epoch", 0)) for t in trials)
        return (f"Plan: {self.plan['trials']} trials x {self.plan['epochs']} epochs, projected "
                f"{duration(self.plan['sweep_s'])}; {epochs}/{self.plan['epochs_total']} epochs done "
                f"in {duration(elapsed)}; time left <= {duration(left)} "
                f"(epochs take {ratio:.2f}x the planned time)")

    def report(self, trials: list, done: bool, *sys_info: str):
        self._print(self._progress_str(trials, done, self.eta_line(trials), *sys_info))
