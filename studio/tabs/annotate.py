"""The Annotate tab: Set period, composer and instrumentation for every piece."""
from __future__ import annotations

import gradio as gr

TITLE = "Annotate"


def render() -> None:
    gr.Markdown(f"### {TITLE}\nSet period, composer and instrumentation for every piece.\n\n**Coming:** this tab is not built yet.")


def listen() -> None:
    """No events yet."""
