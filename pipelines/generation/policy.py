"""The redraw rules: when a piece goes back to draw a line (or its header) again, and how far.

`RedrawPolicy` holds the limits and answers at three moments of a piece: as its tune body
begins (`after_header`), after it finishes a tune-body line (`after_line`) and as the model
ends it (`after_end`). Each answer is a `Move` (a `MoveKind` and the mark to go back to)
or None, to go on; `Piece.back_to` applies it.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.abc.report import bar_line_problem, header_problem
from pipelines.generation.piece import Move, MoveKind, Piece

__all__ = ["MAX_BACK_LINES", "MAX_HEADER_RESTARTS", "MAX_RESTARTS", "REDRAWS_PER_LINE", "RESTART_WITHIN_LINES",
           "Move", "MoveKind", "RedrawPolicy"]

REDRAWS_PER_LINE = 4  # a piece's redraw budget per tune-body line (see RedrawPolicy.after_line)
# A line among a piece's first RESTART_WITHIN_LINES that fails all its redraws sends the piece back
# to its start, at most MAX_RESTARTS times: its metadata or voice layout is then most likely broken.
RESTART_WITHIN_LINES = 8
MAX_RESTARTS = 2
# A header the model wrote that cannot make a readable score (`report.header_problem`: a voice
# defined twice, voices not numbered 1..n, a `%%score` naming other voices) sends the piece back to
# its start as its tune body begins, up to this many times (on top of MAX_RESTARTS): only the
# metadata is drawn again.
MAX_HEADER_RESTARTS = 64
# A later line past its redraws goes back to the line before's start; failing again at the same
# place, 2 lines back, and so on up to MAX_BACK_LINES.
MAX_BACK_LINES = 3


@dataclass(frozen=True)
class RedrawPolicy:
    """Where a piece goes back to, for `retries` redraws of a line (`GenerationLimits.bar_retries`; 0: never)."""

    retries: int
    redraws_per_line: int = REDRAWS_PER_LINE
    restart_within_lines: int = RESTART_WITHIN_LINES
    max_restarts: int = MAX_RESTARTS
    max_header_restarts: int = MAX_HEADER_RESTARTS
    max_back_lines: int = MAX_BACK_LINES

    @property
    def on(self) -> bool:
        """Whether pieces keep line marks and ever go back."""
        return self.retries > 0

    @property
    def marks_kept(self) -> int:
        """Line marks a piece keeps: its current line's and those of up to max_back_lines before it."""
        return self.max_back_lines + 1

    def budget_left(self, piece: Piece) -> bool:
        """At most `retries` + redraws_per_line redraws per line the piece has, since it (re)started."""
        return piece.attempt_redraws < self.retries + self.redraws_per_line * len(piece.body_lines)

    def after_header(self, piece: Piece, ended: bool = False) -> Move | None:
        """As `piece`'s tune body begins, or as the model ends it before that (`ended`): back to
        its start (HEADER), to write the header again, when the header it wrote has a
        `header_problem` that no line can mend or ended the piece (up to max_header_restarts
        times); None goes on. A continued piece keeps its own header."""
        start = piece.start
        if not self.on or start is None or start.in_body or piece.header_restarts >= self.max_header_restarts:
            return None
        problem = "the model ended the piece in its header" if ended else header_problem(piece.metadata)
        return Move(MoveKind.HEADER, start, problem) if problem else None

    def after_line(self, piece: Piece) -> Move | None:
        """After `piece` finished a tune-body line whose voices do not line up (differ in length or
        barline); None keeps the line.

        - LINE: the line's start, to draw it again, up to `retries` times. A piece redraws at
          most redraws_per_line times the lines it has, plus `retries`, in all: a piece whose
          every line fails (a voice lost its meter) goes on instead of spending its time limit.
        - RESTART: past those, a line among the piece's first restart_within_lines sends the
          piece back to its start (up to max_restarts times): its metadata or voice layout is
          then most likely what makes the line fail.
        - BACK: later, the piece goes back to the line before's start, so the line gets its
          redraws again after a different line before it; failing again at the same place,
          2 lines back, and so on up to max_back_lines. The piece records where it went back
          (`backed_at`, `back_depth`) to know how far the next time.
        """
        if not self.on or not piece.in_body or not piece.marks:
            return None
        budget_left = self.budget_left(piece)
        line = budget_left and piece.redraws < self.retries
        start = piece.start
        early = start is not None and len(piece.body_lines) - start.body_count <= self.restart_within_lines
        restart = early and piece.restarts < self.max_restarts
        depth = piece.back_depth + 1 if piece.backed_at == len(piece.body_lines) else 1
        back = budget_left and depth <= self.max_back_lines and len(piece.marks) > depth
        if not (line or restart or back):
            return None
        problem = bar_line_problem(piece.metadata, piece.body_lines[-1])
        if problem is None:
            return None
        if line:
            return Move(MoveKind.LINE, piece.marks[-1], problem)
        if restart:
            return Move(MoveKind.RESTART, start, problem)
        piece.backed_at, piece.back_depth = len(piece.body_lines), depth
        return Move(MoveKind.BACK, piece.marks[-1 - depth], problem)

    def after_end(self, piece: Piece) -> Move | None:
        """As the model ends `piece` on a last line that does not close (an ending opened with
        `|1`, voices of different lengths): BACK to that line's start, up to `retries` times;
        None ends the piece."""
        if not self.on or not piece.in_body or not piece.body_lines or piece.end_redraws >= self.retries:
            return None
        if not self.budget_left(piece):
            return None
        # the last line's start: the current mark while it is unfinished, else the one before
        finished = piece.body_lines[-1].endswith("\n")
        mark = piece.marks[-1 - finished] if len(piece.marks) > finished else None
        problem = None if mark is None else bar_line_problem(piece.metadata, piece.body_lines[-1], last=True)
        return None if problem is None else Move(MoveKind.BACK, mark, problem)
