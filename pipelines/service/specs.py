"""What the service specs share: the checks of a spec's values, and the base of a job's typed result.

A spec field declared `same_as(Config, "name")` (pipelines.fields) takes that config field's
default and metadata (range, choices, help, label), so the studio's widgets read a spec and
show the config's defaults and ranges, and `check_spec` refuses what the config refuses, with
its message.
"""
from __future__ import annotations

import dataclasses

from pipelines.errors import SettingError
from pipelines.fields import check_ranges

NUMBERS = {"int": int, "float": float, "int | None": int, "float | None": float}


@dataclasses.dataclass(frozen=True)
class JobResult:
    """A job's typed result: kept as JSON in the job's record, read back with `from_dict`."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


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
