"""How a piece is shown in the Generate and Library tabs: a heading, the score pages, the audio, the downloads.

Score pages are shown as <img> data URIs of Verovio's SVG, so nothing in a page can run
as script; audio and downloads are files in the workspace's exports folder, the only
folder the studio serves.
"""
from __future__ import annotations

import base64
import html

from pipelines.service import Backend, Generation, PieceFiles

DOWNLOADS = ("abc", "musicxml", "mid", "wav", "pdf", "raw")
RATING = {1: "rated: thumbs up", -1: "rated: thumbs down", 0: "not rated"}


def rating_line(rating: int) -> str:
    return RATING.get(rating, "")


def score_html(backend: Backend, svg_pages: list[str], problems: list[str] = (), error: str = "") -> str:
    parts = []
    if error:
        parts.append(f'<p class="score-error">{html.escape(error)}</p>')
    for rel in svg_pages:
        data = backend.generation.exported_file(rel).read_bytes()
        parts.append(f'<img class="score-page" alt="score page" style="width:100%;background:white" '
                     f'src="data:image/svg+xml;base64,{base64.b64encode(data).decode("ascii")}">')
    if problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        parts.append(f"<details><summary>Score notes ({len(problems)})</summary><ul>{items}</ul></details>")
    return "".join(parts)


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
    return (heading(entry), score_html(backend, svg, error=error), audio_path(backend, files),
            download_paths(backend, files), rating_line(entry.rating))


def preview_view(backend: Backend, piece: PieceFiles) -> tuple[str, str | None, list[str]]:
    """(score html, audio path, downloads) of an uploaded score's preview."""
    return (score_html(backend, piece.svg_pages, piece.problems, piece.error), audio_path(backend, piece.files),
            download_paths(backend, piece.files))
