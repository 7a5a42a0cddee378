"""Pipeline errors as messages for the visitor: `gr.Error` with the pipeline's own text, never a traceback.

Anything else (a bug) reaches Gradio, which logs it on the studio's console and shows
visitors only that an error happened (the app launches with show_error=False).
"""
from __future__ import annotations

import functools
import inspect

import gradio as gr

from pipelines.errors import NotaGenError


def guarded(fn):
    """Wrap a handler (plain or generator) so NotaGenError / ValueError become gr.Error."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (NotaGenError, ValueError) as e:
                raise gr.Error(str(e)) from None
        return generator

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (NotaGenError, ValueError) as e:
            raise gr.Error(str(e)) from None
    return call


def bind(fn, backend):
    """A guarded handler with the backend bound as its first argument."""
    return functools.partial(guarded(fn), backend)
