"""The Generate tab: choose a model and a prompt, generate, watch the piece grow, then read, listen, download, rate.

The controls sit in a side column (model, prompt, count, seed, Generate / Cancel, the
estimate, the progress; sampling, limits and "continue a score" folded away); the main column
holds the score: the piece engraved as far as it is written, then each piece as a card with
its player, downloads and rating. Generation runs as a job on the GPU lane: a second request
waits and shows its place in line; a reload or a second browser finds the running job again
(studio/job_follow.py). On a page load the limits are sized to the device by the service (on
a CPU: a request of about a minute) and the estimate next to Generate follows the settings.
The request's widgets are passed to the handler by name (the GenerationSpec's field names),
and their defaults and ranges are the spec's.
"""
from __future__ import annotations

import functools
import html
from pathlib import Path

import gradio as gr

from pipelines.errors import NotaGenError
from pipelines.service import (
    CONTINUE_UPLOADS,
    Backend,
    GenerationSpec,
    Job,
    composers,
    instrumentations,
    periods,
)
from studio.controls import number, slider
from studio.guard import bind, guarded
from studio.job_follow import JobFollow, job_line
from studio.piece_view import entry_view, origin_words, preview_view, rating_line, sketch_html

TITLE = "Generate"
MAX_PIECES = 8
LIVE_CHARS = 4000  # of each piece, while it streams
NO_MODEL = ("**No model is installed yet.** The built-in demo model is not in this installation. "
            "Train one in the Train tab, or copy a NotaGen checkpoint (.pth) into the workspace's `models` folder "
            "and press refresh.")
NO_MODEL_CHOSEN = "*No model chosen: pick one in the Model box to see its periods, composers and instruments.*"
# The live text follows its newest line unless the reader scrolled up (Gradio's own autoscroll left
# the box at its top in Chromium, gradio 6.31). Only the reader's own wheel, touch, keys or mouse say
# whether to follow: the box's scroll events also come from the text growing and from this script.
FOLLOW_LIVE_TEXT = """() => {
  const box = document.querySelector('#gen-live textarea');
  if (!box) return;
  if (!box.dataset.watched) {
    box.dataset.watched = '1';
    const judge = () => setTimeout(() => {
      box.dataset.follow = box.scrollHeight - box.scrollTop - box.clientHeight < 40 ? '1' : '0';
    }, 50);
    for (const kind of ['wheel', 'touchmove', 'keyup', 'mouseup']) box.addEventListener(kind, judge, {passive: true});
  }
  if (box.dataset.follow !== '0') setTimeout(() => { box.scrollTop = box.scrollHeight; }, 30);
}"""
EMPTY = ("*Choose a model and a prompt, then press **Generate**: the score appears here as it is written, "
         "then each piece with its player and downloads.*")
# The widgets that fill a GenerationSpec, by its field names (the handler gets them by name).
SPEC_FIELDS = ("model", "period", "composer", "instrumentation", "count", "seed", "top_k", "top_p", "temperature",
               "max_patches", "max_seconds", "bar_retries", "meter", "key", "tempo", "bars", "keep_lines", "add_lines",
               "bar")
MODELS_CHOICE = ("the model's choice", "")  # an empty meter or key: the model writes its own
# What a library replay fills, and a reloaded page from the job it finds running.
REPLAYED = tuple(f for f in SPEC_FIELDS if f not in ("keep_lines", "add_lines", "bar"))
# What the Library's "variations" and "rewrite a bar" fill besides REPLAYED.
CONTINUED = ("keep_lines", "add_lines", "bar", "upload", "parent")

ui: dict = {}
job = JobFollow("generate", "generation", poll_s=0.3, elem_prefix="gen")


