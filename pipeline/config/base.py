"""What every config section shares: the pydantic settings, number types, the error class and
the validators' wording (imported by the section modules; `pipeline.config` re-exports them)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
# Unknown keys are errors; numbers given for text (`split: 2018`) are read as text; booleans
# are true or false only (StrictBool: a 1 or a "yes" string is refused).
SECTION = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class ConfigError(ValueError):
    """A preset, file or override that does not fit the config schema."""


def require(condition: bool, expectation: str) -> None:  # a validator's error, worded
    if not condition:
        raise ValueError(f"expected {expectation}")


def ordered(section: Any, low: str, high: str) -> None:  # an error naming both values
    first, second = getattr(section, low), getattr(section, high)
    require(first <= second, f"{low} <= {high}, found {first} > {second}")
