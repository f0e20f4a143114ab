"""The base every params section derives from: strict types, no unknown keys, immutable, and
a split of its keys into what changes a result (the identity) and where or how fast it runs."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # strict: "3" is not an int and 1.5 is not an int; ints are still accepted for floats.
    # allow_inf_nan=False: `.nan` or `.inf` in any float param is an error naming the key (a
    # NaN bandwidth or penalty would train to NaN silently); a field that needs infinity says so.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    # Keys that say where, how fast or how verbosely work runs, never what it computes: they
    # stay out of every identity (the sweep's fingerprint, a cell's id, the prepared data's
    # metadata, the evaluation cache), so changing one reruns nothing.
    placement: ClassVar[frozenset[str]] = frozenset()

    def identity(self) -> dict[str, Any]:
        """The section's values that change results, sub-sections included (JSON types)."""
        out = {}
        for name in type(self).model_fields:
            if name in self.placement:
                continue
            value = getattr(self, name)
            key = type(self).model_fields[name].alias or name
            out[key] = value.identity() if isinstance(value, Section) else _plain(value)
        for key, value in (self.__pydantic_extra__ or {}).items():  # sections a registry adds
            out[key] = value.identity() if isinstance(value, Section) else _plain(value)
        return out

    @classmethod
    def extra_sections(cls) -> dict[str, type[Section]]:
        """Sub-sections accepted beside the fields (a registry's): none unless a section says so."""
        return {}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
