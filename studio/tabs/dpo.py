"""The DPO tab: Improve a model with CLaMP-DPO preference optimisation."""
from __future__ import annotations

import gradio as gr

TITLE = "DPO"


def render() -> None:
    gr.Markdown(f"### {TITLE}\nImprove a model with CLaMP-DPO preference optimisation.\n\n**Coming:** this tab is not built yet.")


def listen() -> None:
    """No events yet."""
