"""How a piece is shown in the Generate and Library tabs: a heading, the score pages, the audio, the downloads;
and a piece being written, engraved as far as it goes.

Score pages are shown as <img> data URIs of Verovio's SVG, so nothing in a page can run
as script; audio and downloads are files in the workspace's exports folder, the only
folder the studio serves. A piece with follow data (pipelines/render/follow.py) carries it,
as escaped JSON, on its score; score_follow.js, loaded once with the app, lights the notes
sounding in the player of the same card over the page images and plays from a clicked bar.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from pipelines.errors import NotaGenError
from pipelines.service import Backend, Generation, PieceFiles, Sketch

DOWNLOADS = ("abc", "musicxml", "mid", "wav", "pdf", "raw")
RATING = {1: "rated: thumbs up", -1: "rated: thumbs down", 0: "not rated"}


def rating_line(rating: int) -> str:
    return RATING.get(rating, "")


def page_image(svg: bytes, css_class: str = "score-page") -> str:
    """One engraved page as an <img> (a data URI: nothing in the SVG can run as script)."""
    return (f'<img class="{css_class}" alt="score page" style="width:100%;background:white" '
            f'src="data:image/svg+xml;base64,{base64.b64encode(svg).decode("ascii")}">')


def follow_script() -> str:
    """The page script that makes scores follow their players (for `launch(js=...)`, run once per page)."""
    return "() => {\n" + (Path(__file__).parent / "score_follow.js").read_text(encoding="utf-8") + "\n}"


def score_html(backend: Backend, svg_pages: list[str], problems: list[str] = (), error: str = "",
               follow: str | None = None) -> str:
    """The pages of a piece; with its follow data (`follow`: the exported .follow.json), each page in a sheet
    the notes light up on while it plays."""
    parts = []
    if error:
        parts.append(f'<p class="score-error">{html.escape(error)}</p>')
    pages = [page_image(backend.generation.exported_file(rel).read_bytes()) for rel in svg_pages]
    data, why = follow_data(backend, follow) if follow and pages else (None, "")
    if data is not None:
        sheets = "".join(f'<div class="score-sheet" data-page="{n}">{page}</div>' for n, page in enumerate(pages, 1))
        parts.append(f'<div class="score-follow" data-follow="{html.escape(data, quote=True)}">{sheets}</div>')
    else:
        parts += pages
    if why:
        parts.append(f'<p class="quiet-note">The score cannot follow the audio: {html.escape(why)}</p>')
    if problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        parts.append(f"<details><summary>Score notes ({len(problems)})</summary><ul>{items}</ul></details>")
    return "".join(parts)


def follow_data(backend: Backend, rel: str) -> tuple[str | None, str]:
    """(the piece's follow data as compact JSON, "") or (None, why it cannot be read)."""
    try:
        data = json.loads(backend.generation.exported_file(rel).read_text(encoding="utf-8"))
    except (NotaGenError, OSError, ValueError) as e:
        return None, f"{Path(rel).name} cannot be read ({e})"
    return json.dumps(data, separators=(",", ":")), ""


def audio_path(backend: Backend, files: dict) -> str | None:
    return str(backend.generation.exported_file(files["wav"])) if files.get("wav") else None


def download_paths(backend: Backend, files: dict) -> list[str]:
    return [str(backend.generation.exported_file(files[k])) for k in DOWNLOADS if files.get(k)]


def heading(entry: Generation) -> str:
    status = "ok" if entry.status == "ok" else f"{entry.status}: {entry.reason}"
    prompt = " / ".join(p for p in (entry.period, entry.composer, entry.instrumentation) if p) or entry.prompt
    return (f"**#{entry.id}** {html.escape(prompt)} - seed {entry.seed} - {status} "
            f"({entry.seconds:.1f} s, model {html.escape(entry.model)})")


def entry_view(backend: Backend, entry: Generation) -> tuple[str, str, str | None, list[str], str]:
    """(heading, score html, audio path, download paths, rating line) of a library entry."""
    files = dict(entry.files)
    svg = files.pop("svg", []) or []
    error = "" if entry.status == "ok" else f"no score: {entry.reason or entry.status}"
    if entry.status == "ok" and not files.get("wav"):
        error = "the score could not be made for this piece; the ABC is in the downloads"
    score = score_html(backend, svg, error=error, follow=files.get("follow"))
    return heading(entry), score, audio_path(backend, files), download_paths(backend, files), rating_line(entry.rating)


def preview_view(backend: Backend, piece: PieceFiles) -> tuple[str, str | None, list[str]]:
    """(score html, audio path, downloads) of an uploaded score's preview."""
    return (score_html(backend, piece.svg_pages, piece.problems, piece.error, piece.files.get("follow")),
            audio_path(backend, piece.files),
            download_paths(backend, piece.files))


def sketch_html(sketches: list[Sketch]) -> str:
    """Pieces being written, each engraved as far as it goes (its whole lines), with how far that is."""
    parts = []
    for sketch in sketches:
        bars = f"{sketch.lines} bar{'s' if sketch.lines != 1 else ''}"
        note = f" - {html.escape(sketch.error)}" if sketch.error else ""
        parts.append(f'<div class="sketch"><p class="sketch-heading">Piece {sketch.row + 1} so far: {bars}{note}</p>'
                     + "".join(page_image(svg.encode("utf-8"), "sketch-page") for svg in sketch.svg_pages) + "</div>")
    return "".join(parts)


def origin_words(entry: Generation) -> str:
    """Where a piece came from, in a musician's words: "version 2 of #7: a variation of #7 from bar 5", "bar 5
    of #7 written again: rank 1, the bars after it at -85.2 (the model's log-likelihood)", "continued from
    bwv1.6.mxl"; "" for a new piece."""
    source = f"#{entry.parent_id}" if entry.parent_id is not None else entry.continued_from
    if not source:
        return ""
    params = entry.parameters
    if params.get("bar"):
        words = f"bar {params['bar']} of {source} written again"
        if params.get("rank"):
            words += (f": rank {params['rank']}, the bars after it at {params['following_logprob']:.1f} "
                      "(the model's log-likelihood)")
    elif entry.parent_id is not None and params.get("keep_lines"):
        words = f"a variation of {source} from bar {params['keep_lines'] + 1}"
    else:
        words = f"continued from {source}"
    return f"version {entry.version} of {source}: {words}" if entry.kept else words
