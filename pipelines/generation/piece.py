"""What the engine is asked and what it returns, and the host-side state of one piece being written.

`GenerationRequest` and `GeneratedPiece` are the engine's request and result types. `Piece`
is one row of a batch on the host: its text, where its tune body begins, its line marks
(`LineStart`: where a line began, to draw it again from there) and its redraw counters.
`Move` (a `MoveKind` and a mark) is a way back that the redraw policy
(`pipelines.generation.policy`) chooses and `Piece.back_to` applies; `MoveEvent` tells a
caller of the engine that one was made, and why.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, replace

import torch

from pipelines.abc.postprocess import postprocess
from pipelines.abc.prompts import Prompt
from pipelines.errors import AbcError, NotaGenError
from pipelines.generation.header import HeaderControls
from pipelines.generation.options import GenerationLimits


@dataclass(frozen=True)
class GenerationRequest:
    """One piece to write: a prompt, or a piece to continue (`prefix`), its seed, and the header lines
    and length chosen for it (`header`; a continued piece keeps its own)."""

    prompt: Prompt | None = None
    seed: int = 0
    prefix: str = ""  # ABC to continue: header lines, metadata and some `[r:i/j]`-prefixed bars
    header: HeaderControls = HeaderControls()

    def start_text(self) -> str:
        if self.prefix:
            return self.prefix
        if self.prompt is None:
            raise NotaGenError("a generation request needs a prompt or a prefix to continue")
        return "".join(line + "\n" for line in self.prompt.header_lines(with_end=False))


@dataclass
class GeneratedPiece:
    request: GenerationRequest
    raw: str  # the text as generated, prompt included
    abc: str | None  # post-processed ABC; None unless status == "ok"
    status: str  # ok | limit | cancelled | invalid
    reason: str = ""
    patches: int = 0
    chars: int = 0  # generated chars (prompt excluded)
    seconds: float = 0.0  # writing the batch, without `warmup_seconds`
    reencodes: int = 0
    redrawn_bars: int = 0  # tune-body lines drawn again because their voices did not line up
    restarts: int = 0  # times the piece began again from its prompt (an early line or the header kept failing)
    decode_path: str = ""  # how its batch was decoded, read off the decoder that ran (`DecodePlan.describe`)
    warmup_seconds: float = 0.0  # building the batch's decoder first (kernels, check, graph capture; 0 when reused)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def chars_per_second(self) -> float:
        return self.chars / self.seconds if self.seconds else 0.0


@dataclass
class LineStart:
    """A row's state where its current line began, to draw the line again from there.

    The text only grows between marks, so lengths say where to cut it back; the last body
    line is kept whole because it may have been unfinished (a prefix ending mid-line) and
    then merged with what followed. A mark from before a re-encode keeps only the text
    (`enc` None): going back there rebuilds the context from the text, as a re-encode does.
    """

    text_items: int
    chars: int
    metadata: str
    body_count: int
    body_tail: str
    in_body: bool
    context: int
    forced: list[int]
    enc: torch.Tensor | None  # (C,) the patch-level state the line's first patch starts from

    def text_only(self) -> LineStart:
        return replace(self, context=-1, forced=[], enc=None)

    def body_at(self, body_lines: list[str]) -> list[str]:
        """The tune-body lines as they were at this mark, from the lines now (which only grew since)."""
        return body_lines[:self.body_count - 1] + [self.body_tail] if self.body_count else []


class MoveKind(enum.Enum):
    """How a piece goes back to a mark."""

    LINE = "line"  # draw the current line again from its start
    BACK = "back"  # from an earlier line's start (those lines get their own redraws)
    RESTART = "restart"  # from the piece's start: an early line kept failing
    HEADER = "header"  # from the piece's start: the header it wrote cannot make a score


@dataclass(frozen=True)
class Move:
    """A way back the redraw policy chose: its kind, the mark to go back to, and why (not compared)."""

    kind: MoveKind
    mark: LineStart
    reason: str = field(default="", compare=False)

    @property
    def restarts(self) -> bool:
        return self.kind in (MoveKind.RESTART, MoveKind.HEADER)


@dataclass(frozen=True)
class MoveEvent:
    """A way back as the engine made it, for a caller to say why a piece went back (`Engine.generate`'s on_move).

    `line`: the tune-body line (1-based) the piece had reached, 0 in its header; `to_line`: the
    line it writes again from (0: its start); `count`: the how-many-th move of its kind this is
    (HEADER and RESTART: since the piece began; LINE: redraws of this line; BACK: lines gone back).
    """

    kind: MoveKind
    line: int
    to_line: int
    count: int
    reason: str


@dataclass
class Piece:
    """Host-side state of one row of the batch."""

    request: GenerationRequest
    text: list[str]
    metadata: str  # everything before the tune body (prompt included)
    start_chars: int = 0
    body_lines: list[str] = field(default_factory=list)  # tune-body text, split after each newline
    in_body: bool = False
    context: int = 0  # patches in this row's patch-level cache
    patches: int = 0
    chars: int = 0
    reencodes: int = 0  # times the context was rebuilt past the patch length
    status: str = ""
    reason: str = ""
    # Starts of the current line (last) and of up to the policy's MAX_BACK_LINES lines before
    # it (text only where from before the last re-encode); empty where the line cannot be drawn again.
    marks: list[LineStart] = field(default_factory=list)
    start: LineStart | None = None  # where the piece began; None once that context is gone
    redraws: int = 0  # of the current line
    redrawn_bars: int = 0
    attempt_redraws: int = 0  # since the piece (re)started
    restarts: int = 0
    header_restarts: int = 0
    backed_at: int = -1  # the line count where the piece last went back
    back_depth: int = 0  # lines it went back there
    end_redraws: int = 0

    @classmethod
    def starting(cls, request: GenerationRequest) -> Piece:
        """A piece at its start text: the prompt, or the piece to continue split at its tune body."""
        text = request.start_text()
        piece = cls(request, [text], metadata=text, start_chars=len(text))
        lines = text.splitlines(keepends=True)
        body = next((i for i, line in enumerate(lines) if line.startswith(("[V:", "[r:"))), None)
        if body is not None:
            piece.metadata, piece.body_lines = "".join(lines[:body]), lines[body:]
            piece.in_body = True
        return piece

    @property
    def active(self) -> bool:
        return not self.status

    @property
    def text_so_far(self) -> str:
        return "".join(self.text)

    def add(self, chunk: str):
        self.text.append(chunk)
        self.chars += len(chunk)
        if not self.in_body:
            self.metadata += chunk
            return
        if self.body_lines and not self.body_lines[-1].endswith("\n"):
            chunk = self.body_lines.pop() + chunk
        self.body_lines += chunk.splitlines(keepends=True)

    # -- line marks -------------------------------------------------------------------------
    @property
    def line_start(self) -> LineStart | None:
        return self.marks[-1] if self.marks else None

    def mark_line_start(self, context: int, forced: list[int], enc: torch.Tensor, keep: int):
        """Mark where the current line begins (its redraws start over); the last `keep` marks stay."""
        tail = self.body_lines[-1] if self.body_lines else ""
        self.marks.append(LineStart(len(self.text), self.chars, self.metadata, len(self.body_lines), tail,
                                    self.in_body, context, list(forced), enc.clone()))
        del self.marks[:-keep]
        self.redraws = 0

    def remark_line_start(self, context: int, forced: list[int], enc: torch.Tensor, keep: int):
        """The current line's mark again, in a context rebuilt from the text (its redraws start over)."""
        self.marks.pop()
        self.mark_line_start(context, forced, enc, keep)

    def forget_context(self):
        """After a re-encode: marks keep only their text (going back there rebuilds the context) and
        the piece's start is gone."""
        self.marks, self.start = [m.text_only() for m in self.marks], None

    def moved(self, move: Move, line: int) -> MoveEvent:
        """The event of `move`, just made by `back_to` from tune-body line `line`."""
        counts = {MoveKind.HEADER: self.header_restarts, MoveKind.RESTART: self.restarts,
                  MoveKind.LINE: self.redraws, MoveKind.BACK: max(1, line - move.mark.body_count)}
        to_line = 0 if move.restarts else move.mark.body_count + 1
        return MoveEvent(move.kind, line, to_line, counts[move.kind], move.reason)

    def back_to(self, move: Move):
        """Cut the text back to the move's mark and count the move (see `MoveKind`)."""
        m = move.mark
        del self.text[m.text_items:]
        self.body_lines = m.body_at(self.body_lines)
        self.chars, self.metadata, self.in_body, self.context = m.chars, m.metadata, m.in_body, m.context
        if move.restarts:
            if move.kind is MoveKind.RESTART:
                self.restarts += 1
            else:
                self.header_restarts += 1
            self.marks, self.redraws, self.attempt_redraws = [m], 0, 0
            return
        self.redrawn_bars += 1
        self.attempt_redraws += 1
        if move.kind is MoveKind.LINE:
            self.redraws += 1
        else:
            while self.marks[-1] is not m:
                self.marks.pop()
            self.redraws = 0

    # -- ending -----------------------------------------------------------------------------
    def cancel(self):
        if self.active:
            self.status, self.reason = "cancelled", "stopped by the user"

    def check_limits(self, limits: GenerationLimits, started: float):
        """Stop the piece (status `limit`) once it passes one of `limits`; `started` is the batch's start time."""
        if self.start_chars + self.chars > limits.max_chars:
            self.status, self.reason = "limit", f"reached the {limits.max_chars}-character limit without an ending"
        elif limits.max_patches and self.patches >= limits.max_patches:
            self.status, self.reason = "limit", f"reached the {limits.max_patches}-patch limit without an ending"
        elif time.perf_counter() - started > limits.max_seconds:
            self.status, self.reason = "limit", f"reached the {limits.max_seconds:g} s time limit without an ending"

    def result(self, seconds: float, decode_path: str = "", warmup_seconds: float = 0.0) -> GeneratedPiece:
        """The piece as returned: post-processed where it ended well (`invalid` where that fails)."""
        raw = self.text_so_far
        out = GeneratedPiece(self.request, raw, None, self.status, self.reason, self.patches, self.chars, seconds,
                             self.reencodes, self.redrawn_bars, self.restarts + self.header_restarts, decode_path,
                             warmup_seconds)
        if out.status == "ok":
            try:
                out.abc = postprocess(raw)
            except AbcError as e:
                out.status, out.reason = "invalid", f"post-processing failed: {e}"
        return out
