"""The Dataset tab: Turn a folder of MusicXML scores into NotaGen training data."""
from __future__ import annotations

import gradio as gr

TITLE = "Dataset"


def render() -> None:
    gr.Markdown(f"### {TITLE}\nTurn a folder of MusicXML scores into NotaGen training data.\n\n**Coming:** this tab is not built yet.")


def listen() -> None:
    """No events yet."""