def render(backend: Backend) -> None:
    """Controls in a side column, the score in the main one: the piece growing, then each piece as a card."""
    spec = GenerationSpec
    with gr.Row(elem_id="gen-layout", equal_height=False):
        with gr.Column(scale=1, min_width=340, elem_id="gen-side"):
            with gr.Row(equal_height=False, elem_id="gen-model-row"):
                ui["model"] = gr.Dropdown(label="Model", allow_custom_value=True, scale=5, elem_id="gen-model")
                ui["refresh"] = gr.Button("Refresh", scale=1, min_width=70, size="sm", elem_id="gen-refresh")
            ui["model_note"] = gr.Markdown(elem_id="gen-model-note")
            ui["period"] = gr.Dropdown(label="Period", allow_custom_value=True, elem_id="gen-period")
            ui["composer"] = gr.Dropdown(label="Composer", allow_custom_value=True, elem_id="gen-composer")
            ui["instrumentation"] = gr.Dropdown(label="Instrumentation", allow_custom_value=True,
                                                elem_id="gen-instrumentation")
            with gr.Row():
                ui["count"] = gr.Slider(1, min(MAX_PIECES, backend.settings.max_pieces), value=1, step=1,
                                        label="Pieces", scale=3, elem_id="gen-count")
                ui["seed"] = number(spec, "seed", "Seed", minimum=0, scale=2, elem_id="gen-seed")
            with gr.Row():
                ui["generate"] = gr.Button("Generate", variant="primary", scale=3, elem_id="gen-button")
                job.render_cancel()
            ui["estimate"] = gr.Markdown(elem_id="gen-estimate", elem_classes="quiet-note")
            job.render_status()
            ui["notes"] = gr.Markdown(elem_id="gen-notes", elem_classes="quiet-note")
            with gr.Accordion("Sampling and limits", open=False, elem_id="gen-limits"):
                ui["top_k"] = slider(spec, "top_k", "Top-k (0: off)", step=1)
                ui["top_p"] = slider(spec, "top_p", "Top-p", step=0.05)
                ui["temperature"] = slider(spec, "temperature", "Temperature", step=0.05)
                ui["max_patches"] = number(spec, "max_patches", "Max patches per piece (0: no limit)",
                                           elem_id="gen-max-patches")
                ui["max_seconds"] = number(spec, "max_seconds", "Time limit (s)", elem_id="gen-max-seconds")
                ui["bar_retries"] = number(spec, "bar_retries", "Redraws of a bar whose voices don't line up (0: off)")
            with gr.Accordion("Meter, key and length", open=False, elem_id="gen-header"):
                with gr.Row():
                    ui["meter"] = gr.Dropdown([MODELS_CHOICE], value="", label="Meter", allow_custom_value=True,
                                              elem_id="gen-meter")
                    ui["key"] = gr.Dropdown([MODELS_CHOICE], value="", label="Key", allow_custom_value=True,
                                            elem_id="gen-key")
                with gr.Row():
                    ui["tempo"] = number(spec, "tempo", "Tempo, quarter notes a minute (0: the model's choice)",
                                         minimum=0, elem_id="gen-tempo")
                    ui["bars"] = number(spec, "bars", "Length in bars (0: the model's choice)", minimum=0,
                                        elem_id="gen-bars")
                ui["header_note"] = gr.Markdown(elem_classes="quiet-note", elem_id="gen-header-note")
            with gr.Accordion("Continue a score", open=False, elem_id="gen-continue"):
                ui["upload"] = gr.File(label="Score to continue (.abc, .musicxml, .xml, .mxl)",
                                       file_types=list(CONTINUE_UPLOADS), elem_id="gen-upload")
                with gr.Row():
                    ui["keep_lines"] = number(spec, "keep_lines", "Keep its first N lines (0: all)", minimum=0)
                    ui["add_lines"] = number(spec, "add_lines", "Lines to add", minimum=1, elem_id="gen-add-lines")
                ui["bar"] = number(spec, "bar", "Or write only bar K again, the rest kept (0: off; Pieces: the "
                                   "candidates, best first)", minimum=0, elem_id="gen-bar")
                ui["parent"] = gr.State(None)  # the library piece the score to continue is (its variations name it)
        with gr.Column(scale=2, min_width=480, elem_id="gen-main"):
            ui["empty"] = gr.Markdown(EMPTY, elem_id="gen-empty", elem_classes="quiet-note")
            with gr.Column(visible=False, elem_id="gen-preview", elem_classes="piece-card") as preview:
                gr.Markdown("**The score to continue**")
                ui["preview_score"] = gr.HTML(elem_id="gen-preview-score")
                ui["preview_audio"] = gr.Audio(label="Listen to the uploaded score", type="filepath",
                                               interactive=False, elem_id="gen-preview-audio")
            ui["preview"] = preview
            ui["sketch"] = gr.HTML(elem_id="gen-sketch")
            ui["ids"] = gr.State([])
            ui["slots"] = []
            # Variations of one piece (or a bar's candidates) stand side by side: the note at the top says so.
            with gr.Column(elem_id="gen-pieces"):
                ui["pieces_note"] = gr.HTML(elem_id="gen-pieces-note")
                for i in range(MAX_PIECES):
                    with gr.Column(visible=False, elem_id=f"gen-piece-{i}", elem_classes="piece-card",
                                   min_width=300) as group:
                        heading = gr.Markdown(elem_classes="piece-heading")
                        score = gr.HTML(elem_id=f"gen-score-{i}")
                        # the player, then the downloads at the card's full width (their names are long)
                        audio = gr.Audio(type="filepath", interactive=False, label="Listen", elem_id=f"gen-audio-{i}")
                        files = gr.File(label="Downloads: ABC, MusicXML, MIDI, WAV, PDF", file_count="multiple",
                                        interactive=False, elem_id=f"gen-files-{i}")
                        with gr.Row(elem_classes="rating-row"):
                            up = gr.Button("Thumbs up", size="sm", variant="secondary", scale=0, min_width=110,
                                           elem_id=f"gen-up-{i}")
                            down = gr.Button("Thumbs down", size="sm", variant="secondary", scale=0, min_width=110,
                                             elem_id=f"gen-down-{i}")
                            keep = gr.Button("Keep", size="sm", variant="primary", scale=0, min_width=80,
                                             visible=False, elem_id=f"gen-keep-{i}")
                            best = gr.Button("Best of these", size="sm", variant="secondary", scale=0, min_width=120,
                                             visible=False, elem_id=f"gen-best-{i}")
                            rated = gr.Markdown(elem_classes="quiet-note")
                        kept = gr.Markdown(elem_classes="quiet-note", elem_id=f"gen-kept-{i}")
                    ui["slots"].append({"group": group, "heading": heading, "score": score, "audio": audio,
                                        "files": files, "up": up, "down": down, "rated": rated, "keep": keep,
                                        "best": best, "kept": kept})
            # the text as the model writes it (the newest lines in view), below the score
            ui["live"] = gr.Textbox(label="ABC, as it is written", lines=8, max_lines=14, interactive=False,
                                    autoscroll=True, elem_id="gen-live")


