"""The base every params section derives from: strict types, no unknown keys, immutable."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # strict: "3" is not an int and 1.5 is not an int; ints are still accepted for floats.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
