"""The study declared as data: named grids in params.yaml expanded into validated cells.

A cell is one point of the alpha x lambda x divergence (x latent_dim x train_size x decoder)
grid: a set of params overrides. A cell named by several grids runs once and carries all
their names, so the report can find it under each experiment.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from pipeline.params.load import Params, ParamsError, with_overrides
from pipeline.params.vocab import AXIS_KEYS, attribute, cell_label, key_order, method_name

SPEC_SECTIONS = ("model", "objective", "train")  # what a trial's RunSpec carries

@dataclass(frozen=True)
class Cell:
    id: str
    overrides: dict[str, Any]  # dotted params key -> value (canonical, validated types)
    grids: tuple[str, ...]
    label: str
    method: str  # the InfoVAE family member (pipeline.params.vocab.method_name)
    decoder: str
    # The keys this cell's own grid(s) set. `overrides` holds every key any grid varies (at this
    # cell's value, the base where its grids leave it), so a key one grid fixes is in every cell's
    # overrides; only these keys are withheld from the cell's search.
    fixed: frozenset[str] = frozenset()


def _get(params: Params, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        node = getattr(node, attribute(part))
    return node


def _options(grid: str, axis: str, values: list[Any]) -> list[dict[str, Any]]:
    out = []
    for v in values:
        if isinstance(v, dict):
            out.append({AXIS_KEYS.get(k, k): val for k, val in v.items()})
        else:
            out.append({AXIS_KEYS.get(axis, axis): v})
    return out


def spec_identity(params: Params, searched: set[str] = frozenset()) -> dict[str, Any]:
    """What a trial of these params computes: the model, objective and train sections' result-
    changing values (pipeline.params.base.Section.identity), less the keys Optuna searches
    (their base value never runs)."""
    spec = {s: getattr(params, s).identity() for s in SPEC_SECTIONS}
    for dotted in searched:
        section, *path = dotted.split(".")
        node = spec.get(section)
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return spec


def _free(params: Params) -> set[str]:
    """The searched keys whose base value no trial runs (so not part of a cell's identity): all
    of them, unless a cell's first trial runs the base values (sweep.first_trial_at_base)."""
    return set() if params.sweep.first_trial_at_base else set(params.sweep.search)


def cell_id(identity: dict[str, Any]) -> str:
    canon = json.dumps(identity, sort_keys=True, default=str)
    return "cell-" + hashlib.sha1(canon.encode()).hexdigest()[:10]


def expand(params: Params) -> list[Cell]:
    """Every cell of every grid, validated against the params schema (before any compute).

    A cell is identified by what its trials compute (spec_identity of its resolved params), so
    the same configuration reached from two grids (one naming the decoder, one leaving it at its
    default) is one cell, and a setting that changes no result (threads, device, where files
    go) changes no cell's id.
    """
    if not params.sweep.grids:
        raise ParamsError("invalid params:\n  sweep.grids: no grid declared: the sweep would run nothing")
    combos: list[tuple[str, dict[str, Any]]] = []
    for grid, axes in params.sweep.grids.items():
        lists = [_options(grid, axis, values) for axis, values in axes.items()]
        for combo in itertools.product(*lists):
            overrides: dict[str, Any] = {}
            for part in combo:
                clash = set(part) & set(overrides)
                if clash:
                    raise ParamsError(f"sweep.grids.{grid}: axes set {sorted(clash)} twice")
                overrides.update(part)
            combos.append((grid, overrides))
    varied = sorted({k for _, o in combos for k in o}, key=key_order)
    found: dict[str, tuple[dict[str, Any], list[str], tuple[str, str], set[str]]] = {}
    for grid, overrides in combos:
        try:
            resolved = _override(params, overrides, source=f"sweep.grids.{grid}")
        except ParamsError as err:
            raise ParamsError(f"sweep.grids.{grid}: cell {overrides} is invalid: {err}") from None
        canon = {k: _get(resolved, k) for k in varied}  # canonical types: 1 and 1.0 agree
        key = cell_id(spec_identity(resolved, _free(params)))
        obj = resolved.objective
        named = (method_name(obj.divergence, obj.alpha, obj.lambda_, obj.scaling), resolved.model.decoder)
        _, grids, _, fixed = found.setdefault(key, (canon, [], named, set()))
        fixed.update(overrides)
        if grid not in grids:
            grids.append(grid)
    return [Cell(key, canon, tuple(grids), cell_label(canon), *named, frozenset(fixed))
            for key, (canon, grids, named, fixed) in found.items()]


def resolve(params: Params, cell: Cell, suggested: dict[str, Any]) -> Params:
    """The full params of one trial: the cell's overrides plus Optuna's suggestions."""
    return _override(params, {**cell.overrides, **suggested}, source=f"trial in {cell.label}")


def _override(params, overrides: dict[str, Any], source: str):
    """with_overrides for full params or a stage's view of them (which keeps to its sections)."""
    if hasattr(params, "with_overrides"):
        return params.with_overrides(overrides, source=source)
    return with_overrides(params, overrides, source=source)
