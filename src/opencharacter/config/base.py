"""The base of every settings model (unknown keys are errors) and reading a YAML config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from opencharacter.errors import ConfigError, InputError
from opencharacter.records import Sampling


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _partial_sampling_keeps_the_sections_defaults(cls, data: Any) -> Any:
        """`sampling: {temperature: 0.9}` (or `--temperature 0.9`) changes the temperature only: the
        other parameters keep this section's defaults (profiles: 400 tokens), not `Sampling`'s own."""
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            given = data.get(name)
            if isinstance(given, dict) and field.default_factory is not None:
                default = field.default_factory()  # type: ignore[call-arg]
                if isinstance(default, Sampling):
                    data = {**data, name: {**default.model_dump(exclude_defaults=True), **given}}
        return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping, with parse errors reported as file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), None, "config file not found") from None
    except UnicodeDecodeError:
        raise InputError(str(path), None, "config file is not valid UTF-8") from None
    except IsADirectoryError:
        raise InputError(str(path), None, "is a directory, expected a YAML file") from None
    except PermissionError:
        raise InputError(str(path), None, "permission denied: cannot read the config file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(str(path), line, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(str(path), 1, "config must be a YAML mapping")
    return data


def validation_message(exc: ValidationError, source: str) -> str:
    """One readable line per wrong field: `source: field.path: message`."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(lines)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings combine, everything else in `override` wins."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def build(model: type[Config], data: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source)) from None
