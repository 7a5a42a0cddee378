"""The generation engine: batched, KV-cached NotaGen sampling with upstream's protocol.

Per piece, the prompt (period, composer and instrumentation lines, or a whole piece to
continue) is prefilled once into the patch-level KV cache (`Engine.prefill`). Then, per
patch, the patch decoder (pipelines.generation.decoder) spells up to 16 chars from the last
patch state and appends the finished patch; the host takes each row's patch
(`Engine._take_patch`): adds it to the text or ends the piece, goes back where the redraw
policy says (pipelines.generation.policy), checks the limits and re-encodes past the patch
length. Which decode path runs is planned once per batch size (`Engine.plan`,
pipelines.generation.plan) and each piece says which ran (`GeneratedPiece.decode_path`).

Protocol, as upstream's demo but done right:
- the model writes `%end` and the rest of the metadata, then the tune body; the
  first tune-body patch is forced to start `[r:0/`, and the meter, key, tempo and
  length a request chooses are written for the model (pipelines.generation.header);
- the end patch (bos then eos) ends a piece;
- past the patch length, the context is re-encoded from the metadata (prompt
  included) plus the last half of the tune-body lines, and generation goes on;
- a piece that hits a limit, is cancelled or fails post-processing comes back with
  that status and the reason, never as a success.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from pipelines.abc.tokenizer import BOS_ID, EOS_ID, Patchilizer, pad_patches
from pipelines.errors import AbcError, NotaGenError
from pipelines.generation.context import Context, ContextEncoder
from pipelines.generation.decoder import PatchDecoder, build_decoder, lay_out_weights
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.piece import GeneratedPiece, GenerationRequest, Move, MoveEvent, Piece
from pipelines.generation.plan import MODULES_ONLY, DecodeOptions, DecodePlan, plan_decode
from pipelines.generation.policy import RedrawPolicy
from pipelines.model.checkpoint import ModelCard
from pipelines.model.network import NotaGen
from pipelines.model.runtime import Runtime, bytes_per_piece, check_fits, free_memory, max_batch, release

# GenerationRequest and GeneratedPiece live in piece.py; callers import them from here as well.
__all__ = ["DecodeOptions", "DecodePlan", "Engine", "GeneratedPiece", "GenerationLimits", "GenerationRequest",
           "MoveEvent", "SamplingConfig"]

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """One `generate` call's decoder and settings, passed to its steps."""

    decoder: PatchDecoder
    policy: RedrawPolicy
    limits: GenerationLimits
    started: float
    on_patch: Callable[[int, str], None] | None
    on_move: Callable[[int, MoveEvent], None] | None = None


def _is_end(patch: list[int]) -> bool:
    return patch[0] == BOS_ID and patch[1] == EOS_ID


