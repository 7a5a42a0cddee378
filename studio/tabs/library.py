"""The Library tab: every generation with its model, prompt, parameters, seed, time, status and rating.

Search and filter, open a piece (score, audio, downloads, ABC), rate it or compare it with another
piece of its prompt ("this one is better": ratings and pairwise judgements feed DPO), or replay it:
the Generate tab is filled with the piece's exact settings and seed.
From a piece, write variations from a bar on, or one bar again, in Generate; a continued piece
names the score it continues, a variation the piece it came from, and a kept one its version
("#7, version 2"): "Versions of #" lists a piece and its kept versions. The table follows the library by itself:
it reloads when the tab is selected, after a rating, and, while the tab is shown, whenever
the library's revision counter has moved (asked every few seconds; a cheap query).
"""
from __future__ import annotations

import html
import json
import time

import gradio as gr

from pipelines.service import STATUSES, Backend, Generation
from studio.guard import bind, guarded
from studio.piece_view import audio_path, entry_view, origin_words, rating_line
from studio.tabs import generate

TITLE = "Library"
RATINGS = {"any": None, "thumbs up": 1, "thumbs down": -1, "not rated": 0}
HEADERS = ["id", "time", "model", "prompt", "from", "seed", "status", "rating"]
COLUMN_WIDTHS = ["6%", "15%", "11%", "26%", "16%", "7%", "9%", "10%"]
PIECE_BUTTONS = ("open", "replay", "up", "down", "vary", "rewrite")  # they act on the picked piece
# Keep acts on the opened piece too, but only a variation not kept yet can be kept: its card shows it where it can.
REFRESH_S = 3.0  # how often the shown tab asks whether the library changed
ui: dict = {}


EMPTY = "*Pick a piece in the table (or type its id) to see its score, hear it and download it.*"


def render(backend: Backend) -> None:
    """The list at the side (search, table, the picked piece's buttons), the opened piece as a card beside it."""
    with gr.Row(equal_height=False, elem_id="library-layout"):
        with gr.Column(scale=1, min_width=520, elem_id="library-side"):
            ui["text"] = gr.Textbox(label="Search (prompt, model, reason)")
            with gr.Row(equal_height=True):
                ui["status"] = gr.Dropdown(["any", *STATUSES], value="any", label="Status", scale=2)
                ui["rating"] = gr.Dropdown(list(RATINGS), value="any", label="Rating", scale=2)
                ui["versions"] = gr.Number(None, label="Versions of #", precision=0, minimum=0, scale=1, min_width=90,
                                           elem_id="library-versions")
                ui["search"] = gr.Button("Search", scale=1, min_width=80, size="sm", elem_id="library-search")
            ui["table"] = gr.Dataframe(headers=HEADERS, type="array", interactive=False, elem_id="library-table",
                                       max_height=520, column_widths=COLUMN_WIDTHS)
            with gr.Row():
                ui["pick"] = gr.Number(label="Piece id", precision=0, minimum=1, scale=1, min_width=90)
                # quiet until a piece is picked (a row of the table, or its id typed)
                with gr.Column(scale=2):
                    ui["open"] = gr.Button("Open", size="sm", interactive=False)
                    ui["replay"] = gr.Button("Replay in Generate", size="sm", interactive=False)
        with gr.Column(scale=1, min_width=480, elem_id="library-main"):
            ui["empty"] = gr.Markdown(EMPTY, elem_classes="quiet-note", elem_id="library-empty")
            with gr.Column(visible=False, elem_classes="piece-card", elem_id="library-card") as ui["card"]:
                ui["heading"] = gr.Markdown(elem_classes="piece-heading")
                ui["score"] = gr.HTML(elem_id="library-score")
                ui["audio"] = gr.Audio(type="filepath", interactive=False, label="Listen")
                ui["files"] = gr.File(label="Downloads", file_count="multiple", interactive=False)
                with gr.Row(elem_classes="rating-row"):
                    ui["up"] = gr.Button("Thumbs up", size="sm", variant="secondary", scale=0, min_width=110,
                                         interactive=False)
                    ui["down"] = gr.Button("Thumbs down", size="sm", variant="secondary", scale=0, min_width=110,
                                           interactive=False)
                    ui["keep"] = gr.Button("Keep as a version", size="sm", variant="secondary", scale=0,
                                           min_width=140, visible=False, elem_id="library-keep")
                    ui["rated"] = gr.Markdown(elem_classes="quiet-note")
                ui["kept"] = gr.Markdown(elem_classes="quiet-note", elem_id="library-kept")
                with gr.Group(elem_id="library-compare-group"):
                    with gr.Row(equal_height=True):
                        ui["compare"] = gr.Dropdown(label="Compare with...", elem_id="library-compare", scale=3)
                        with gr.Column(scale=1, min_width=150):
                            ui["better"] = gr.Button("This one is better", size="sm", interactive=False,
                                                     elem_id="library-better")
                            ui["worse"] = gr.Button("The other is better", size="sm", interactive=False,
                                                    elem_id="library-worse")
                    ui["other_audio"] = gr.Audio(type="filepath", interactive=False, label="Listen to the other piece",
                                                 visible=False, elem_id="library-other-audio")
                    ui["judged"] = gr.Markdown(elem_id="library-judged", elem_classes="quiet-note")
                    with gr.Row(equal_height=True):
                        ui["judgement"] = gr.Dropdown(label="Judgement to remove", elem_id="library-judgement",
                                                      scale=3, visible=False)
                        ui["unjudge"] = gr.Button("Remove judgement", size="sm", scale=1, min_width=150,
                                                  interactive=False, visible=False, elem_id="library-unjudge")
                ui["vary_bar"], ui["vary_count"], ui["vary"] = bar_request_row(
                    "library-vary", "Vary from bar", "Variations", "Write variations in Generate")
                ui["rewrite_bar"], ui["candidates"], ui["rewrite"] = bar_request_row(
                    "library-rewrite", "Rewrite bar", "Candidates", "Write the bar again in Generate")
                with gr.Accordion("ABC and parameters", open=False):
                    ui["abc"] = gr.Code(label="ABC", lines=12)
                    ui["params"] = gr.JSON(label="Parameters")
    ui["seen"] = gr.State(-1)  # the library revision the table shows
    ui["timer"] = gr.Timer(REFRESH_S, active=False)  # on while the tab is shown