SLOT_VIEWS = ("group", "heading", "score", "audio", "files", "rated", "keep", "best", "kept")
NO_SLOT = (gr.update(visible=False), "", "", None, None, "", gr.update(visible=False), gr.update(visible=False),
           "")  # a slot not in use


def slot_outputs() -> list:
    return [s[name] for s in ui["slots"] for name in SLOT_VIEWS]


def watch_outputs() -> list:
    return job.outputs(ui["live"], ui["ids"], *slot_outputs(), ui["pieces_note"], ui["sketch"], ui["notes"],
                       ui["empty"], ui["estimate"])


def continued_outputs() -> list:
    """The controls the Library's "variations" and "rewrite a bar" fill besides `replay_outputs`."""
    return [ui[k] for k in CONTINUED]


def replay_outputs() -> list:
    """The controls the Library's "replay" fills."""
    return [ui[k] for k in REPLAYED]


def listen(backend: Backend) -> None:
    model_outputs = [ui["model"], ui["model_note"], ui["period"], ui["composer"], ui["instrumentation"]]
    sizing = [ui["max_patches"], ui["max_seconds"], ui["estimate"]]
    ui["refresh"].click(bind(list_models, backend), ui["model"], model_outputs, api_name="generate_models")
    ui["model"].input(bind(choose_model, backend), ui["model"], model_outputs[1:], api_name="generate_model")
    ui["model"].input(bind(size_request, backend), [ui["model"], ui["count"]], sizing, api_name=False,
                      show_progress="hidden")
    for name in ("count", "max_patches", "max_seconds"):  # a Library replay sets them too
        ui[name].change(bind(estimate, backend), [ui["model"], ui["count"], ui["max_patches"], ui["max_seconds"]],
                        ui["estimate"], api_name=False, show_progress="hidden")
    ui["period"].input(bind(choose_period, backend), [ui["model"], ui["period"]],
                       [ui["composer"], ui["instrumentation"]], api_name="generate_period")
    ui["composer"].input(bind(choose_composer, backend), [ui["model"], ui["period"], ui["composer"]],
                         ui["instrumentation"], api_name="generate_composer")
    # The meters and keys offered follow the model and the prompt (the ones its pieces used first).
    header_inputs = [ui["model"], ui["period"], ui["composer"], ui["instrumentation"], ui["meter"], ui["key"]]
    for name in ("model", "instrumentation"):
        ui[name].change(bind(header_choices, backend), header_inputs, [ui["meter"], ui["key"], ui["header_note"]],
                        api_name=False, show_progress="hidden")
    preview = [ui["preview_score"], ui["preview_audio"], ui["preview"]]
    # The last upload's score goes first, so a refused file never shows under an earlier one's score.
    # A score of one's own has no library parent (a Library "variations" set it, and the piece's file).
    ui["upload"].upload(clear_preview, None, [*preview, ui["parent"]], api_name=False, show_progress="hidden").then(
        bind(preview_upload, backend), ui["upload"], preview, api_name="generate_preview")
    # A score removed takes its bar to write again with it: the next request is a new piece.
    ui["upload"].clear(forget_score, None, [*preview, ui["parent"], ui["bar"]], api_name=False,
                       show_progress="hidden")
    # Many visitors may wait at once: the job queue, not Gradio's, decides who runs.
    ui["generate"].click(bind(generate, backend), inputs_kwargs={k: ui[k] for k in (*SPEC_FIELDS, "upload", "parent")},
                         outputs=watch_outputs(), api_name="generate", concurrency_limit=None,
                         show_progress="hidden")
    ui["live"].change(None, None, None, js=FOLLOW_LIVE_TEXT, api_name=False, queue=False, show_progress="hidden")
    job.listen(backend)
    for i, slot in enumerate(ui["slots"]):
        for button, rating in ((slot["up"], 1), (slot["down"], -1)):
            button.click(functools.partial(guarded(rate), backend, slot=i, rating=rating), ui["ids"], slot["rated"],
                         api_name=f"generate_rate_{i}_{'up' if rating > 0 else 'down'}")
        slot["keep"].click(functools.partial(guarded(keep), backend, slot=i), ui["ids"], [slot["kept"], slot["keep"]],
                           api_name=f"generate_keep_{i}")
        slot["best"].click(functools.partial(guarded(prefer_best), backend, slot=i), ui["ids"], slot["rated"],
                           api_name=f"generate_best_{i}")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(list_models, backend), None,
             [ui["model"], ui["model_note"], ui["period"], ui["composer"], ui["instrumentation"]],
             api_name=False).then(bind(size_request, backend), [ui["model"], ui["count"]],
                                  [ui["max_patches"], ui["max_seconds"], ui["estimate"]], api_name=False,
                                  show_progress="hidden").then(
        bind(running_request, backend), None, replay_outputs(), api_name=False, show_progress="hidden")
    # The job the page shows: the running or newest generation (a reload, a second browser).
    app.load(bind(watch, backend), job.job, watch_outputs(), api_name="generate_reattach",
             concurrency_limit=None, show_progress="hidden")