class Engine:
    """A loaded model on a device, reused across calls; `generate` writes a batch of pieces.

    `compile`, `fused` and `pair` are independent (`DecodeOptions`: None decides by the
    runtime); `plan(batch)` says which decode path a batch of that size runs, and why. A path
    that fails its check at load (`decoder.build_decoder`) leaves the warning in `fallback`, and
    from then on every batch runs the modules.
    """

    def __init__(self, model: NotaGen, runtime: Runtime, compile: bool | None = None, name: str = "",
                 card: ModelCard | None = None, fused: bool | None = None, pair: bool | None = None):
        check_fits(model.config, runtime, batch=1)
        self.runtime = runtime
        self.name = name
        self.card = card or ModelCard(config=model.config)
        self.options = DecodeOptions(compile=compile, fused=fused, pair=pair)
        self.model = model.to(device=runtime.device, dtype=runtime.dtype).eval()
        self.model.tie_weights()
        self.patchilizer = Patchilizer(patch_size=model.config.patch_size)
        self.contexts = ContextEncoder(self.patchilizer, model.config.patch_length)
        lay_out_weights(self.model, runtime)
        self._capacity = 0
        self._decoder: PatchDecoder | None = None
        self.fallback = ""  # the warning, once a decode path has failed its check at load

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
        self.free_caches()
        self.model = None

    def free_caches(self):
        """Drop the decoder and the model's KV caches; the next call builds them again."""
        self.model.clear_caches()
        self._decoder, self._capacity = None, 0
        release(self.runtime.device)

    # -- decode path ----------------------------------------------------------------------
    def plan(self, batch: int) -> DecodePlan:
        """How a batch of `batch` pieces is decoded, and why (the modules once a path has failed its check)."""
        if self.fallback:
            return replace(plan_decode(self.config, self.runtime, batch, MODULES_ONLY), fallback=self.fallback)
        return plan_decode(self.config, self.runtime, batch, self.options)

    def decoder(self, batch: int) -> PatchDecoder:
        """The patch decoder for `batch` rows, with the model's caches for them (built on a new batch size)."""
        if self._capacity != batch:
            self._decoder = None
            self.model.clear_caches()
            release(self.runtime.device)
            check_fits(self.config, self.runtime, batch=batch, weights_loaded=True)
            self.model.setup_caches(batch, dtype=self.runtime.dtype, device=self.runtime.device)
            plan = self.plan(batch)
            log.info("decode plan: %s", plan)
            modules = plan_decode(self.config, self.runtime, batch, MODULES_ONLY)
            self._decoder = build_decoder(self.model, plan, modules, self.runtime.device, self.runtime.dtype)
            self.fallback = self.fallback or self._decoder.fallback
            self._capacity = batch
        return self._decoder

    # -- prefill --------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, rows: list[int], contexts: list[list[list[int]]]) -> torch.Tensor:
        """Prefill the given rows' patch caches from position 0; returns their last states (R, C)."""
        dev = self.runtime.device
        patches = pad_patches(contexts, self.config.patch_size)[0].to(dev)  # (R, T, P)
        positions = torch.arange(patches.shape[1], device=dev).expand(len(rows), -1)  # (R, T)
        row_ids = torch.tensor(rows, device=dev)
        hidden = self.model.patch_level_decoder(patches, positions, row_ids)  # (R, T, C)
        last = torch.tensor([len(c) - 1 for c in contexts], device=dev)  # (R,)
        return hidden[torch.arange(len(rows), device=dev), last]

    def _reencode(self, piece: Piece) -> Context:
        """`piece`'s context rebuilt past the patch length (`ContextEncoder.rebuilt`), counted."""
        context = self.contexts.rebuilt(piece)
        piece.reencodes += bool(context[0])
        return context

    # -- generation -----------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: list[GenerationRequest], sampling: SamplingConfig = SamplingConfig(),
                 limits: GenerationLimits = GenerationLimits(),
                 on_patch: Callable[[int, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_move: Callable[[int, MoveEvent], None] | None = None) -> list[GeneratedPiece]:
        """Write one piece per request, all in one batch; `on_patch(row, text_so_far)` streams, and
        `on_move(row, event)` says where and why a row went back (a header or a bar drawn again)."""
        if not requests:
            return []
        if self.model is None:
            raise NotaGenError("the model was unloaded; load it again")
        started = time.perf_counter()  # the time limit counts the decoder's setup (on CUDA, its capture)
        builds = self._capacity != len(requests)
        decoder = self.decoder(len(requests))
        warmup = time.perf_counter() - started if builds else 0.0  # reported apart from the writing
        run = _Batch(decoder, RedrawPolicy(limits.bar_retries), limits, started, on_patch, on_move)
        pieces, forced = self._start(requests, run, sampling)
        while any(p.active for p in pieces):
            if should_stop and should_stop():
                for p in pieces:
                    p.cancel()
                break
            patches = run.decoder.run()  # (B, P) on the host; the next patch states stay on the device
            forced = [self._take_patch(run, b, piece, patches[b], len(forced[b])) if piece.active else []
                      for b, piece in enumerate(pieces)]
            run.decoder.set_active([p.active for p in pieces])
        seconds = time.perf_counter() - run.started - warmup
        return [p.result(seconds, run.decoder.describe(), warmup) for p in pieces]

    def _start(self, requests: list[GenerationRequest], run: _Batch,
               sampling: SamplingConfig) -> tuple[list[Piece], list[list[int]]]:
        """Every piece at its start, prefilled into the decoder; returns them and the chars each
        one's first patch must begin with."""
        pieces, contexts = [], []
        for request in requests:
            piece = Piece.starting(request)
            context = self._start_context(piece)
            piece.context = len(context[0])
            pieces.append(piece)
            contexts.append(context)
        dec = run.decoder
        dec.reset(self.prefill(list(range(len(pieces))), [c for c, _ in contexts]),
                  [r.seed for r in requests], [p.in_body for p in pieces], sampling)
        for b, (piece, (_, open_patch)) in enumerate(zip(pieces, contexts)):
            dec.start_row(b, piece.context, open_patch)
            dec.set_rules(b, piece.request.header.rules())
            dec.set_missing(b, piece.request.header.missing(piece.metadata))
            if run.policy.on:
                piece.mark_line_start(piece.context, open_patch, dec.enc[b], run.policy.marks_kept)
                piece.start = piece.line_start
        return pieces, [open_patch for _, open_patch in contexts]

    def _start_context(self, piece: Piece) -> Context:
        """A starting piece's context: its text, or past the patch length (a long piece to continue) rebuilt."""
        context = self.contexts.encode(piece.text_so_far)
        if self.contexts.fits(context):
            return context
        context = self._reencode(piece)
        if not context[0]:
            raise AbcError(f"the piece to continue cannot go on: {self.contexts.why_full(piece)}")
        return context

    def _take_patch(self, run: _Batch, b: int, piece: Piece, patch: list[int], known: int) -> list[int]:
        """Row `b`'s new patch (its first `known` chars already in the text): end the piece or add
        the patch, go back where the policy says, check the limits, re-encode past the patch
        length; returns the chars the row's next patch must begin with."""
        piece.patches += 1
        piece.context += 1
        if _is_end(patch):
            move, ends_line = self._end_move(run.policy, piece), False
            if move is None:
                piece.status = "ok"
                return []
        else:
            move, ends_line = self._add_patch(run, b, piece, patch, known)
        move, rebuilt = self._reachable(piece, move)
        forced = []
        if move:
            line = len(piece.body_lines)
            forced = self._go_back(run.decoder, b, piece, move, rebuilt, run.policy)
            if run.on_move:
                run.on_move(b, piece.moved(move, line))
        if run.on_patch:
            run.on_patch(b, piece.text_so_far)
        piece.check_limits(run.limits, run.started)
        if piece.active and piece.context >= self.config.patch_length:
            forced = self._go_on_past_the_context(run, b, piece, ends_line)
        if run.policy.on and ends_line and move is None and piece.active:
            piece.mark_line_start(piece.context, forced, run.decoder.enc[b], run.policy.marks_kept)
        if piece.active and not piece.in_body:  # the header lines still to write, after a move back too
            run.decoder.set_missing(b, piece.request.header.missing(piece.metadata))
        return forced

    @staticmethod
    def _end_move(policy: RedrawPolicy, piece: Piece) -> Move | None:
        """Where a piece the model ended goes back to (None: it ends)."""
        if not piece.in_body:  # ended within its metadata: no score at all
            return policy.after_header(piece, ended=True)
        move = policy.after_end(piece)
        piece.end_redraws += move is not None
        return move

    def _add_patch(self, run: _Batch, b: int, piece: Piece, patch: list[int], known: int) -> tuple[Move | None, bool]:
        """Add the patch's new chars to the text; returns where the policy sends the piece back
        (the header as its tune body begins, or a line that does not line up) and whether the
        patch ends a line."""
        chunk = self.patchilizer.decode_patch(patch)[known:]
        begins = not piece.in_body and chunk.startswith("[r:")
        if begins:
            piece.in_body = True
            run.decoder.set_in_body(b, True)
        piece.add(chunk)
        ends_line = chunk.endswith("\n")
        move = run.policy.after_header(piece) if begins else None
        if move is None and ends_line:
            move = run.policy.after_line(piece)
        return move, ends_line

    def _reachable(self, piece: Piece, move: Move | None) -> tuple[Move | None, Context | None]:
        """A move to a mark from before the last re-encode needs the context rebuilt from its text:
        the move and that context, or no move where nothing fits (the line is kept)."""
        if move is None or move.mark.enc is not None:
            return move, None
        rebuilt = self.contexts.of_lines(move.mark.metadata, move.mark.body_at(piece.body_lines))
        return (move, rebuilt) if rebuilt[0] else (None, None)

    def _go_back(self, dec: PatchDecoder, b: int, piece: Piece, move: Move, rebuilt: Context | None,
                 policy: RedrawPolicy) -> list[int]:
        """Take row `b` back to the move's mark, its patch state from the mark (or prefilled again
        from the rebuilt context, with a new mark there); returns the chars its next patch begins with.
        The draws' counters go on: the row draws anew."""
        piece.back_to(move)
        mark = move.mark
        dec.set_in_body(b, mark.in_body)
        if rebuilt is None:
            dec.enc[b] = mark.enc
        else:
            patches, open_patch = rebuilt
            piece.reencodes += 1
            dec.enc[b] = self.prefill([b], [patches])[0]
            piece.context = len(patches)
            piece.remark_line_start(piece.context, open_patch, dec.enc[b], policy.marks_kept)
            mark = piece.line_start
        dec.start_row(b, mark.context, mark.forced)
        return list(mark.forced)

    def _go_on_past_the_context(self, run: _Batch, b: int, piece: Piece, ends_line: bool) -> list[int]:
        """Row `b` filled its context: prefill it again from the rebuilt context (or end the piece
        `invalid` where none fits); returns the chars its next patch begins with. Marks in the old
        context keep only their text; a line under way gets a mark in the new one (a finished line
        is marked after this)."""
        patches, open_patch = self._reencode(piece)
        if not patches:
            piece.status, piece.reason = "invalid", self.contexts.why_full(piece)
            return []
        dec = run.decoder
        dec.enc[b] = self.prefill([b], [patches])[0]
        piece.context = len(patches)
        dec.start_row(b, piece.context, open_patch)
        piece.forget_context()
        if run.policy.on and not ends_line:
            piece.mark_line_start(piece.context, open_patch, dec.enc[b], run.policy.marks_kept)
        return open_patch

