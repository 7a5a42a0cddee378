"""The Train tab: Fine-tune NotaGen-X or a demo model on your dataset."""
from __future__ import annotations

import gradio as gr

TITLE = "Train"


def render() -> None:
    gr.Markdown(f"### {TITLE}\nFine-tune NotaGen-X or a demo model on your dataset.\n\n**Coming:** this tab is not built yet.")


def listen() -> None:
    """No events yet."""
