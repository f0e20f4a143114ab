"""What each DVC stage reads of params.yaml, declared once, and the view that holds it to that.

dvc.yaml lists the same keys under each stage's `params` (tests/test_stages.py checks the two
agree), so DVC reruns a stage exactly when something it reads changed. A stage is handed a
`StageParams` view rather than the whole file: reading a section or key it did not declare is
an error naming the key, so an undeclared read cannot hide behind a default.
"""

from __future__ import annotations

from typing import Any

from pipeline.params.load import Params, ParamsError, with_overrides

# stage -> the sections (whole) and dotted keys (one value of a section) it reads
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "prepare": ("data",),
    # profile: the composed profile's name, a param of the sweep's parent MLflow run. No stage
    # reads a later stage's section: a later setting never reruns an earlier stage.
    "sweep": ("profile", "data.out_dir", "model", "objective", "train", "sweep", "cluster", "tracking"),
    "evaluate": ("data.out_dir", "sweep.out_dir", "evaluate", "cluster", "tracking"),
    "report": ("sweep.out_dir", "evaluate.out_dir", "report", "tracking"),
}


class _Keys:
    """One section seen through a stage that declared only some of its keys."""

    def __init__(self, stage: str, section: str, value: Any, keys: set[str]):
        self._stage, self._section, self._value, self._keys = stage, section, value, keys

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._keys:
            raise ParamsError(f"the {self._stage} stage reads {self._section}.{name}, which it does not "
                              f"declare (pipeline.params.stages.STAGE_PARAMS and dvc.yaml)")
        return getattr(self._value, name)


class StageParams:
    """The params one stage reads: whole sections as they are, partial ones as `_Keys`."""

    def __init__(self, params: Params, stage: str):
        if stage not in STAGE_PARAMS:
            raise ValueError(f"unknown stage {stage!r}; one of {sorted(STAGE_PARAMS)}")
        self._params, self._stage = params, stage
        self._whole = {e for e in STAGE_PARAMS[stage] if "." not in e}
        self._partial: dict[str, set[str]] = {}
        for entry in STAGE_PARAMS[stage]:
            if "." in entry:
                section, key = entry.split(".", 1)
                self._partial.setdefault(section, set()).add(key)

    @property
    def stage(self) -> str:
        return self._stage

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._whole:
            return getattr(self._params, name)
        if name in self._partial:
            return _Keys(self._stage, name, getattr(self._params, name), self._partial[name])
        raise ParamsError(f"the {self._stage} stage reads the {name} section, which it does not declare "
                          f"(pipeline.params.stages.STAGE_PARAMS and dvc.yaml)")

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> StageParams:
        """The same view over params with dotted keys replaced (validated again); only keys of
        whole sections this stage reads may change."""
        for dotted in overrides:
            if dotted.split(".", 1)[0] not in self._whole:
                raise ParamsError(f"{source}: {dotted} is not a key of the sections the {self._stage} stage "
                                  f"reads ({', '.join(sorted(self._whole))})")
        return StageParams(with_overrides(self._params, overrides, source=source), self._stage)


def stage_params(params: Params, stage: str) -> StageParams:
    return StageParams(params, stage)