# ------------------------------------------------------------------ handlers

def request_controls(backend: Backend, spec: GenerationSpec) -> list:
    """The values of the REPLAYED controls that show `spec` (a Library replay, or the job a reloaded page finds)."""
    prompts, _ = backend.models.prompts(spec.model)
    controls = {name: getattr(spec, name) for name in REPLAYED}
    controls.update(tempo=spec.tempo or 0, bars=spec.bars or 0)  # 0 in the boxes: the model's choice
    controls["model"] = gr.update(choices=[(m.label, m.ref) for m in backend.models.list()], value=spec.model)
    controls["period"] = gr.update(choices=periods(prompts), value=spec.period)
    controls["composer"] = gr.update(choices=composers(prompts, spec.period), value=spec.composer)
    controls["instrumentation"] = gr.update(choices=instrumentations(prompts, spec.period, spec.composer),
                                            value=spec.instrumentation)
    return [controls[name] for name in REPLAYED]


def running_request(backend: Backend):
    """A reloaded page shows the request of the generation running or waiting (the form as it was sent);
    with none, the form stays as the page load set it."""
    current = backend.jobs.latest("generate")
    if current is None or current.state not in ("running", "queued"):
        return [gr.skip()] * len(REPLAYED)
    return request_controls(backend, backend.generation.request_of(current))


