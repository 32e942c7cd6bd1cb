"""The base of every typed config section: params.yaml's sections (`ganforge.config`) and the model families'
configs (`ganforge.models`), which `train.model` holds. Here, not in config.py, so that the families can
subclass it while config.py builds `train.model` from them (no import cycle).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

INT64 = 2**63  # no stage can use an integer outside [-2**63, 2**63): torch and numpy take int64


def _takes_numbers(annotation: Any) -> bool:
    """int, float, a Literal of numbers, or an Optional/Union of one of those."""
    if annotation in (int, float):
        return True
    origin = get_origin(annotation)
    if origin is Annotated:  # `Annotated[int, Field(ge=1)] | Literal["auto"]`
        return _takes_numbers(get_args(annotation)[0])
    if origin is Literal:
        return any(type(a) in (int, float) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return any(_takes_numbers(a) for a in get_args(annotation))
    return False


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _usable(cls, value: Any, info: ValidationInfo) -> Any:
        """What pydantic's lax mode lets through but no stage can use: true/false for a number,
        an integer beyond 64 bits, a NUL character in a string (a path, a name)."""
        if isinstance(value, bool):
            if info.field_name and _takes_numbers(cls.model_fields[info.field_name].annotation):
                raise ValueError("expected a number, not true/false")
        elif isinstance(value, int) and not -INT64 <= value < INT64:
            raise ValueError("out of range (more than 64 bits)")
        elif isinstance(value, str) and "\x00" in value:
            raise ValueError("a NUL character is not allowed")
        return value
