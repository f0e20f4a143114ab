"""The base every params section derives from: strict types, no unknown keys, immutable."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # strict: "3" is not an int and 1.5 is not an int; ints are still accepted for floats.
    # allow_inf_nan=False: `.nan` or `.inf` in any float param is an error naming the key (a
    # NaN bandwidth or penalty would train to NaN silently); a field that needs infinity says so.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