def list_models(backend: Backend, current: str | None = None):
    choices = [(m.label, m.ref) for m in backend.models.list()]
    if not choices:
        return (gr.update(choices=[], value=None), NO_MODEL, *no_prompts())
    refs = [ref for _, ref in choices]
    model = current if current in refs else refs[0]
    return (gr.update(choices=choices, value=model), *choose_model(backend, model))


def no_prompts():
    """The three prompt dropdowns, emptied and off while no model is chosen."""
    return tuple(gr.update(choices=[], value=None, interactive=False) for _ in range(3))


def choose_model(backend: Backend, model: str | None):
    """The chosen model's note and its prompts; a cleared Model box empties the prompts, with a quiet note."""
    if not model:
        return (NO_MODEL_CHOSEN, *no_prompts())
    prompts, note = backend.models.prompts(model)
    first = periods(prompts)
    period = first[0] if first else None
    names = composers(prompts, period) if period else []
    composer = names[0] if names else None
    kinds = instrumentations(prompts, period, composer) if composer else []
    return (note and f"*{note}*", gr.update(choices=first, value=period, interactive=True),
            gr.update(choices=names, value=composer, interactive=True),
            gr.update(choices=kinds, value=kinds[0] if kinds else None, interactive=True))


def choose_period(backend: Backend, model: str | None, period: str):
    if not model:
        return no_prompts()[1:]
    prompts, _ = backend.models.prompts(model)
    names = composers(prompts, period)
    composer = names[0] if names else None
    kinds = instrumentations(prompts, period, composer) if composer else []
    return gr.update(choices=names, value=composer), gr.update(choices=kinds, value=kinds[0] if kinds else None)


def choose_composer(backend: Backend, model: str | None, period: str, composer: str):
    if not model:
        return no_prompts()[2]
    prompts, _ = backend.models.prompts(model)
    kinds = instrumentations(prompts, period, composer)
    return gr.update(choices=kinds, value=kinds[0] if kinds else None)


def header_choices(backend: Backend, model: str | None, period: str | None, composer: str | None,
                   instrumentation: str | None, meter: str | None = "", key: str | None = ""):
    """The meters and keys offered for this model and prompt (those its pieces used first, marked), keeping
    the current choice; and a note on what the model records."""
    if not (model and period and composer and instrumentation):
        return gr.update(choices=[MODELS_CHOICE]), gr.update(choices=[MODELS_CHOICE]), ""
    offered = backend.models.header_choices(model, f"{period}_{composer}_{instrumentation}")

    def options(values: list[str], seen: list[str], current: str | None):
        listed = [MODELS_CHOICE] + [(f"{v} (in its pieces)" if v in seen else v, v) for v in values]
        if current and current not in values:
            listed.append((current, current))
        return gr.update(choices=listed, value=current or "")

    notes = [n for n in (offered.note, length_words(backend.generation.length_record(model))) if n]
    return (options(offered.meters, offered.seen_meters, meter), options(offered.keys, offered.seen_keys, key),
            "  \n".join(f"*{n}*" for n in notes))


def length_words(record) -> str:
    """How close the model's pieces landed to a length asked for, and whether it keeps count; "" before any."""
    if not record.pieces:
        return ""
    n = record.pieces
    said = (f"Asked for a length, this model's {n} finished piece{'s' if n != 1 else ''} here landed within a "
            f"quarter of it in {round(record.within(0.25) * n)} (on average {record.mean_error:+.1f} bars)")
    return said + (": it keeps count." if record.keeps_count else
                   ": it does not keep count well, so expect other lengths.")


