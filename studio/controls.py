"""Widgets that mirror a setting: their default, range and help come from the spec field (which mirrors
its config field), so the studio never writes a default or a range of its own.

A field without a declared range gets an unbounded widget; the service refuses what the
config refuses, with the config's message.
"""
from __future__ import annotations

import gradio as gr

from pipelines.fields import choices_of, default_of, help_of, range_of


def _info(spec, name: str) -> str | None:
    return help_of(spec, name) or None


def number(spec, name: str, label: str, whole: bool | None = None, **kwargs) -> gr.Number:
    """A number box with the field's default and range; `whole`: no decimals (default: an int field's)."""
    default = default_of(spec, name)
    low, high = range_of(spec, name)
    whole = isinstance(default, int) if whole is None else whole
    options = {"precision": 0 if whole else None, "minimum": low, "maximum": high, "info": _info(spec, name),
               **kwargs}
    return gr.Number(0 if default is None else default, label=label, **options)


def slider(spec, name: str, label: str, step: float, **kwargs) -> gr.Slider:
    """A slider over the field's declared range (an open lower end starts one step above it)."""
    low, high = range_of(spec, name)
    if low is None or high is None:
        raise ValueError(f"{spec.__name__}.{name} declares no range for a slider")
    if spec.__dataclass_fields__[name].metadata.get("low_open"):
        low += step
    options = {"info": _info(spec, name), **kwargs}
    return gr.Slider(low, high, value=default_of(spec, name), step=step, label=label, **options)


def radio(spec, name: str, label: str, names: dict[str, str], **kwargs) -> gr.Radio:
    """Choices shown by their `names` (value -> words), in the field's order when it declares its choices."""
    values = choices_of(spec, name) or tuple(names)
    return gr.Radio([(names.get(v, str(v)), v) for v in values], value=default_of(spec, name), label=label,
                    **kwargs)
