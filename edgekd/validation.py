"""A pydantic validation error of a TOML file as edgekd's one line, with "did you mean"."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from edgekd.errors import EdgekdError
from edgekd.registry import did_you_mean


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The config class under `root` that holds the key at `loc`, for suggestions."""
    model: Any = root
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def explain(error: ValidationError, source: str, root: type[BaseModel]) -> EdgekdError:
    """One line for a TOML file validated as `root` (the pipeline config, a target profile...),
    with "did you mean" for an unknown key."""
    errors = error.errors()
    # a misspelt key also leaves its required key missing: the unknown key is the one to name
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        holder = _model_at(tuple(err["loc"]), root)
        valid = list(holder.model_fields) if holder else []
        hint = did_you_mean(str(err["loc"][-1]), valid) or (f"; valid keys: {', '.join(valid)}" if valid else "")
        return EdgekdError(f"{source}: unknown key '{key}'{hint}")
    return EdgekdError(f"{source}: '{key}' {err['msg'].lower()} (got {err.get('input')!r})")
