"""The Generate tab: Choose a prompt, generate, read, listen and export."""
from __future__ import annotations

import gradio as gr

TITLE = "Generate"


def render() -> None:
    gr.Markdown(f"### {TITLE}\nChoose a prompt, generate, read, listen and export.\n\n**Coming:** this tab is not built yet.")


def listen() -> None:
    """No events yet."""
