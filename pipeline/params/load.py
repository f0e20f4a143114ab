"""params.yaml: the whole study, resolved, loaded through one typed schema.

Every section is a strict pydantic model: an unknown key, a wrong type or an out-of-range
value stops the run before any compute with a `ParamsError` that names the key path and what
is allowed. params.yaml holds every value that runs, profile applied (composed from conf/ by
pipeline.params.compose, or by `dvc exp run -S profile=NAME`): what DVC shows is what ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.infra.errors import PipelineError
from pipeline.params.data import DataParams
from pipeline.params.evaluate import EvaluateParams
from pipeline.params.model import ModelParams, ObjectiveParams, TrainParams
from pipeline.params.report import ReportParams
from pipeline.params.study import ClusterParams, SweepParams, TrackingParams

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
        return Params.model_validate(dict(raw or {}))
    except ValidationError as err:
        raise ParamsError(_format_errors(err, source)) from None


def read_raw(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
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
        for key in parents:
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
