"""The studio's Gradio app: the system strip, then the tabs in workflow order; layouts only arrange.

`launch_studio` opens the workspace, builds the app and starts it with the sharing
rules: the queue is the only way in (`api_open=False`), monitoring and run history
off, a maximum upload size, only the workspace's exports folder served, no error
details for visitors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from pipelines.fields import MAX_SCORE_MB
from pipelines.service import Backend
from studio import system
from studio.piece_view import follow_script
from studio.tabs import annotate, dataset, dpo, generate, library, train
from studio.theme import CSS, studio_theme

TABS = (dataset, annotate, train, generate, dpo, library)


@dataclass
class StudioOptions:
    workspace: Path
    host: str = "127.0.0.1"
    port: int | None = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    max_upload_mb: int = MAX_SCORE_MB


def build_app(backend: Backend) -> gr.Blocks:
    # Gradio copies served files into its cache; files older than a day are removed every hour.
    with gr.Blocks(title="NotaGen Studio", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        gr.Markdown("# NotaGen Studio\nWrite sheet music with NotaGen: build a dataset, train, generate, listen.",
                    elem_classes="studio-title")
        system.render(backend)
        with gr.Tabs() as tabs:
            for tab in TABS:
                with gr.Tab(tab.TITLE, id=tab.TITLE.lower()):
                    tab.render(backend)
        for tab in TABS:
            tab.listen(backend)
        system.listen(backend)
        library.listen_replay(backend, tabs)
        system.listen_load(backend, app)
        for tab in TABS:
            tab.listen_load(backend, app)
    return app


def launch_studio(options: StudioOptions, prevent_thread_lock: bool = False, quiet: bool = False):
    """Start the studio; returns (app, backend)."""
    backend = Backend.open(options.workspace)
    app = build_app(backend)
    app.queue(api_open=False)
    app.launch(server_name=options.host, server_port=options.port, share=options.share, auth=options.auth,
               auth_message="NotaGen Studio: log in with the user and password the studio printed or was given.",
               show_error=False, enable_monitoring=False, max_file_size=f"{options.max_upload_mb}mb",
               allowed_paths=[str(backend.generation.exports)], run_history=False,
               footer_links=["gradio", "settings"], ssr_mode=False, mcp_server=False, css=CSS, theme=studio_theme(),
               js=follow_script(), prevent_thread_lock=prevent_thread_lock, quiet=quiet)
    return app, backend