def bar_request_row(elem_id: str, bar_label: str, count_label: str, button_label: str) -> tuple:
    """A row asking for pieces from a bar of the opened piece: (the bar, how many, the button that sets them up
    in Generate, `elem_id`-button)."""
    with gr.Row(equal_height=True, elem_id=elem_id):
        bar = gr.Number(2, label=bar_label, precision=0, minimum=2, min_width=90)
        count = gr.Number(4, label=count_label, precision=0, minimum=1, maximum=generate.MAX_PIECES, min_width=90)
        button = gr.Button(button_label, size="sm", interactive=False, elem_id=f"{elem_id}-button")
    return bar, count, button


def detail_outputs() -> list:
    return [ui[k] for k in DETAIL_OUTPUTS]


COMPARE_OUTPUTS = ("compare", "other_audio", "judged", "judgement")  # compare_view's, in order
DETAIL_OUTPUTS = ("heading", "score", "audio", "files", "rated", "kept", "keep", "abc", "params", "card", "empty",
                  *COMPARE_OUTPUTS)  # open_piece's, in order
JUDGED_OUTPUTS = ("judged", "judgement", "unjudge")  # judgements_view's, in order


def listen(backend: Backend) -> None:
    filters = [ui["text"], ui["status"], ui["rating"], ui["versions"]]
    ui["search"].click(bind(search, backend), filters, ui["table"], api_name="library_search")
    ui["text"].submit(bind(search, backend), filters, ui["table"], api_name=False)
    ui["versions"].submit(bind(search, backend), filters, ui["table"], api_name=False)
    ui["table"].select(pick_row, ui["table"], ui["pick"], api_name=False).then(
        bind(open_piece, backend), ui["pick"], detail_outputs(), api_name=False)
    ui["pick"].change(piece_buttons, ui["pick"], [ui[k] for k in PIECE_BUTTONS], api_name=False,
                      show_progress="hidden")
    ui["open"].click(bind(open_piece, backend), ui["pick"], detail_outputs(), api_name="library_open")
    follow = {"fn": bind(refresh, backend), "inputs": [ui["seen"], *filters], "outputs": [ui["table"], ui["seen"]],
              "api_name": False, "show_progress": "hidden"}
    ui["up"].click(bind(rate_up, backend), ui["pick"], ui["rated"], api_name="library_rate_up").then(**follow)
    ui["down"].click(bind(rate_down, backend), ui["pick"], ui["rated"], api_name="library_rate_down").then(**follow)
    ui["keep"].click(bind(keep, backend), ui["pick"], [ui["kept"], ui["keep"]], api_name="library_keep").then(**follow)
    ui["timer"].tick(**follow, concurrency_limit=None)
    ui["compare"].change(bind(compare_picked, backend), ui["compare"], [ui["other_audio"], ui["better"], ui["worse"]],
                         api_name=False, show_progress="hidden")
    judged = [ui[k] for k in JUDGED_OUTPUTS]
    ui["better"].click(bind(prefer_this, backend), [ui["pick"], ui["compare"]], judged, api_name="library_better")
    ui["worse"].click(bind(prefer_other, backend), [ui["pick"], ui["compare"]], judged, api_name="library_worse")
    ui["judgement"].change(judgement_picked, ui["judgement"], ui["unjudge"], api_name=False,
                           show_progress="hidden")
    ui["unjudge"].click(bind(remove_judgement, backend), [ui["pick"], ui["judgement"]], judged,
                        api_name="library_remove_judgement")


