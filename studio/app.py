"""The studio's Gradio app: five tabs; layouts only arrange, the tab modules do the rest."""
from __future__ import annotations

import gradio as gr

from .tabs import annotate, dataset, dpo, generate, train

TABS = (dataset, annotate, train, generate, dpo)


def build_app() -> gr.Blocks:
    with gr.Blocks(title="NotaGen Studio", analytics_enabled=False) as app:
        gr.Markdown("# NotaGen Studio")
        for tab in TABS:
            with gr.Tab(tab.TITLE):
                tab.render()
        for tab in TABS:
            tab.listen()
    return app
