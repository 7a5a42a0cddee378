"""Config fields declared once: a default, its range or choices and a help text, read by the CLI and the studio.

A config dataclass declares each user-facing setting with `option(...)`; its
`__post_init__` calls `check_ranges(self, SomeError)`, so the CLI, the studio and a
direct caller accept and refuse the same values with the same message. The CLI builds
its flags with `add_option` and the studio reads `default_of` / `range_of` /
`choices_of` for its widgets, so no default or range is written twice. A setting that
means the same as another config's (DPO's sampling) is declared `same_as` that one.
Torch-free.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

_MISSING = dataclasses.MISSING

# The most worker processes any setting allows, on every OS: Windows waits on at most 63 handles at
# once (WaitForMultipleObjects), which makes Python's own ProcessPoolExecutor refuse more than 61 there.
MAX_WORKERS = 61
# The largest score file the studio takes as an upload (its --max-upload-mb default) and the command line
# reads: an uncompressed MusicXML of a long symphony is a few MB, so this leaves ample room.
MAX_SCORE_MB = 20


def option(default: Any = _MISSING, *, help: str = "", low: float | None = None, high: float | None = None,
           choices: tuple | None = None, low_open: bool = False, high_open: bool = False,
           default_factory: Any = _MISSING, label: str = "", source: tuple[type, str] | None = None) -> Any:
    """A dataclass field with its range (`low`..`high`; `low_open` / `high_open`: that end excluded) or choices.

    `source` (set by `same_as`) records the config field this one is declared like."""
    metadata = {"help": help, "low": low, "high": high, "choices": choices, "low_open": low_open,
                "high_open": high_open, "label": label, "source": source}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def same_as(cls, name: str, **changes) -> Any:
    """A field declared like `cls.name`: the same default, range, choices, label and help unless `changes` says."""
    f = _field(cls, name)
    settings = {**f.metadata, "source": (cls, name)}
    if f.default_factory is not _MISSING:
        settings["default_factory"] = f.default_factory
    else:
        settings["default"] = f.default
    return option(**{**settings, **changes})


def sources_of(cls) -> dict[str, tuple[type, str]]:
    """Which config field each `same_as` field of `cls` is declared like."""
    return {f.name: f.metadata["source"] for f in dataclasses.fields(cls) if f.metadata.get("source")}


def _field(cls, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def default_of(cls, name: str) -> Any:
    f = _field(cls, name)
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def range_of(cls, name: str) -> tuple[float | None, float | None]:
    meta = _field(cls, name).metadata
    return meta.get("low"), meta.get("high")


def choices_of(cls, name: str) -> tuple | None:
    return _field(cls, name).metadata.get("choices")


def help_of(cls, name: str) -> str:
    return _field(cls, name).metadata.get("help", "")


def label_of(cls, name: str) -> str:
    return _field(cls, name).metadata.get("label") or name.replace("_", " ")


def type_of(cls, name: str) -> type | None:
    """The field's value type (`int`, `float`, `str`, `Path`, ...; the `X` of `X | None`), None if not one class."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = kinds[0] if len(kinds) == 1 else None
    return hint if isinstance(hint, type) and typing.get_origin(hint) is None else None


def _describe_range(meta) -> str:
    low, high = meta.get("low"), meta.get("high")
    low_open, high_open = meta.get("low_open"), meta.get("high_open")
    if low is not None and high is not None:
        if high_open:
            return f"{'over' if low_open else 'at least'} {low:g} and below {high:g}"
        return f"{'over ' if low_open else ''}{low:g}{' up' if low_open else ''} to {high:g}"
    if low is not None:
        return f"{'over' if low_open else 'at least'} {low:g}"
    if high is not None:
        return f"{'below' if high_open else 'at most'} {high:g}"
    return ""


def problem_with(cls, name: str, value: Any) -> str | None:
    """Why `value` is refused for field `name` (None when it is accepted)."""
    meta = _field(cls, name).metadata
    if not meta:
        return None
    what = meta.get("label") or name.replace("_", " ")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        return f"{what} must be one of {', '.join(map(str, choices))}, not {value!r}"
    low, high = meta.get("low"), meta.get("high")
    if value is None or (low is None and high is None):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{what} must be a number, not {value!r}"
    below = value <= low if (low is not None and meta.get("low_open")) else (low is not None and value < low)
    above = value >= high if (high is not None and meta.get("high_open")) else (high is not None and value > high)
    if below or above:
        return f"{what} must be {_describe_range(meta)}, not {value:g}"
    return None


def check_ranges(obj, error: type[Exception] = ValueError) -> None:
    """Raise `error` naming the first field of `obj` outside its declared range or choices."""
    for f in dataclasses.fields(obj):
        problem = problem_with(type(obj), f.name, getattr(obj, f.name))
        if problem:
            raise error(problem)


def add_option(parser: argparse.ArgumentParser, cls, name: str, flag: str | None = None, **overrides) -> None:
    """An argparse flag for field `name`: its default, type, choices and help come from the field.

    A bool field becomes `--flag / --no-flag`. The flag's value lands in `args.<name>`, so
    `values_of(args, names)` hands the command's settings to the config, which validates them.
    """
    f = _field(cls, name)
    meta = f.metadata
    default = default_of(cls, name)
    flag = flag or "--" + name.replace("_", "-")
    kwargs: dict[str, Any] = {"dest": name, "default": default}
    if isinstance(default, bool):
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = type_of(cls, name) or (type(default) if default is not None else None)
    if meta.get("choices") is not None:
        kwargs["choices"] = list(meta["choices"])
    elif "type" in kwargs:
        kwargs["metavar"] = flag[2:].replace("-", "_").upper()  # named after the flag, not the field
    text = meta.get("help", "").replace("%", "%%")
    # A default computed when the config is made (default_factory) is described by the help text instead.
    if isinstance(default, bool):
        shown = f"default {'on' if default else 'off'}"
    else:
        shown = f"default {default}" if default not in (None, "") and f.default_factory is _MISSING else ""
    extra = ", ".join(x for x in (_describe_range(meta), shown) if x)
    kwargs["help"] = f"{text} ({extra})" if text and extra else (text or extra or None)
    kwargs.update(overrides)
    parser.add_argument(flag, **kwargs)


def values_of(args: argparse.Namespace, names) -> dict[str, Any]:
    """The parsed values of the flags `add_option` made for `names`, by field name."""
    return {name: getattr(args, name) for name in names}