def listen_replay(backend: Backend, tabs) -> None:
    """Replay needs the Generate tab's controls and the tab switcher, which exist once every tab is built."""
    ui["tabs"] = tabs

    def selected(seen, text, status, rating, versions, event: gr.SelectData):  # Gradio fills `event` (annotated)
        return tab_selected(backend, seen, text, status, rating, event, versions)

    tabs.select(selected, [ui["seen"], ui["text"], ui["status"], ui["rating"], ui["versions"]],
                [ui["timer"], ui["table"], ui["seen"]], api_name=False, show_progress="hidden")
    ui["replay"].click(bind(replay, backend), ui["pick"], [*generate.replay_outputs(), tabs, ui["timer"]],
                       api_name="library_replay")
    g = generate.ui
    filled = [*generate.replay_outputs(), *generate.continued_outputs(), tabs, ui["timer"]]
    preview = {"fn": bind(generate.preview_upload, backend), "inputs": g["upload"],
               "outputs": [g["preview_score"], g["preview_audio"], g["preview"]], "api_name": False}
    ui["vary"].click(bind(vary, backend), [ui["pick"], ui["vary_bar"], ui["vary_count"]], filled,
                     api_name="library_vary").then(**preview)
    ui["rewrite"].click(bind(rewrite, backend), [ui["pick"], ui["rewrite_bar"], ui["candidates"]], filled,
                        api_name="library_rewrite").then(**preview)


def listen_load(backend: Backend, app) -> None:
    app.load(bind(refresh, backend), [ui["seen"], ui["text"], ui["status"], ui["rating"], ui["versions"]],
             [ui["table"], ui["seen"]], api_name=False)


def search(backend: Backend, text: str = "", status: str = "any", rating: str = "any", versions=None):
    """The table's rows, newest first; `versions`: a piece id, to list that piece and its kept versions."""
    entries = backend.library.search(text or "", "" if status in ("any", None) else status,
                                     RATINGS.get(rating or "any"), versions_of=int(versions) if versions else None)
    mark = {1: "up", -1: "down", 0: ""}
    return [[e.id, time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created)), e.model, prompt_words(e),
             came_from(e), e.seed, e.status, mark.get(e.rating, "")] for e in entries]


def came_from(entry: Generation) -> str:
    """The table's "from": the piece a variation came from ("#7", "#7 bar 5": that bar written again; "v2 of #7":
    kept as its version 2) or the score a continuation continues (its file name); "" for a new piece."""
    source = f"#{entry.parent_id}" if entry.parent_id is not None else entry.continued_from
    if not source:
        return ""
    bar = entry.parameters.get("bar")
    where = source + (f" bar {bar}" if bar else "")
    return f"v{entry.version} of {where}" if entry.kept else where


