"""params.yaml: the whole study, resolved, loaded through one typed schema.

Every section is a strict pydantic model: an unknown key, a wrong type or an out-of-range
value stops the run before any compute with a `ParamsError` that names the key path and what
is allowed. params.yaml holds every value that runs, profile applied (composed from conf/ by
pipeline.params.compose, or by `dvc exp run -S profile=NAME`): what DVC shows is what ran. The
keys that grid axes and search dimensions name are checked against the schema here, so every
stage (prepare first) refuses them. A key written twice in the YAML is an error, not "last wins".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from pipeline.errors import PipelineError
from pipeline.params.base import Section
from pipeline.params.data import DataParams
from pipeline.params.evaluate import EvaluateParams
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.params.report import ReportParams
from pipeline.params.study import ClusterParams, SweepParams, TrackingParams
from pipeline.params.vocab import AXIS_KEYS

__all__ = ["Params", "ParamsError", "load_params", "parse_params"]


class ParamsError(PipelineError, ValueError):
    """params.yaml is invalid; the message names every offending key path."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    profile: str | None = None  # the conf/profile/ file this params.yaml was composed with
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    objective: ObjectiveParams = ObjectiveParams()
    train: TrainParams = TrainParams()
    sweep: SweepParams = SweepParams()
    cluster: ClusterParams = ClusterParams()
    tracking: TrackingParams = TrackingParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()

    @model_validator(mode="after")
    def _check_inputs(self) -> Params:
        # A Gaussian decoder models the grey levels: only dynamic binarization keeps them in the
        # prepared files (threshold and fixed store binary pixels). Checked for every grid cell too.
        if self.model.likelihood == "gaussian" and self.data.binarization != "dynamic":
            raise ValueError(f"model.likelihood 'gaussian' models the grey levels, but data.binarization "
                             f"{self.data.binarization!r} prepares binary pixels: use data.binarization: "
                             "dynamic (its files keep the grey levels) or model.likelihood: bernoulli")
        return self


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not in the schema; check its spelling and section)"
        elif e["type"] == "value_error":  # a cross-field check: its message names the keys
            msg = str(e.get("ctx", {}).get("error", msg))
        got = e.get("input")
        quiet = e["type"] in ("missing", "extra_forbidden", "value_error")
        shown = "" if quiet else f" (got {got!r})"
        lines.append(f"  {path}: {msg}{shown}")
    return f"invalid params in {source}:\n" + "\n".join(lines)


def parse_params(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a params mapping; raise ParamsError naming each bad key."""
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections")
    try:
        params = Params.model_validate(dict(raw or {}))
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None
    bad = key_errors(params.sweep)
    if bad:
        raise ParamsError(f"invalid params in {source}:\n" + "\n".join(bad))
    return params


def known_key(dotted: str) -> bool:
    """Whether a dotted key (`train.lr`, `objective.mmd.bandwidth`) names a leaf of the schema."""
    model: type[BaseModel] = Params
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = {(f.alias or name): f.annotation for name, f in model.model_fields.items()}
        if issubclass(model, Section):
            fields.update(model.extra_sections())
        if part not in fields or part == "profile":
            return False
        if i == len(parts) - 1:
            return True
        sub = fields[part]
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return False  # a dotted key descending into a value that is not a section
        model = sub
    return False


def key_errors(sweep: SweepParams) -> list[str]:
    """`sweep.grids.<grid>.<key>` / `sweep.search.<key>` lines for keys not in the schema."""
    bad = []
    for grid, axes in sweep.grids.items():
        for axis, values in axes.items():
            keys = {k for v in values if isinstance(v, dict) for k in v}
            if not keys or any(not isinstance(v, dict) for v in values):
                keys.add(axis)
            bad += [f"sweep.grids.{grid}.{k}" for k in sorted(keys) if not known_key(AXIS_KEYS.get(k, k))]
    bad += [f"sweep.search.{k}" for k in sweep.search if not known_key(k)]
    return [f"  {k}: unknown params key (not in the schema; check its spelling and section)" for k in bad]


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key written twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)




def read_raw(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    return raw or {}


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Load and validate params.yaml; `overrides` maps dotted keys to values (applied after
    the profile, validated like the file: `{"objective.lambda": 1000}`)."""
    params = parse_params(read_raw(path), source=str(path))
    if overrides:
        params = with_overrides(params, overrides, source=str(path))
    return params


def with_overrides(params: Params, overrides: dict[str, Any], source: str = "overrides") -> Params:
    """A copy of validated params with dotted keys replaced, validated again."""
    raw = params.model_dump(by_alias=True)
    for dotted, value in overrides.items():
        node = raw
        *parents, last = dotted.split(".")
        for i, key in enumerate(parents):
            if key not in node and known_key(".".join(parents[:i + 1])):
                node[key] = {}  # a registered divergence's section the params leave at its defaults
            if not isinstance(node.get(key), dict):
                raise ParamsError(f"invalid override {dotted}: {key!r} is not a section")
            node = node[key]
        node[last] = value
    return parse_params(raw, source=f"{source} with overrides {sorted(overrides)}")


def parse_set(items: list[str]) -> dict[str, Any]:
    """`key.path=value` strings (command line) -> overrides; values are parsed as YAML."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set expects key.path=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out