def size_request(backend: Backend, model: str | None, count=1):
    """The limits a request with `model` starts with on this device (on a CPU: about a minute), and its estimate."""
    if not model:
        return gr.skip(), gr.skip(), ""
    try:
        limits = backend.generation.defaults(model)
    except NotaGenError:  # a model that cannot be read: the Model box's own handler says why
        return gr.skip(), gr.skip(), ""
    return limits["max_patches"], limits["max_seconds"], estimate(backend, model, count, limits["max_patches"],
                                                                  limits["max_seconds"])


def estimate(backend: Backend, model: str | None, count=1, max_patches=0, max_seconds=0):
    """How long Generate will take with these settings, in words (the service's estimate)."""
    if not model:
        return ""
    try:
        found = backend.generation.estimate(model, int(count or 1), int(max_patches or 0), float(max_seconds or 0))
    except (NotaGenError, ValueError, TypeError):
        return ""
    return f"Estimate: {found.words()}"


def clear_preview():
    return "", None, gr.update(visible=False), None


def forget_score():
    """The score to continue removed: its preview, its library parent and the bar to write again go with it."""
    return *clear_preview(), 0


def preview_upload(backend: Backend, upload: str | None):
    """The uploaded score engraved, with its audio; a file that is not music is refused, naming it."""
    if not upload:
        return "", None, gr.update(visible=False)
    score, audio, _ = preview_view(backend, backend.generation.preview_score(backend.generation.read_score(upload)))
    return score, audio, gr.update(visible=True)


def generate(backend: Backend, upload: str | None = None, parent: int | None = None, **request):
    """`request`: the GenerationSpec fields, by name (a tempo or length of 0: the model's choice); `upload`: a
    score to continue; `parent`: the library piece it is (set by the Library's variations)."""
    for name in ("tempo", "bars"):
        request[name] = request.get(name) or None
    request["bar"] = int(request.get("bar") or 0)
    spec = GenerationSpec(**request, continue_abc=backend.generation.read_score(upload) if upload else "",
                          continue_name=Path(upload).name if upload else "",
                          parent_id=int(parent) if upload and parent else None)
    yield from watch(backend, backend.generation.submit(spec).id)


def watch(backend: Backend, job_id: str):
    """Follow a generation job (on a page load, the running or newest one): its place in line, the piece
    engraved as far as it goes and the ABC as it streams, why the engine went back, then each piece."""
    hidden = list(NO_SLOT) * MAX_PIECES
    sent: dict[str, str] = {}  # what the page shows already: unchanged views are not sent again

    def changed(name: str, value: str):
        if sent.get(name) == value:
            return gr.skip()
        sent[name] = value
        return value

    def running(current: Job, first: bool) -> tuple:
        live = backend.jobs.live(current.id).get("texts", {})
        text = "\n\n".join(f"--- piece {row + 1} ---\n{t[-LIVE_CHARS:]}" for row, t in sorted(live.items()))
        sketch = sketch_html(backend.generation.sketch(current.id)) if current.state == "running" else ""
        return (changed("text", text), [],
                *(hidden if first else [gr.skip()] * len(hidden)), "" if first else gr.skip(),
                changed("sketch", sketch), changed("notes", notes_text(backend.generation.notes(current.id))),
                gr.update(visible=False) if first else gr.skip(), gr.skip())

    empty = ("", [], *hidden, "", "", "", gr.update(visible=True), gr.skip())
    yield from job.follow(backend, job_id, empty, running, lambda done: finished(backend, done))


def notes_text(notes: list[str]) -> str:
    """Why the engine went back (a header written again, a bar drawn again), newest last."""
    return "**Why it went back**\n" + "\n".join(f"- {html.escape(n)}" for n in notes) if notes else ""


def finished(backend: Backend, done: Job) -> tuple:
    result = backend.generation.result(done)
    status = job_line(done, -1)
    if done.state == "done":
        status = f"finished: {result.complete} of {len(result.pieces)} piece(s) complete"
        if result.warning:
            status += f"  \n*{result.warning}*"
    entries = [backend.library.get(p.id) for p in result.pieces[:MAX_PIECES]]
    text = "\n\n".join(f"--- piece {n} ({e.status}) ---\n{e.abc or e.raw}" for n, e in enumerate(entries, 1))
    slots = []
    comparable = sum(e.abc is not None for e in entries) >= 2  # finished pieces of one prompt: "best of these"
    for i in range(MAX_PIECES):
        if i < len(entries):
            slots += [gr.update(visible=True), *piece_slot(backend, entries[i], comparable)]
        else:
            slots += NO_SLOT
    notes = notes_text(backend.generation.notes(done.id))
    return (status, text, [e.id for e in entries], *slots, side_by_side_note(backend, done, entries), "", notes,
            gr.update(visible=not entries), estimate_after(backend, done))


