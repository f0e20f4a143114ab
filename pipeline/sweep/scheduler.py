"""Early stopping that compares trials only within their grid cell.

ASHA ranks trials by the metric at each rung; across cells the metric is on different scales
(lambda multiplies the divergence term), so one ASHA per cell, chosen by the trial's cell.
"""

from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler


class PerCellASHA(FIFOScheduler):
    def __init__(self, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: float):
        super().__init__()
        self._metric, self._mode = metric, mode
        self._max_t, self._grace = max_t, grace_period
        self._kw = dict(time_attr="epoch", metric=metric, mode=mode, reduction_factor=reduction_factor)
        self._cells: dict[str, AsyncHyperBandScheduler] = {}

    def _for(self, trial) -> AsyncHyperBandScheduler:
        cell = trial.config.get("cell", "")
        if cell not in self._cells:
            # The cell's own budget: a grid may set train.epochs per cell, and ASHA stops
            # every trial at max_t (a longer cell cut at the global budget would look killed).
            max_t = int(trial.config.get("spec", {}).get("train", {}).get("epochs", self._max_t))
            self._cells[cell] = AsyncHyperBandScheduler(**self._kw, max_t=max_t,
                                                        grace_period=min(self._grace, max_t))
        return self._cells[cell]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are fixed at construction

    def on_trial_add(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result) -> str:
        asha = self._for(trial)
        if trial.trial_id not in asha._trial_info:  # restored trial: re-register it
            asha.on_trial_add(tune_controller, trial)
        return asha.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        asha = self._for(trial)
        if trial.trial_id in asha._trial_info:
            asha.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        asha = self._for(trial)
        if trial.trial_id in asha._trial_info:
            asha.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"Per-cell ASHA over {len(self._cells)} cells"


__all__ = ["PerCellASHA", "TrialScheduler"]
