"""The Library tab: every generation with its model, prompt, parameters, seed, time, status and rating.

Search and filter, open a piece (score, audio, downloads, ABC), rate it (ratings feed
DPO), or replay it: the Generate tab is filled with the piece's exact settings and seed.
"""
from __future__ import annotations

import json
import time

import gradio as gr

from pipelines.service import STATUSES, Backend, composers, instrumentations, periods
from studio.guard import bind
from studio.piece_view import entry_view, rating_line
from studio.tabs import generate

TITLE = "Library"
RATINGS = {"any": None, "thumbs up": 1, "thumbs down": -1, "not rated": 0}
HEADERS = ["id", "time", "model", "prompt", "seed", "status", "rating"]
ui: dict = {}


def render(backend: Backend) -> None:
    with gr.Row():
        ui["text"] = gr.Textbox(label="Search (prompt, model, reason)", scale=3)
        ui["status"] = gr.Dropdown(["any", *STATUSES], value="any", label="Status", scale=1)
        ui["rating"] = gr.Dropdown(list(RATINGS), value="any", label="Rating", scale=1)
        ui["search"] = gr.Button("Search", scale=1)
    ui["table"] = gr.Dataframe(headers=HEADERS, type="array", interactive=False, elem_id="library-table")
    with gr.Row():
        ui["pick"] = gr.Number(label="Piece id", precision=0, minimum=1, scale=1)
        ui["open"] = gr.Button("Open", scale=1)
        ui["replay"] = gr.Button("Replay in Generate", scale=1)
        ui["up"] = gr.Button("Thumbs up", scale=1)
        ui["down"] = gr.Button("Thumbs down", scale=1)
    ui["heading"] = gr.Markdown()
    ui["rated"] = gr.Markdown()
    ui["score"] = gr.HTML(elem_id="library-score")
    ui["audio"] = gr.Audio(type="filepath", interactive=False, label="Listen")
    ui["files"] = gr.File(label="Downloads", file_count="multiple", interactive=False)
    with gr.Accordion("ABC and parameters", open=False):
        ui["abc"] = gr.Code(label="ABC", lines=12)
        ui["params"] = gr.JSON(label="Parameters")


def detail_outputs() -> list:
    return [ui[k] for k in ("heading", "score", "audio", "files", "rated", "abc", "params")]


def listen(backend: Backend) -> None:
    filters = [ui["text"], ui["status"], ui["rating"]]
    ui["search"].click(bind(search, backend), filters, ui["table"], api_name="library_search")
    ui["text"].submit(bind(search, backend), filters, ui["table"], api_name=False)
    ui["table"].select(pick_row, ui["table"], ui["pick"], api_name=False).then(
        bind(open_piece, backend), ui["pick"], detail_outputs(), api_name=False)
    ui["open"].click(bind(open_piece, backend), ui["pick"], detail_outputs(), api_name="library_open")
    ui["up"].click(bind(rate_up, backend), ui["pick"], ui["rated"], api_name="library_rate_up")
    ui["down"].click(bind(rate_down, backend), ui["pick"], ui["rated"], api_name="library_rate_down")


def listen_replay(backend: Backend, tabs) -> None:
    """Replay needs the Generate tab's controls and the tab switcher, which exist once every tab is built."""
    ui["tabs"] = tabs
    ui["replay"].click(bind(replay, backend), ui["pick"], [*generate.replay_outputs(), tabs], api_name="library_replay")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(search, backend), None, ui["table"], api_name=False)


def search(backend: Backend, text: str = "", status: str = "any", rating: str = "any"):
    entries = backend.library.search(text or "", "" if status in ("any", None) else status,
                                     RATINGS.get(rating or "any"))
    mark = {1: "up", -1: "down", 0: ""}
    return [[e.id, time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created)), e.model, e.prompt, e.seed,
             e.status, mark.get(e.rating, "")] for e in entries]


def pick_row(table, event: gr.SelectData):
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    return table[row][0] if table and 0 <= row < len(table) else None


def open_piece(backend: Backend, entry_id):
    if not entry_id:
        return "", "", None, None, "", "", None
    entry = backend.library.get(int(entry_id))
    heading, score, audio, files, rated = entry_view(backend, entry)
    params = {**entry.parameters, "seed": entry.seed, "model": entry.model, "prompt": entry.prompt,
              "made": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created))}
    return heading, score, audio, files, rated, entry.abc or entry.raw, json.loads(json.dumps(params))


def rate_up(backend: Backend, entry_id):
    return rate(backend, entry_id, 1)


def rate_down(backend: Backend, entry_id):
    return rate(backend, entry_id, -1)


def rate(backend: Backend, entry_id, rating: int) -> str:
    if not entry_id:
        return "open a piece first"
    return rating_line(backend.library.rate(int(entry_id), rating).rating)


def replay(backend: Backend, entry_id):
    """The Generate tab's controls set to the piece's request, by control (no order to keep), then that tab."""
    if not entry_id:
        raise gr.Error("open a piece first")
    spec = backend.generation.replay(int(entry_id))
    models = [(m.label, m.ref) for m in backend.models.list()]
    prompts, _ = backend.models.prompts(spec.model)
    controls = {name: getattr(spec, name) for name in generate.REPLAYED}
    controls["model"] = gr.update(choices=models, value=spec.model)
    controls["period"] = gr.update(choices=periods(prompts), value=spec.period)
    controls["composer"] = gr.update(choices=composers(prompts, spec.period), value=spec.composer)
    controls["instrumentation"] = gr.update(choices=instrumentations(prompts, spec.period, spec.composer),
                                            value=spec.instrumentation)
    return {**{generate.ui[name]: value for name, value in controls.items()}, ui["tabs"]: gr.Tabs(selected="generate")}