def piece_slot(backend: Backend, entry, comparable: bool = False) -> tuple:
    """A finished piece's card: heading (with where it came from), score, audio, downloads, rating, its
    Keep button where it is a variation with a score (or where it is kept already, what it is kept as), and
    "Best of these" where the job wrote other finished pieces to prefer it to."""
    heading, score, audio, files, rated = entry_view(backend, entry)
    origin = origin_words(entry)
    return (heading + (f"  \n*{html.escape(origin)}*" if origin else ""), score, audio, files, rated,
            gr.update(visible=entry.keepable, interactive=True),
            gr.update(visible=comparable and entry.abc is not None), kept_line(entry))


def side_by_side_note(backend: Backend, done: Job, entries: list) -> str:
    """Above variations of one piece, or a bar's candidates: what they are (and, through its class, the cards
    stand side by side); "" for new pieces, each at full width."""
    spec = backend.generation.request_of(done)
    if len(entries) < 2 or not spec.side_by_side:
        return ""
    source = f"#{spec.parent_id}" if spec.parent_id is not None else (spec.continue_name or "the score")
    if spec.bar:
        drawn = f" (of {spec.count} drawn: the others wrote no whole bar)" if spec.count > len(entries) else ""
        what = (f"{len(entries)} candidates for bar {spec.bar} of {source}{drawn}, best first (ranked by how "
                "likely the model finds the bars after it)")
    else:
        what = f"{len(entries)} variations of {source}"
    return (f'<p class="side-by-side">{html.escape(what)}, side by side: press <b>Keep</b> on the one to keep as a '
            "new version, <b>Best of these</b> on the one you prefer (DPO learns from it).</p>")


def kept_line(entry) -> str:
    """"Kept as #12, version 2 of #7: find it in the Library (Versions of #7)"; "" for a piece not kept."""
    if not entry.kept:
        return ""
    source = f"#{entry.parent_id}" if entry.parent_id is not None else entry.continued_from
    where = f" (Versions of #{entry.parent_id})" if entry.parent_id is not None else ""
    return f"**Kept** as #{entry.id}, version {entry.version} of {html.escape(source)}: find it in the Library{where}."


def slot_piece(ids: list, slot: int, doing: str) -> int:
    """The library id of the piece shown in card `slot`; NotaGenError when there is none to `doing`."""
    if not isinstance(ids, list) or not 0 <= slot < len(ids):
        raise NotaGenError(f"there is no piece in that place to {doing}")
    return int(ids[slot])


def keep(backend: Backend, ids: list, slot: int = 0):
    """Keep the piece in `slot` as a new version of the piece it came from."""
    return kept_line(backend.library.keep(slot_piece(ids, slot, "keep"))), gr.update(visible=False)


def estimate_after(backend: Backend, done: Job):
    """The estimate of the request that just ran, now from the speed it showed (it leaves the box alone when
    the request cannot be read back)."""
    params = done.params
    if "model" not in params:
        return gr.skip()
    return estimate(backend, params["model"], params.get("count", 1), params.get("max_patches", 0),
                    params.get("max_seconds", 0))
def prefer_best(backend: Backend, ids: list, slot: int = 0) -> str:
    """The piece in `slot` judged better than each other finished piece of the job (one pairwise judgement each,
    for DPO): a musician's pick among variations, or among pieces of one prompt."""
    best = slot_piece(ids, slot, "prefer")
    others = [int(i) for i in ids if int(i) != best and backend.library.get(int(i)).abc is not None]
    for other in others:
        backend.library.prefer(best, other)
    return f"judged better than {', '.join(f'#{i}' for i in others)} (pairwise judgements for DPO)"


def rate(backend: Backend, ids: list, slot: int = 0, rating: int = 0):
    return rating_line(backend.library.rate(slot_piece(ids, slot, "rate"), int(rating)).rating)
