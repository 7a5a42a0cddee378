"""A rendered piece's files written into a folder: ABC, MusicXML, MIDI, PDF, WAV and the data its score follows
playback by (follow.py), each atomically."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import NotaGenError
from pipelines.files import atomic_write_bytes, atomic_write_text
from pipelines.render.score import RenderResult


@dataclass
class ExportedPiece:
    folder: Path
    files: dict[str, Path]  # "abc", "musicxml", "mid", "pdf", "wav", "follow" -> path written


def export_piece(result: RenderResult, folder: str | Path, stem: str, wav: bytes | None = None) -> ExportedPiece:
    """Write `stem`.abc, .musicxml, .mid, .pdf, .follow.json (and .wav when given) into `folder`, each atomically."""
    if not stem or Path(stem).name != stem or stem in (".", ".."):
        raise NotaGenError(f"{stem!r}: a file name without folders is needed to export a piece")
    folder = Path(folder)
    files = {
        "abc": atomic_write_text(folder / f"{stem}.abc", result.abc if result.abc.endswith("\n") else result.abc + "\n"),
        "musicxml": atomic_write_text(folder / f"{stem}.musicxml", result.musicxml),
        "mid": atomic_write_bytes(folder / f"{stem}.mid", result.midi),
    }
    if result.pdf is not None:
        files["pdf"] = atomic_write_bytes(folder / f"{stem}.pdf", result.pdf)
    if result.follow is not None:
        follow = json.dumps(result.follow, separators=(",", ":"))
        files["follow"] = atomic_write_text(folder / f"{stem}.follow.json", follow)
    if wav is not None:
        files["wav"] = atomic_write_bytes(folder / f"{stem}.wav", wav)
    return ExportedPiece(folder=folder, files=files)
