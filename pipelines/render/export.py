"""A rendered piece's files written into a folder: ABC, MusicXML, MIDI, PDF and WAV, each atomically."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import NotaGenError
from pipelines.files import atomic_write_bytes, atomic_write_text
from pipelines.render.score import RenderResult


@dataclass
class ExportedPiece:
    folder: Path
    files: dict[str, Path]  # "abc", "musicxml", "mid", "pdf", "wav" -> path written


def export_piece(result: RenderResult, folder: str | Path, stem: str, wav: bytes | None = None) -> ExportedPiece:
    """Write `stem`.abc, .musicxml, .mid, .pdf (and .wav when given) into `folder`, each atomically."""
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
    if wav is not None:
        files["wav"] = atomic_write_bytes(folder / f"{stem}.wav", wav)
    return ExportedPiece(folder=folder, files=files)
