"""Optuna inside every grid cell: one seeded TPE study per cell, behind one Ray Tune Searcher.

Ray's OptunaSearch refuses grid_search values and would model the whole grid as one search
space; here the grid is explicit and each cell gets its own budget of `trials_per_cell`
suggestions, handed out round-robin so that all cells progress under any concurrency.

The studies live in an Optuna journal (`<sweep.out_dir>/optuna.journal`, one study per cell,
named `<experiment>/<cell id>` with the cell's label as a user attribute), so the search inside
a cell can be inspected after the sweep: `optuna-dashboard results/sweep/optuna.journal`, or
optuna.load_study. A fresh searcher starts each study empty (an earlier run's leftovers would
change TPE's suggestions); a resumed sweep restores the searcher, still bound to the journal.
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher

from pipeline.params.grid import Cell, resolve
from pipeline.params.load import Params
from pipeline.params.study import SearchDim
from pipeline.train.checkpoint import RunSpec


def distribution(dim: SearchDim) -> optuna.distributions.BaseDistribution:
    if dim.type == "categorical":
        return optuna.distributions.CategoricalDistribution(dim.choices)
    if dim.type == "int":
        return optuna.distributions.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)


def trial_spec(params: Params, cell: Cell, suggested: dict[str, Any], data_dir: str) -> RunSpec:
    """The RunSpec of one trial; torch threads = the trial's CPUs (docs/design.md §4)."""
    p = resolve(params, cell, suggested)
    threads = max(1, int(p.sweep.cpus_per_trial))
    train = p.train.model_copy(update={"threads": threads})
    return RunSpec(p.model, p.objective, train, data_dir)


def cell_seed(seed: int, cell: Cell) -> int:
    """The seed of a cell's Optuna sampler: from the cell's id, not its position in the grid,
    so that reordering or adding grids changes no cell's suggestions."""
    return (seed + int(cell.id.removeprefix("cell-"), 16)) % (2**31)


def base_point(params: Params, cell: Cell, search: dict[str, SearchDim]) -> dict[str, Any]:
    """The searched keys at the cell's own values (its resolved params), where a value lies in
    its distribution: the point a cell's first trial runs (sweep.first_trial_at_base), so that
    a cell of one trial runs the study's settings rather than a random draw, and every cell's
    search starts from the same, comparable point."""
    from pipeline.params.grid import _get

    resolved = resolve(params, cell, {})
    out = {}
    for key, dim in search.items():
        if key in cell.fixed:
            continue
        value = _get(resolved, key)
        inside = value in dim.choices if dim.type == "categorical" else dim.low <= value <= dim.high
        if inside:
            out[key] = value
    return out


def journal_storage(path: str) -> optuna.storages.BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(path))


def new_study(storage, name: str, direction: str, sampler, attrs: dict[str, Any]) -> optuna.Study:
    """An empty study (in memory when `storage` is None); one of the same name is replaced."""
    if storage is None:
        return optuna.create_study(direction=direction, sampler=sampler)
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


class CellSearcher(Searcher):
    def __init__(self, params: Params, cells: list[Cell], data_dir: str, metric: str, mode: str = "min",
                 audit_dir: str | None = None, journal: str | None = None, name: str = "sweep"):
        super().__init__(metric=metric, mode=mode)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
        sweep = params.sweep
        self.params, self.cells, self.data_dir, self.audit_dir = params, cells, data_dir, audit_dir
        self.budget = sweep.trials_per_cell
        self.space = {key: distribution(dim) for key, dim in sweep.search.items()}
        self.epochs = params.train.epochs
        storage = journal_storage(journal) if journal else None
        direction = "minimize" if mode == "min" else "maximize"
        self.studies = {}
        for c in cells:
            sampler = optuna.samplers.TPESampler(seed=cell_seed(sweep.seed, c),
                                                 n_startup_trials=sweep.startup_trials)
            self.studies[c.id] = new_study(storage, f"{name}/{c.id}", direction, sampler,
                                           {"cell_label": c.label, "grids": list(c.grids)})
        if sweep.first_trial_at_base:
            for c in cells:
                base = base_point(params, c, sweep.search)
                if base:
                    self.studies[c.id].enqueue_trial(base)
        self.issued = {c.id: 0 for c in cells}
        self.live: dict[str, tuple[str, optuna.trial.Trial]] = {}
        self.budgets: dict[str, int] = {}  # trial id -> its own train.epochs (a grid may set them)
        self.turn = 0

    def _next_cell(self) -> Cell | None:
        for _ in range(len(self.cells)):
            cell = self.cells[self.turn % len(self.cells)]
            self.turn += 1
            if self.issued[cell.id] < self.budget:
                return cell
        return None

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        cell = self._next_cell()
        if cell is None:
            return Searcher.FINISHED
        # A key the grid fixes for this cell is not searched in it.
        ot = self.studies[cell.id].ask({k: d for k, d in self.space.items() if k not in cell.fixed})
        self.issued[cell.id] += 1
        self.live[trial_id] = (cell.id, ot)
        spec = trial_spec(self.params, cell, dict(ot.params), self.data_dir)
        self.budgets[trial_id] = spec.train.epochs
        return {"cell": cell.id, "cell_label": cell.label, "grids": list(cell.grids),
                "suggested": dict(ot.params), "optuna_number": ot.number, "spec": spec.to_dict(),
                "audit_dir": self.audit_dir}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.live and self.metric in result and "epoch" in result:
            _, ot = self.live[trial_id]
            if not self._told(ot):
                ot.report(float(result[self.metric]), step=int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        cell_id, ot = self.live.pop(trial_id)
        epochs = self.__dict__.setdefault("budgets", {}).pop(trial_id, self.epochs)
        study = self.studies[cell_id]
        state = optuna.trial.TrialState
        if self._told(ot):
            return
        if error or not result or self.metric not in result:
            study.tell(ot, state=state.FAIL)
        elif int(result.get("epoch", 0)) < epochs:  # stopped early by the scheduler
            study.tell(ot, state=state.PRUNED)
        else:
            study.tell(ot, float(result[self.metric]))

    @staticmethod
    def _told(ot: optuna.trial.Trial) -> bool:
        """Whether the journal holds this trial's outcome already: a searcher restored from a
        snapshot older than a kill (Tune's, taken in the background) still counts as live a
        trial whose end the journal recorded before the kill; telling it twice raises.
        Study._storage and Trial._trial_id are private, read here only, checked on Optuna 5.0.0."""
        return ot.study._storage.get_trial(ot._trial_id).state.is_finished()

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps(self.__dict__))

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(pickle.loads(Path(checkpoint_path).read_bytes()))
