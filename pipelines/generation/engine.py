"""The generation engine: batched, KV-cached NotaGen sampling with upstream's protocol.

Per piece, the prompt (period, composer and instrumentation lines, or a whole
piece to continue) is prefilled once into the patch-level KV cache. Then, per
patch: the char-level decoder spells up to 16 chars from the last patch state
(its own small KV cache, one position per char, sampling on the device), and one
patch-level step appends the finished patch. Shapes never change, so on CUDA both
steps are compiled and a whole patch (16 char steps and the patch step) is
captured once as a CUDA graph and replayed.

Protocol, as upstream's demo but done right:
- the model writes `%end` and the rest of the metadata, then the tune body; the
  first tune-body patch is forced to start `[r:0/`;
- the end patch (bos then eos) ends a piece;
- past the patch length, the context is re-encoded from the metadata (prompt
  included) plus the last half of the tune-body lines, and generation goes on;
- a piece that hits a limit, is cancelled or fails post-processing comes back with
  that status and the reason, never as a success.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from pipelines.abc.postprocess import postprocess
from pipelines.abc.prompts import Prompt
from pipelines.abc.report import bar_line_problem, header_problem
from pipelines.abc.tokenizer import BOS_ID, EOS_ID, Patchilizer, pad_patches
from pipelines.errors import AbcError, NotaGenError
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.sampling import draw, sorted_distribution
from pipelines.model.checkpoint import ModelCard
from pipelines.model.network import NotaGen
from pipelines.model.runtime import (
    Runtime,
    bytes_per_piece,
    check_fits,
    free_memory,
    max_batch,
    release,
    triton_available,
)

_R = [ord(c) for c in "[r:"]
_ZERO, _SLASH = ord("0"), ord("/")


# Rows share each weight tile in decode_kernels; on an H100 (NotaGen-X) it won at batches 1 and 2
# and lost at 4 (8,836 against 10,250 chars/s), where batched products do better.
FUSED_MAX_BATCH = 2
# The char decoder draws two chars a pass (pair_decode) up to this batch: on an H100 (NotaGen-X,
# fp16) it gave 14,383 against 10,293 chars/s at batch 4, 18,260 against 18,596 at 8 and 23,094
# against 31,059 at 16, where the 129 rows a piece make the products bound by arithmetic.
PAIR_MAX_BATCH = 4


def kernels_take(config) -> bool:
    """Whether the Triton decode kernels take this model: their attention tiles a head, so its
    size must be a power of two, 16 or more (NotaGen's presets have 64); others run the modules."""
    d = config.head_dim
    return d >= 16 and d & (d - 1) == 0


REDRAWS_PER_LINE = 4  # a piece's redraw budget per tune-body line (see Engine._go_back_to)
# A line among a piece's first RESTART_WITHIN_LINES that fails all its redraws sends the piece back
# to its start, at most MAX_RESTARTS times: its metadata or voice layout is then most likely broken.
RESTART_WITHIN_LINES = 8
MAX_RESTARTS = 2
# A header the model wrote that cannot make a readable score (`piece_report.header_problem`: a
# voice defined twice, voices not numbered 1..n, a `%%score` naming other voices) sends the piece
# back to its start as its tune body begins, up to this many times (on top of MAX_RESTARTS): only
# the metadata is drawn again.
MAX_HEADER_RESTARTS = 64
# A later line past its redraws goes back to the line before's start; failing again at the same
# place, 2 lines back, and so on up to MAX_BACK_LINES.
MAX_BACK_LINES = 3


@dataclass(frozen=True)
class GenerationRequest:
    """One piece to write: a prompt, or a piece to continue (`prefix`), and its seed."""

    prompt: Prompt | None = None
    seed: int = 0
    prefix: str = ""  # ABC to continue: header lines, metadata and some `[r:i/j]`-prefixed bars

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
    seconds: float = 0.0
    reencodes: int = 0
    redrawn_bars: int = 0  # tune-body lines drawn again because their voices did not line up
    restarts: int = 0  # times the piece began again from its prompt (an early line or the header kept failing)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def chars_per_second(self) -> float:
        return self.chars / self.seconds if self.seconds else 0.0


@dataclass
class _LineStart:
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
    enc: torch.Tensor | None  # the patch-level state the line's first patch starts from

    def text_only(self) -> _LineStart:
        return replace(self, context=-1, forced=[], enc=None)

    def body_at(self, body_lines: list[str]) -> list[str]:
        """The tune-body lines as they were at this mark, from the lines now (which only grew since)."""
        return body_lines[:self.body_count - 1] + [self.body_tail] if self.body_count else []


@dataclass
class _Piece:
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
    # Starts of the current line (last) and of up to MAX_BACK_LINES lines before it (text only
    # where from before the last re-encode); empty where the line cannot be drawn again.
    marks: list[_LineStart] = field(default_factory=list)
    start: _LineStart | None = None  # where the piece began; None once that context is gone
    redraws: int = 0  # of the current line
    redrawn_bars: int = 0
    attempt_redraws: int = 0  # since the piece (re)started
    restarts: int = 0
    header_restarts: int = 0
    backed_at: int = -1  # the line count where the piece last went back
    back_depth: int = 0  # lines it went back there
    end_redraws: int = 0

    @property
    def active(self) -> bool:
        return not self.status

    def add(self, chunk: str):
        self.text.append(chunk)
        self.chars += len(chunk)
        if not self.in_body:
            self.metadata += chunk
            return
        if self.body_lines and not self.body_lines[-1].endswith("\n"):
            chunk = self.body_lines.pop() + chunk
        self.body_lines += chunk.splitlines(keepends=True)

    @property
    def line_start(self) -> _LineStart | None:
        return self.marks[-1] if self.marks else None

    def mark_line_start(self, context: int, forced: list[int], enc: torch.Tensor):
        tail = self.body_lines[-1] if self.body_lines else ""
        self.marks.append(_LineStart(len(self.text), self.chars, self.metadata, len(self.body_lines), tail,
                                     self.in_body, context, list(forced), enc.clone()))
        del self.marks[:-(MAX_BACK_LINES + 1)]
        self.redraws = 0

    def redraw_budget_left(self, retries: int) -> bool:
        """At most `retries` + REDRAWS_PER_LINE redraws per line it has, since the piece (re)started."""
        return self.attempt_redraws < retries + REDRAWS_PER_LINE * len(self.body_lines)

    def back_to(self, m: _LineStart, how: str):
        """Cut the text back to mark `m`: to draw the current line again (`line`), from an earlier
        line's start (`back`, those lines with their own redraws) or from the piece's (`restart`,
        `header`)."""
        del self.text[m.text_items:]
        self.body_lines = m.body_at(self.body_lines)
        self.chars, self.metadata, self.in_body, self.context = m.chars, m.metadata, m.in_body, m.context
        if how in ("restart", "header"):
            if how == "restart":
                self.restarts += 1
            else:
                self.header_restarts += 1
            self.marks, self.redraws, self.attempt_redraws = [m], 0, 0
            return
        self.redrawn_bars += 1
        self.attempt_redraws += 1
        if how == "line":
            self.redraws += 1
        else:
            while self.marks[-1] is not m:
                self.marks.pop()
            self.redraws = 0


def char_embeds(model: NotaGen, enc, chars, pos):
    """(B, C) char-decoder input at position `pos` (before the position table): the patch state
    at 0, then the embedding of the previous char."""
    B = chars.shape[0]
    prev = chars.gather(1, (pos - 1).clamp(min=0).expand(B, 1))[:, 0]  # (B,)
    return torch.where(pos == 0, enc, model.char_level_decoder.base.transformer.wte(prev))


def pick_char(logits, chars, pos, forced, in_body, seeds, counters, top_k, top_p, temperature):
    """The char each row takes at position `pos` (B,), from the char decoder's logits (B, 128).

    chars (B, P) the patch so far; forced (B, P) chars to take instead of sampling (-1:
    sample); seeds and counters (B,) key each row's random draw (counter = patches the row
    has generated); top_k, top_p, temperature (B, 1) per-row sampling settings.
    """
    B = chars.shape[0]
    probs = torch.softmax(logits.float(), dim=-1)  # (B, 128)
    sorted_p, order = sorted_distribution(probs, top_k, top_p, temperature)
    c = draw(sorted_p, seeds, counters * chars.shape[1] + pos, order)
    f = forced.gather(1, pos.expand(B, 1))[:, 0]
    c = torch.where(f >= 0, f, c)
    # The first tune-body patch starts `[r:0/`: force `0/` after a metadata patch began `[r:`.
    starts_r = (chars[:, 0] == _R[0]) & (chars[:, 1] == _R[1]) & (chars[:, 2] == _R[2]) & ~in_body
    c = torch.where(starts_r & (pos == 3), _ZERO, c)
    return torch.where(starts_r & (pos == 4), _SLASH, c)


def rows_ended(chars, active):
    """(B,) whether each row's patch so far (B, P; zeros after it) holds its eos, or the row is
    no longer active: once all have, the rest of the patch is padding."""
    return (chars == EOS_ID).any(dim=1) | ~active


def pick_char_marking_ends(skip, active, logits, chars, pos, *picking):
    """`pick_char`, and `skip` (1,) set once every row has ended its patch (`rows_ended`), this
    char included: the fused char stack then skips the rest of the patch."""
    c = pick_char(logits, chars, pos, *picking)
    skip.copy_((rows_ended(chars, active) | (c == EOS_ID)).all())
    return c


def pick_pair_marking_ends(skip, active, logits, chars, pos, *picking):
    """Each row's chars at `pos` and `pos + 1` from a pair pass's logits (B * (1 + V), V) (see
    `pair_decode`): its row 0's draw, then the draw from the branch of that char; `skip` as
    `pick_char_marking_ends`."""
    B, V = chars.shape[0], logits.shape[-1]
    rows = logits.view(B, -1, V)  # each piece's row 0, then its branches
    first = pick_char_marking_ends(skip, active, rows[:, 0], chars, pos, *picking)
    chars = torch.where(torch.arange(chars.shape[1], device=chars.device) == pos, first[:, None], chars)
    branch = rows.gather(1, (first + 1).view(B, 1, 1).expand(B, 1, V))[:, 0]
    second = pick_char_marking_ends(skip, active, branch, chars, pos + 1, *picking)
    return first, second


def char_step(model: NotaGen, enc, chars, pos, *picking):
    """One char for every row at position `pos` () through the model's modules; enc (B, C) patch
    states; `picking` as `pick_char` takes it after `pos`."""
    head = model.char_level_decoder.base
    x = char_embeds(model, enc, chars, pos)[:, None]  # (B, 1, C)
    h = head.transformer(x, pos.expand(chars.shape[0], 1), use_cache=True)
    return pick_char(head.lm_head(h[:, -1]), chars, pos, *picking)


def patch_step(model: NotaGen, patch, positions):
    """Append one patch per row at `positions` (B,); returns the new patch states (B, C)."""
    return model.patch_level_decoder(patch[:, None, :], positions[:, None])[:, -1]


def fused_char_input(model: NotaGen, enc, chars, pos):
    """The char decoder's first-layer input (B, C) for `decode_kernels`: embeddings plus the position table."""
    return char_embeds(model, enc, chars, pos) + model.char_level_decoder.base.transformer.wpe(pos)


def fused_patch_input(model: NotaGen, patch, positions):
    """The patch decoder's first-layer input (B, C) for `decode_kernels`."""
    decoder = model.patch_level_decoder
    return decoder.embed(patch[:, None, :])[:, 0] + decoder.base.wpe(positions)


def zero_after_eos(chars: torch.Tensor) -> torch.Tensor:
    """Upstream feeds a patch back with every char after its eos set to pad."""
    is_eos = chars == EOS_ID
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return chars.masked_fill(after, 0)


class PatchDecoder:
    """Static buffers and one patch of decoding: 16 char steps, then the patch-level step.

    On CUDA the whole patch is captured once as a CUDA graph and replayed, so a patch
    costs one replay and one read of its chars. Its steps run either through the
    model's modules, compiled where Triton is installed, or (`fused`, small batches)
    through `decode_kernels`: five Triton kernels per block, with the embeddings and
    the sampling around them compiled; with `pair` the char decoder instead draws two chars
    a pass (`pair_decode.PairStack`), eight passes a patch. Once every active row has written its eos the
    rest of the patch is padding: eagerly (CPU, MPS) the char loop stops there, and the
    fused kernels skip their work (a flag on the device, so the graph needs no host
    sync). Each draw is keyed by its position, so the pieces are the same either way.
    """

    def __init__(self, model: NotaGen, batch: int, device: torch.device, dtype: torch.dtype, use_graph: bool,
                 compile: bool = False, fused: bool = False, pair: bool = False):
        c = model.config
        self.model, self.P = model, c.patch_size
        z = dict(device=device)
        self.enc = torch.zeros(batch, c.hidden_size, dtype=dtype, **z)
        self.chars = torch.zeros(batch, c.patch_size, dtype=torch.long, **z)
        self.out_chars = torch.zeros(batch, c.patch_size, dtype=torch.long, **z)
        self.forced = torch.full((batch, c.patch_size), -1, dtype=torch.long, **z)
        self.in_body = torch.zeros(batch, dtype=torch.bool, **z)
        self.active = torch.ones(batch, dtype=torch.bool, **z)  # rows still writing (early exit)
        self.skip = torch.zeros(1, dtype=torch.int32, **z)  # set once every active row has ended its patch
        self.seeds = torch.zeros(batch, dtype=torch.long, **z)
        self.counters = torch.zeros(batch, dtype=torch.long, **z)
        self.positions = torch.zeros(batch, dtype=torch.long, **z)
        self.top_k = torch.zeros(batch, 1, dtype=torch.long, **z)
        self.top_p = torch.ones(batch, 1, dtype=torch.float32, **z)
        self.temperature = torch.ones(batch, 1, dtype=torch.float32, **z)
        self.pos_table = torch.arange(c.patch_size, **z)
        self.last_position = c.patch_length - 1
        # Compiled functions take the model as an argument: a compiled functools.partial would
        # share one code object (and one recompile budget) with every other partial.
        step = (lambda fn: torch.compile(fn, fullgraph=True, dynamic=False)) if compile else (lambda fn: fn)
        pair = pair and self.P % 2 == 0  # two chars a pass (see pair_decode)
        if fused or pair:
            self.char_input = functools.partial(step(fused_char_input), model)
        if fused:
            from pipelines.generation.kernels.decode import FusedStack

            self.patch_stack = FusedStack(model.patch_level_decoder.base, batch)
            self.patch_input = functools.partial(step(fused_patch_input), model)
            self.patch_fn = self._fused_patch_step
        else:
            self.patch_fn = functools.partial(step(patch_step), model)
        self.pair_stack = None
        if pair:
            from pipelines.generation.kernels.pair import PairStack

            self.pair_stack = PairStack(model.char_level_decoder.base, batch, skip=self.skip)
            self.pick_pair = functools.partial(step(pick_pair_marking_ends), self.skip, self.active)
        elif fused:
            head = model.char_level_decoder.base
            self.char_stack = FusedStack(head.transformer, batch, head=head.lm_head.weight, skip=self.skip)
            self.pick = functools.partial(step(pick_char_marking_ends), self.skip, self.active)
            self.char_fn = self._fused_char_step
        else:
            self.char_fn = functools.partial(step(char_step), model)
        self.graph = None
        if use_graph:
            self._capture()

    def _fused_char_step(self, enc, chars, pos, *picking):
        logits = self.char_stack(self.char_input(enc, chars, pos), pos.expand(chars.shape[0]))
        return self.pick(logits, chars, pos, *picking)

    def _fused_patch_step(self, patch, positions):
        return self.patch_stack(self.patch_input(patch, positions), positions)

    def _body(self, early_exit: bool = False):
        self.chars.zero_()
        self.skip.zero_()
        picking = (self.forced, self.in_body, self.seeds, self.counters, self.top_k, self.top_p, self.temperature)
        for i in range(0, self.P, 1 if self.pair_stack is None else 2):
            pos = self.pos_table[i]
            if self.pair_stack is None:
                self.chars[:, i] = self.char_fn(self.enc, self.chars, pos, *picking)
            else:
                logits = self.pair_stack(self.char_input(self.enc, self.chars, pos), i, self.chars)
                self.chars[:, i], self.chars[:, i + 1] = self.pick_pair(logits, self.chars, pos, *picking)
            if early_exit and bool(rows_ended(self.chars, self.active).all()):
                break
        patch = zero_after_eos(self.chars)
        self.out_chars.copy_(patch)
        self.enc.copy_(self.patch_fn(patch, self.positions))
        # Next patch's state stays on the device; the host writes a row only when it changes.
        self.forced.fill_(-1)
        self.counters.add_(1)
        self.positions.copy_((self.positions + 1).clamp(max=self.last_position))

    def start_row(self, row: int, position: int, forced: list[int]):
        """Where `row`'s next patch goes in its patch cache, and the chars that patch must begin with."""
        self.positions[row] = min(position, self.last_position)
        self.forced[row] = -1
        if forced:
            self.forced[row, :len(forced)] = torch.tensor(forced, device=self.forced.device)

    def _capture(self):
        # Warm-up compiles the steps; it writes garbage into the caches, which prefill overwrites.
        # Each batch size compiles its own step (static shapes); a session sees many, so the
        # recompile limit (8 per function by default, then a hard failure) is raised here.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch._dynamo.config.patch(cache_size_limit=256):
            for _ in range(2):
                self._body()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body()

    def run(self) -> list[list[int]]:
        """Decode one patch for every row; returns the patches (pad after eos) on the host."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._body(early_exit=True)
        return self.out_chars.cpu().tolist()


class Engine:
    """A loaded model on a device, reused across calls; `generate` writes a batch of pieces.

    On CUDA a patch is a CUDA-graph replay. `compile` (default: on CUDA where Triton is
    installed) compiles its steps; `fused` (default: the same, for batches of up to
    `FUSED_MAX_BATCH`) runs the blocks through the Triton decode kernels; `pair` (default:
    as `fused`) has the char decoder draw two chars a pass (`pair_decode`) at batches of up
    to `PAIR_MAX_BATCH`.
    """

    def __init__(self, model: NotaGen, runtime: Runtime, compile: bool | None = None, name: str = "",
                 card: ModelCard | None = None, fused: bool | None = None, pair: bool | None = None):
        check_fits(model.config, runtime, batch=1)
        self.runtime = runtime
        self.name = name
        self.card = card or ModelCard(config=model.config)
        self.model = model.to(device=runtime.device, dtype=runtime.dtype).eval()
        self.model.tie_weights()
        self.patchilizer = Patchilizer(patch_size=model.config.patch_size)
        kernels = runtime.device.type == "cuda" and triton_available()
        self.compile = kernels if compile is None else compile
        self.fused = fused if fused is not None else (kernels if compile is None else compile)
        self.pair = self.fused if pair is None else pair
        if kernels and kernels_take(model.config):  # the kernels' weight layout, before any compile
            from pipelines.generation.kernels.decode import lay_out_for_kernels

            lay_out_for_kernels(self.model)
        self._capacity = 0
        self._decoders: PatchDecoder | None = None

    @property
    def config(self):
        return self.model.config

    def max_pieces(self, cpu_default: int = 8) -> int:
        """How many pieces fit in one batch now ("as many as fit"); a fixed number off the GPU."""
        free = free_memory(self.runtime.device)
        if free is None:
            return cpu_default
        if self._capacity:
            free += self._capacity * bytes_per_piece(self.config, self.runtime.dtype)  # caches we would free
        return max(1, max_batch(self.config, self.runtime.dtype, free, weights_loaded=True))

    def unload(self):
        """Drop the model and its caches and give the GPU memory back."""
        device = self.runtime.device
        self.model.clear_caches()
        self.model = None
        self._decoders, self._capacity = None, 0
        release(device)

    # -- decoding buffers ------------------------------------------------------------------
    def _decoder(self, batch: int) -> PatchDecoder:
        if self._capacity != batch:
            self._decoders = None
            self.model.clear_caches()
            release(self.runtime.device)
            check_fits(self.config, self.runtime, batch=batch, weights_loaded=True)
            self.model.setup_caches(batch, dtype=self.runtime.dtype, device=self.runtime.device)
            take = kernels_take(self.config)
            self._decoders = PatchDecoder(self.model, batch, self.runtime.device, self.runtime.dtype,
                                          use_graph=self.runtime.device.type == "cuda", compile=self.compile,
                                          fused=self.fused and batch <= FUSED_MAX_BATCH and take,
                                          pair=self.pair and batch <= PAIR_MAX_BATCH and take)
            self._capacity = batch
        return self._decoders

    # -- prefill --------------------------------------------------------------------------
    def _encode_context(self, text: str) -> tuple[list[list[int]], list[int]]:
        """Full patches to prefill and the chars of an unfinished last patch (forced next)."""
        ids = self.patchilizer.encode_generate(text, patch_length=self.config.patch_length)
        if ids and len(ids[-1]) < self.config.patch_size:
            return ids[:-1], ids[-1]
        return ids, []

    @torch.inference_mode()
    def _prefill(self, rows: list[int], contexts: list[list[list[int]]]) -> torch.Tensor:
        """Prefill the given rows' patch caches from position 0; returns their last states (R, C)."""
        dev = self.runtime.device
        patches = pad_patches(contexts, self.config.patch_size)[0].to(dev)
        positions = torch.arange(patches.shape[1], device=dev).expand(len(rows), -1)
        row_ids = torch.tensor(rows, device=dev)
        hidden = self.model.patch_level_decoder(patches, positions, row_ids)  # (R, T, C)
        last = torch.tensor([len(c) - 1 for c in contexts], device=dev)
        return hidden[torch.arange(len(rows), device=dev), last]

    def _reencode(self, piece: _Piece) -> tuple[list[list[int]], list[int]]:
        """Context past the patch length: metadata plus the last half of the tune-body lines.

        Upstream drops the prompt lines here; they are kept, as training cuts keep them.
        Where half the lines still overflow (long lines, small models), fewer are kept.
        Returns no patches when the piece cannot go on (no tune body yet, or the
        metadata and one line fill the context).
        """
        if not piece.in_body or not piece.body_lines:
            return [], []
        ctx, open_patch = self._context_of(piece.metadata, piece.body_lines)
        piece.reencodes += bool(ctx)
        return ctx, open_patch

    def _full_context(self, piece: _Piece) -> str:
        """Why `piece` has no context to go on from (`_reencode` found none)."""
        L = self.config.patch_length
        if not piece.in_body or not piece.body_lines:
            return f"filled the {L}-patch context without a tune body to continue from"
        return (f"its metadata and its last tune-body line ({len(piece.body_lines[-1])} chars) fill the "
                f"{L}-patch context on their own")

    def _context_of(self, metadata: str, lines: list[str]) -> tuple[list[list[int]], list[int]]:
        """Metadata plus the last half of `lines` (fewer where that overflows), encoded; ([], []) where nothing fits."""
        for keep in range(max(len(lines) // 2, 1), 0, -1):
            ctx, open_patch = self._encode_context(metadata + "".join(lines[-keep:]))
            if len(ctx) < self.config.patch_length - 1:
                return ctx, open_patch
        return [], []

    # -- generation -----------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: list[GenerationRequest], sampling: SamplingConfig = SamplingConfig(),
                 limits: GenerationLimits = GenerationLimits(),
                 on_patch: Callable[[int, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[GeneratedPiece]:
        """Write one piece per request, all in one batch; `on_patch(row, text_so_far)` streams."""
        if not requests:
            return []
        if self.model is None:
            raise NotaGenError("the model was unloaded; load it again")
        start = time.perf_counter()
        B = len(requests)
        dec = self._decoder(B)

        pieces, contexts, forced_rows = [], [], []
        for req in requests:
            text = req.start_text()
            piece = _Piece(req, [text], metadata=text, start_chars=len(text))
            lines = text.splitlines(keepends=True)
            body = next((i for i, line in enumerate(lines) if line.startswith(("[V:", "[r:"))), None)
            if body is not None:
                piece.metadata, piece.body_lines = "".join(lines[:body]), lines[body:]
                piece.in_body = True
            ctx, open_patch = self._encode_context(text)
            if len(ctx) >= self.config.patch_length - 1:
                ctx, open_patch = self._reencode(piece)
                if not ctx:
                    raise AbcError(f"the piece to continue cannot go on: {self._full_context(piece)}")
            pieces.append(piece)
            contexts.append(ctx)
            forced_rows.append(open_patch)
            piece.context = len(ctx)

        dec.enc.copy_(self._prefill(list(range(B)), contexts))
        dec.seeds.copy_(torch.tensor([r.seed for r in requests]))
        dec.counters.zero_()
        dec.in_body.copy_(torch.tensor([p.in_body for p in pieces]))
        dec.active.fill_(True)
        for b, (piece, chars) in enumerate(zip(pieces, forced_rows)):
            dec.start_row(b, piece.context, chars)
        dec.top_k.fill_(sampling.top_k)
        dec.top_p.fill_(sampling.top_p)
        dec.temperature.fill_(sampling.temperature)
        if limits.bar_retries:
            for b, piece in enumerate(pieces):
                piece.mark_line_start(piece.context, forced_rows[b], dec.enc[b])
                piece.start = piece.line_start

        was_active = [True] * B
        while any(p.active for p in pieces):
            if should_stop and should_stop():
                for p in pieces:
                    if p.active:
                        p.status, p.reason = "cancelled", "stopped by the user"
                break
            host = dec.run()  # the patch of every row, and each row's next patch state
            known = [len(f) for f in forced_rows]  # chars of an unfinished patch already in the text
            forced_rows = [[] for _ in range(B)]
            for b, piece in enumerate(pieces):
                if not piece.active:
                    continue
                patch = host[b]
                piece.patches += 1
                piece.context += 1
                ends = patch[0] == BOS_ID and patch[1] == EOS_ID
                if ends:
                    if piece.in_body:
                        back = self._end_back_to(piece, limits.bar_retries)
                    else:  # ended within its metadata: no score at all
                        back = self._header_back_to(piece, limits.bar_retries, ended=True)
                    if back is None:
                        piece.status = "ok"
                        continue
                    piece.end_redraws += back[1] == "back"
                    ends_line = False
                else:
                    chunk = self.patchilizer.decode_patch(patch)[known[b]:]
                    begins = not piece.in_body and chunk.startswith("[r:")
                    if begins:
                        piece.in_body = True
                        dec.in_body[b] = True
                    piece.add(chunk)
                    ends_line = chunk.endswith("\n")
                    back = self._header_back_to(piece, limits.bar_retries) if begins else None
                    if back is None and ends_line:
                        back = self._go_back_to(piece, limits.bar_retries)
                rebuilt = None
                if back is not None and back[0].enc is None:  # a mark from before the last re-encode
                    rebuilt = self._context_of(back[0].metadata, back[0].body_at(piece.body_lines))
                    back = back if rebuilt[0] else None  # nothing fits: keep the line
                redrawn = back is not None
                if redrawn:
                    m = back[0]
                    piece.back_to(*back)
                    dec.in_body[b] = m.in_body
                    if rebuilt:  # the context again from the text, and a mark in it
                        ctx, open_patch = rebuilt
                        piece.reencodes += 1
                        dec.enc[b] = self._prefill([b], [ctx])[0]
                        piece.context = len(ctx)
                        piece.marks.pop()
                        piece.mark_line_start(piece.context, open_patch, dec.enc[b])
                        m = piece.marks[-1]
                    else:
                        dec.enc[b] = m.enc
                    dec.start_row(b, m.context, m.forced)  # the counters go on: new draws
                    forced_rows[b] = list(m.forced)
                if on_patch:
                    on_patch(b, "".join(piece.text))
                self._check_limits(piece, limits, start)
                if piece.active and piece.context >= self.config.patch_length:
                    ctx, open_patch = self._reencode(piece)
                    if not ctx:
                        piece.status, piece.reason = "invalid", self._full_context(piece)
                        continue
                    dec.enc[b] = self._prefill([b], [ctx])[0]
                    piece.context = len(ctx)
                    forced_rows[b] = open_patch
                    dec.start_row(b, piece.context, open_patch)
                    # Marks in the old context keep only their text (going back there rebuilds the
                    # context); a line under way can be drawn again from here, in the new one (a
                    # finished line is marked below).
                    piece.marks, piece.start = [m.text_only() for m in piece.marks], None
                    if limits.bar_retries and not ends_line:
                        piece.mark_line_start(piece.context, open_patch, dec.enc[b])
                if limits.bar_retries and ends_line and not redrawn and piece.active:
                    piece.mark_line_start(piece.context, forced_rows[b], dec.enc[b])
            now_active = [p.active for p in pieces]
            if now_active != was_active:  # for the char loop's early exit; a copy only when a row ends
                dec.active.copy_(torch.tensor(now_active))
                was_active = now_active

        seconds = time.perf_counter() - start
        return [self._finish(p, seconds) for p in pieces]

    @staticmethod
    def _header_back_to(piece: _Piece, retries: int, ended: bool = False) -> tuple[_LineStart, str] | None:
        """Where `piece` goes back to as its tune body begins, or as the model ends it before
        that (`ended`): its start, to write the header again, when the header it wrote has a
        `header_problem` that no line can mend or ended the piece (up to MAX_HEADER_RESTARTS
        times); None goes on. A continued piece keeps its own header."""
        start = piece.start
        if not retries or start is None or start.in_body or piece.header_restarts >= MAX_HEADER_RESTARTS:
            return None
        return (start, "header") if ended or header_problem(piece.metadata) else None

    @staticmethod
    def _go_back_to(piece: _Piece, retries: int) -> tuple[_LineStart, str] | None:
        """Where `piece` goes back to after finishing a tune-body line whose voices do not line up
        (differ in length or barline), and how (`_Piece.back_to`); None keeps the line.

        - The line's start, to draw it again, up to `retries` times. A piece redraws at most
          REDRAWS_PER_LINE times the lines it has, plus `retries`, in all: a piece whose every
          line fails (a voice lost its meter) goes on instead of spending its time limit.
        - Past those, a line among the piece's first RESTART_WITHIN_LINES sends the piece back
          to its start (up to MAX_RESTARTS times): its metadata or voice layout is then most
          likely what makes the line fail.
        - Later, the piece goes back to the line before's start, so the line gets its redraws
          again after a different line before it; failing again at the same place, 2 lines
          back, and so on up to MAX_BACK_LINES.
        """
        if not retries or not piece.in_body or not piece.marks:
            return None
        budget_left = piece.redraw_budget_left(retries)
        line = budget_left and piece.redraws < retries
        start = piece.start
        early = start is not None and len(piece.body_lines) - start.body_count <= RESTART_WITHIN_LINES
        restart = early and piece.restarts < MAX_RESTARTS
        depth = piece.back_depth + 1 if piece.backed_at == len(piece.body_lines) else 1
        back = budget_left and depth <= MAX_BACK_LINES and len(piece.marks) > depth
        if not (line or restart or back) or bar_line_problem(piece.metadata, piece.body_lines[-1]) is None:
            return None
        if line:
            return piece.marks[-1], "line"
        if restart:
            return start, "restart"
        piece.backed_at, piece.back_depth = len(piece.body_lines), depth
        return piece.marks[-1 - depth], "back"

    @staticmethod
    def _end_back_to(piece: _Piece, retries: int) -> tuple[_LineStart, str] | None:
        """Where `piece` goes back to when the model ends it on a last line that does not close
        (an ending opened with `|1`, voices of different lengths): that line's start, up to
        `retries` times; None ends the piece."""
        if not retries or not piece.in_body or not piece.body_lines or piece.end_redraws >= retries:
            return None
        if not piece.redraw_budget_left(retries):
            return None
        # the last line's start: the current mark while it is unfinished, else the one before
        finished = piece.body_lines[-1].endswith("\n")
        mark = piece.marks[-1 - finished] if len(piece.marks) > finished else None
        if mark is None or bar_line_problem(piece.metadata, piece.body_lines[-1], last=True) is None:
            return None
        return mark, "back"

    @staticmethod
    def _check_limits(piece: _Piece, limits: GenerationLimits, start: float):
        if piece.start_chars + piece.chars > limits.max_chars:
            piece.status, piece.reason = "limit", f"reached the {limits.max_chars}-character limit without an ending"
        elif limits.max_patches and piece.patches >= limits.max_patches:
            piece.status, piece.reason = "limit", f"reached the {limits.max_patches}-patch limit without an ending"
        elif time.perf_counter() - start > limits.max_seconds:
            piece.status, piece.reason = "limit", f"reached the {limits.max_seconds:g} s time limit without an ending"

    @staticmethod
    def _finish(piece: _Piece, seconds: float) -> GeneratedPiece:
        raw = "".join(piece.text)
        out = GeneratedPiece(piece.request, raw, None, piece.status, piece.reason, piece.patches,
                             piece.chars, seconds, piece.reencodes, piece.redrawn_bars,
                             piece.restarts + piece.header_restarts)
        if out.status == "ok":
            try:
                out.abc = postprocess(raw)
            except AbcError as e:
                out.status, out.reason = "invalid", f"post-processing failed: {e}"
        return out