def prompt_words(entry: Generation) -> str:
    """"Baroque / Bach, Johann Sebastian / Choral" (the prompt's file form when its parts are missing)."""
    return " / ".join(p for p in (entry.period, entry.composer, entry.instrumentation) if p) or entry.prompt


def refresh(backend: Backend, seen: int, text: str = "", status: str = "any", rating: str = "any", versions=None):
    """(table, revision): the search again when the library changed since revision `seen`, else nothing to send."""
    now = backend.library.revision()
    if now == seen:
        return gr.skip(), gr.skip()
    return search(backend, text, status, rating, versions), now


def tab_selected(backend: Backend, seen: int, text: str, status: str, rating: str, event: gr.SelectData,
                 versions=None):
    """Selecting this tab reloads the table (when the library changed) and starts its timer; another tab stops it."""
    if event.value != TITLE:
        return gr.update(active=False), gr.skip(), gr.skip()
    return gr.update(active=True), *guarded(refresh)(backend, seen, text, status, rating, versions)


def piece_buttons(entry_id) -> list:
    return [gr.update(interactive=bool(entry_id))] * len(PIECE_BUTTONS)


def pick_row(table, event: gr.SelectData):
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    return table[row][0] if table and 0 <= row < len(table) else None


def open_piece(backend: Backend, entry_id):
    if not entry_id:
        return ("", "", None, None, "", "", gr.update(visible=False), "", None, gr.update(visible=False),
                gr.update(visible=True), *compare_view(backend, None))
    entry = backend.library.get(int(entry_id))
    heading, score, audio, files, rated = entry_view(backend, entry)
    origin = origin_words(entry)
    if origin:
        heading += f" - {html.escape(origin)}"
    params = {**entry.parameters, "seed": entry.seed, "model": entry.model, "prompt": entry.prompt,
              "made": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created))}
    keep = gr.update(visible=entry.keepable, interactive=entry.keepable)
    return (heading, score, audio, files, rated, generate.kept_line(entry), keep, entry.abc or entry.raw,
            json.loads(json.dumps(params)), gr.update(visible=True), gr.update(visible=False),
            *compare_view(backend, entry))


def rate_up(backend: Backend, entry_id):
    return rate(backend, entry_id, 1)


def rate_down(backend: Backend, entry_id):
    return rate(backend, entry_id, -1)


def rate(backend: Backend, entry_id, rating: int) -> str:
    if not entry_id:
        return "open a piece first"
    return rating_line(backend.library.rate(int(entry_id), rating).rating)


def keep(backend: Backend, entry_id) -> tuple:
    """(the kept line, the Keep button): kept once, the button goes."""
    if not entry_id:
        return "open a piece first", gr.update()
    return generate.kept_line(backend.library.keep(int(entry_id))), gr.update(visible=False)


def compare_view(backend: Backend, entry: Generation | None) -> tuple:
    """(the "Compare with..." choices, the other piece's player, the piece's judgements, the judgement picker): the
    other finished pieces of its prompt, newest first; nothing picked."""
    if entry is None:
        return (gr.update(choices=[], value=None), gr.update(value=None, visible=False), "",
                gr.update(choices=[], visible=False))
    if entry.abc is None:
        compare = gr.update(choices=[], value=None, info="only a finished piece can be compared")
    else:
        others = backend.library.comparable(entry.id)
        compare = gr.update(choices=[(piece_label(e), e.id) for e in others], value=None,
                            info=(f"{len(others)} other finished piece{'s' if len(others) != 1 else ''} of this prompt"
                                  if others else "no other finished piece of this prompt yet"))
    judged, judgement, _ = judgements_view(backend, entry.id)
    return compare, gr.update(value=None, visible=False), judged, judgement


def piece_label(entry: Generation) -> str:
    """"#12 - seed 5 - 2026-12-03 04:10 - thumbs up": a piece among those of one prompt."""
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created))
    rated = {1: " - thumbs up", -1: " - thumbs down"}.get(entry.rating, "")
    return f"#{entry.id} - seed {entry.seed} - {made}{rated}"


