"""A piece's patch-level context as patches: encoded from its text, and rebuilt past the patch length.

Past the patch length the context becomes the metadata (prompt lines included, which upstream
drops; training cuts keep them) plus the last half of the tune-body lines, fewer where that
still overflows (long lines, small models).
"""
from __future__ import annotations

from pipelines.abc.tokenizer import Patchilizer
from pipelines.generation.piece import Piece

Context = tuple[list[list[int]], list[int]]  # full patches to prefill, chars of an unfinished last patch


class ContextEncoder:
    """Encodes contexts for a model of `patch_length` patches of `patchilizer.patch_size` chars."""

    def __init__(self, patchilizer: Patchilizer, patch_length: int):
        self.patchilizer, self.patch_length = patchilizer, patch_length

    def encode(self, text: str) -> Context:
        """Full patches to prefill and the chars of an unfinished last patch (forced next)."""
        ids = self.patchilizer.encode_generate(text, patch_length=self.patch_length)
        if ids and len(ids[-1]) < self.patchilizer.patch_size:
            return ids[:-1], ids[-1]
        return ids, []

    def fits(self, context: Context) -> bool:
        """Whether a context leaves room to go on (it must end before the last position)."""
        return len(context[0]) < self.patch_length - 1

    def of_lines(self, metadata: str, lines: list[str]) -> Context:
        """Metadata plus the last half of `lines` (fewer where that overflows), encoded; ([], []) where nothing fits."""
        for keep in range(max(len(lines) // 2, 1), 0, -1):
            context = self.encode(metadata + "".join(lines[-keep:]))
            if self.fits(context):
                return context
        return [], []

    def rebuilt(self, piece: Piece) -> Context:
        """`piece`'s context past the patch length; no patches when it cannot go on (no tune body
        yet, or the metadata and one line fill the context)."""
        if not piece.in_body or not piece.body_lines:
            return [], []
        return self.of_lines(piece.metadata, piece.body_lines)

    def why_full(self, piece: Piece) -> str:
        """Why `piece` has no context to go on from (`rebuilt` found none)."""
        L = self.patch_length
        if not piece.in_body or not piece.body_lines:
            return f"filled the {L}-patch context without a tune body to continue from"
        return (f"its metadata and its last tune-body line ({len(piece.body_lines[-1])} chars) fill the "
                f"{L}-patch context on their own")
