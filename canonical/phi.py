"""PHI tagging: models mark PHI fields, and everything that logs or exports asks this module."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

PHI_KEY = "phi"
MASK = "***"


def PhiField(*, description: str, default: Any = ..., **constraints: Any) -> Any:
    """Declare a model field that holds protected health information (constraints as for Field)."""
    return Field(default, description=description, json_schema_extra={PHI_KEY: True}, **constraints)


def phi_fields(model: type[BaseModel]) -> frozenset[str]:
    """Return the names of the fields of ``model`` tagged as PHI."""
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(PHI_KEY):
            names.add(name)
    return frozenset(names)


def masked(value: Any) -> Any:
    """Return a JSON-able copy of ``value`` with every PHI field, at any depth, replaced by a mask."""
    if isinstance(value, BaseModel):
        tagged = phi_fields(type(value))
        return {
            name: (
                MASK
                if name in tagged and getattr(value, name) not in (None, "")
                else masked(getattr(value, name))
            )
            for name in type(value).model_fields
        }
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