def judgements_view(backend: Backend, entry_id: int) -> tuple:
    """(the piece's judgements in words, the judgement picker, the Remove button), newest first; the picker and
    the button only where there is one."""
    judgements = backend.library.judgements(entry_id)
    if not judgements:
        return ("Not compared with another piece yet.", gr.update(choices=[], value=None, visible=False),
                gr.update(interactive=False, visible=False))
    said = [(f"{'better' if j.better == entry_id else 'worse'} than #{j.other(entry_id)} "
             f"(judged {time.strftime('%Y-%m-%d %H:%M', time.localtime(j.created))})", j.id) for j in judgements]
    lines = "\n".join(f"- This piece is {words}" for words, _ in said)
    return (f"**Compared** ({len(said)}):\n{lines}", gr.update(choices=said, value=None, visible=True),
            gr.update(interactive=False, visible=True))


def compare_picked(backend: Backend, other):
    """The other piece's player and the two buttons, once a piece to compare with is picked."""
    if not other:
        return gr.update(value=None, visible=False), gr.update(interactive=False), gr.update(interactive=False)
    audio = audio_path(backend, backend.library.get(int(other)).files)  # None: a piece with no score made
    return gr.update(value=audio, visible=bool(audio)), gr.update(interactive=True), gr.update(interactive=True)


def judgement_picked(judgement_id):
    """Remove waits for a judgement to be picked."""
    return gr.update(interactive=bool(judgement_id))


def prefer_this(backend: Backend, entry_id, other):
    return prefer(backend, entry_id, other, this_is_better=True)


def prefer_other(backend: Backend, entry_id, other):
    return prefer(backend, entry_id, other, this_is_better=False)


def prefer(backend: Backend, entry_id, other, this_is_better: bool) -> tuple:
    if not entry_id:
        raise gr.Error("open a piece first")
    if not other:
        raise gr.Error("pick a piece to compare with first")
    this, that = int(entry_id), int(other)
    backend.library.prefer(*((this, that) if this_is_better else (that, this)))
    return judgements_view(backend, this)


def remove_judgement(backend: Backend, entry_id, judgement_id) -> tuple:
    if not entry_id or not judgement_id:
        raise gr.Error("pick a judgement to remove first")
    backend.library.remove_judgement(int(judgement_id))
    return judgements_view(backend, int(entry_id))


def vary(backend: Backend, entry_id, from_bar, count):
    """The Generate tab set to write variations of the piece from a bar on: its request with new seeds, the
    piece as the score to continue (its first bars kept), then that tab; the score's preview follows."""
    if not entry_id:
        raise gr.Error("open a piece first")
    return fill_generate(backend, *backend.generation.variations(int(entry_id), int(from_bar or 2), int(count or 1)))


def rewrite(backend: Backend, entry_id, bar, candidates):
    """The Generate tab set to write one bar of the piece again: its request with new seeds, the piece as the
    score (every other bar kept), as many pieces as candidates, then that tab; the score's preview follows."""
    if not entry_id:
        raise gr.Error("open a piece first")
    return fill_generate(backend, *backend.generation.bar_rewrite(int(entry_id), int(bar or 2), int(candidates or 1)))


def fill_generate(backend: Backend, spec, abc_file) -> dict:
    """The Generate tab's controls set to `spec`, continuing the library piece in `abc_file`, then that tab."""
    controls = dict(zip(generate.REPLAYED, generate.request_controls(backend, spec)))
    controls.update(keep_lines=spec.keep_lines, add_lines=spec.add_lines, bar=spec.bar, upload=str(abc_file),
                    parent=spec.parent_id)
    return {**{generate.ui[name]: value for name, value in controls.items()},
            ui["tabs"]: gr.Tabs(selected="generate"), ui["timer"]: gr.update(active=False)}


def replay(backend: Backend, entry_id):
    """The Generate tab's controls set to the piece's request, by control (no order to keep), then that tab."""
    if not entry_id:
        raise gr.Error("open a piece first")
    controls = generate.request_controls(backend, backend.generation.replay(int(entry_id)))
    return {**{generate.ui[name]: value for name, value in zip(generate.REPLAYED, controls)},
            ui["tabs"]: gr.Tabs(selected="generate"),
            ui["timer"]: gr.update(active=False)}  # a tab chosen here sends no select event
