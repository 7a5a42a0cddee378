"""What the service specs share: fields that mirror a config field, and the checks of a spec's values.

A spec field declared with `mirror(Config, "name")` takes that config field's default
and metadata (range, choices, help, label), so `pipelines.fields.default_of(Spec, name)`
and `range_of` give the config's values: the studio's widgets read a spec and show the
config's defaults and ranges, and `check_spec` refuses what the config refuses, with
its message.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from pipelines.errors import SettingError
from pipelines.fields import check_ranges, default_of

NUMBERS = {"int": int, "float": float, "int | None": int, "float | None": float}


def mirror(config: type, name: str) -> Any:
    """A spec field with the default and metadata of `config`'s field `name` (recorded as its source)."""
    source = next(f for f in dataclasses.fields(config) if f.name == name)
    metadata = {**source.metadata, "mirrors": (config, name)}
    default = default_of(config, name)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: default_of(config, name), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def mirrored(spec: type) -> dict[str, tuple[type, str]]:
    """Which config field each mirrored field of `spec` comes from."""
    return {f.name: f.metadata["mirrors"] for f in dataclasses.fields(spec) if "mirrors" in f.metadata}


def coerce_numbers(spec) -> None:
    """Turn the spec's numeric fields into int / float (the browser sends 3.0 for 3, or a numeric text)."""
    for f in dataclasses.fields(spec):
        kind = NUMBERS.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        value = getattr(spec, f.name)
        if kind is None or value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SettingError(f"{f.name.replace('_', ' ')} must be a number, not {value!r}") from None
        if kind is int:
            if number != int(number):
                raise SettingError(f"{f.name.replace('_', ' ')} must be a whole number, not {value!r}")
            number = int(number)
        object.__setattr__(spec, f.name, number)


def check_spec(spec) -> None:
    """Numbers as numbers, then every mirrored field within its config's range or choices."""
    coerce_numbers(spec)
    check_ranges(spec, SettingError)


def from_params(spec: type, params: dict):
    """A spec from a job's saved parameters; keys a newer or older studio wrote and this one lacks are ignored."""
    known = {f.name for f in dataclasses.fields(spec)}
    return spec(**{k: v for k, v in params.items() if k in known})
