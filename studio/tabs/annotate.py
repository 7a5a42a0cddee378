"""The Annotate tab: period, composer and instrumentation of every piece of a dataset.

The table is editable; a selection of pieces can be set at once or take the score's
own suggestions; "Check" validates (ASCII, NotaGen-X vocabulary warnings); "Save"
rewrites the headers of the pieces that changed. Selecting a row shows that piece's score.
The controls are a side column; the table and the score have the main column.
"""
from __future__ import annotations

import gradio as gr

from pipelines.service import Backend, PieceLabels
from studio.guard import bind
from studio.piece_view import preview_view

TITLE = "Annotate"
HEADERS = PieceLabels.columns()  # piece, period, composer, instrumentation, split, suggested, warnings
# piece, period, composer, instrumentation, split, suggested, warnings: the labels wide, the split narrow
WIDTHS = ["15%", "10%", "17%", "15%", "8%", "22%", "13%"]
ui: dict = {}


def render(backend: Backend) -> None:
    with gr.Row():
        with gr.Column(scale=1, min_width=280):  # choose, set, check and save; the piece picked in the table
            ui["dataset"] = gr.Dropdown(label="Dataset", allow_custom_value=True)
            ui["load"] = gr.Button("Load again", size="sm")  # choosing a dataset loads it
            with gr.Accordion("Set several pieces at once", open=False):
                ui["pieces"] = gr.Dropdown(label="Pieces", multiselect=True, allow_custom_value=True)
                ui["period"] = gr.Textbox(label="Period")
                ui["composer"] = gr.Textbox(label="Composer (Last, First)")
                ui["instrumentation"] = gr.Textbox(label="Instrumentation")
                ui["bulk"] = gr.Button("Set for these pieces", size="sm")
                ui["suggest"] = gr.Button("Use the scores' suggestions for these pieces", size="sm")
            with gr.Row():
                ui["check"] = gr.Button("Check")
                ui["save"] = gr.Button("Save", variant="primary")
            ui["status"] = gr.Markdown(elem_id="annotate-status")
            ui["picked"] = gr.Textbox(label="Piece shown (select a row)", interactive=False)
            ui["audio"] = gr.Audio(type="filepath", interactive=False, label="Listen")
        with gr.Column(scale=4):
            ui["table"] = gr.Dataframe(headers=HEADERS, type="array", interactive=True, static_columns=[0, 4, 5, 6],
                                       label="Pieces (edit period, composer, instrumentation)", wrap=True,
                                       column_widths=WIDTHS, max_height=560, elem_id="annotate-table")
            ui["score"] = gr.HTML(elem_id="annotate-score")


def listen(backend: Backend) -> None:
    loaded = [ui["table"], ui["pieces"], ui["status"]]
    ui["load"].click(bind(load, backend), ui["dataset"], loaded, api_name="annotate_load")
    ui["dataset"].select(bind(load, backend), ui["dataset"], loaded, api_name=False)
    ui["bulk"].click(bulk_set, [ui["table"], ui["pieces"], ui["period"], ui["composer"], ui["instrumentation"]],
                     ui["table"], api_name=False)
    ui["suggest"].click(bind(use_suggestions, backend), [ui["dataset"], ui["table"], ui["pieces"]],
                        [ui["table"], ui["status"]], api_name="annotate_suggest")
    ui["check"].click(bind(check, backend), ui["table"], [ui["table"], ui["status"]], api_name="annotate_check")
    ui["save"].click(bind(save, backend), [ui["dataset"], ui["table"]], [ui["table"], ui["pieces"], ui["status"]],
                     api_name="annotate_save")
    ui["table"].select(pick_piece, ui["table"], ui["picked"], api_name=False).then(
        bind(preview, backend), [ui["dataset"], ui["picked"]], [ui["score"], ui["audio"]], api_name="annotate_preview")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(list_datasets, backend), None, ui["dataset"], api_name=False).then(
        bind(load, backend), ui["dataset"], [ui["table"], ui["pieces"], ui["status"]], api_name=False)


def list_datasets(backend: Backend):
    names = backend.datasets.built()
    return gr.update(choices=names, value=names[0] if names else None)


def rows_of(backend: Backend, name: str) -> list[list]:
    return [[getattr(r, h) for h in HEADERS] for r in backend.datasets.pieces(name)]


def load(backend: Backend, name: str):
    """The dataset's pieces in the table (shown when the tab opens and when a dataset is chosen)."""
    if not name:
        return [], gr.update(choices=[], value=[]), "no dataset yet: build one in the Dataset tab"
    rows = rows_of(backend, name)
    names = [r[0] for r in rows]
    return rows, gr.update(choices=names, value=[]), f"{len(rows)} pieces"


def bulk_set(table, pieces, period, composer, instrumentation):
    chosen = set(pieces or [])
    for row in table or []:
        if row[0] in chosen:
            for col, value in ((1, period), (2, composer), (3, instrumentation)):
                if value and value.strip():
                    row[col] = value.strip()
    return table


def use_suggestions(backend: Backend, name: str, table, pieces):
    """Put each chosen piece's suggested labels in the table (not saved yet); says how many pieces changed."""
    suggested = backend.datasets.suggestions(name)
    chosen = set(pieces or [r[0] for r in table or []])
    changed = 0
    for row in table or []:
        s = suggested.get(row[0])
        if s and row[0] in chosen:
            before = list(row[1:4])
            for col, key in ((1, "period"), (2, "composer"), (3, "instrumentation")):
                if getattr(s, key):
                    row[col] = getattr(s, key)
            changed += row[1:4] != before
    if not changed:
        return table, (f"nothing to change for these {len(chosen)} piece(s): their labels already are what "
                       "the scores suggest, or the scores suggest nothing")
    return table, f"{changed} piece(s) now show the scores' suggestions; Save to keep them"


def check(backend: Backend, table):
    flagged = 0
    for row in table or []:
        warnings = backend.datasets.check_labels(str(row[1] or ""), str(row[2] or ""), str(row[3] or ""))
        row[6] = "; ".join(warnings)
        flagged += bool(warnings)
    return table, f"{flagged} of {len(table or [])} pieces have warnings (they can still be trained on)"


def save(backend: Backend, name: str, table):
    rows = [PieceLabels(*(str(v or "") for v in row[:4])) for row in table or []]
    changed = backend.datasets.save_labels(name, rows)
    table, pieces, _ = load(backend, name)
    if not changed:
        return table, pieces, "nothing to save: every piece's labels are as they were"
    return table, pieces, f"saved: {changed} piece(s) changed; their headers were rewritten"


def pick_piece(table, event: gr.SelectData):
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    return str(table[row][0]) if table and 0 <= row < len(table) else ""


def preview(backend: Backend, name: str, piece: str):
    if not piece:
        return "", None
    abc = backend.datasets.piece_abc(name, piece)
    score, audio, _ = preview_view(backend, backend.generation.preview_score(abc))
    return score, audio
