"""The patch decoder: static buffers and one patch of decoding (16 char steps, then the patch step).

`PatchDecoder` builds the path a `DecodePlan` names (pipelines.generation.plan) and nothing
else; `describe()` reads the path off what it built, so a caller can check that the plan ran.

Trust, then verify: a path other than the modules as they are (compiled steps, the Triton
kernels, two chars a pass in PyTorch) is checked when its decoder is built. One patch runs
through it with its chars given, and its logits at every position and its next patch state are
compared with the plain modules' (`PatchDecoder.check`). `build_decoder` uses a path that passes
and otherwise, or where building, compiling or capturing it raises, the modules' plan it is given
as the fallback, with one warning that the fallback plan (and so each piece's `decode_path`) carries.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass, replace

import torch

from pipelines.generation.header import RULE_SLOTS, HeaderControls, LineRule
from pipelines.generation.options import SamplingConfig
from pipelines.generation.plan import (
    FUSED,
    MODULES,
    PAIR,
    TORCH_PAIR,
    DecodePlan,
    describe_path,
    kernels_run_on,
    kernels_take,
)
from pipelines.generation.steps import (
    char_step,
    fused_char_input,
    fused_patch_input,
    line_starts,
    patch_step,
    pick_char_marking_ends,
    pick_pair_marking_ends,
    rows_ended,
    zero_after_eos,
)
from pipelines.model.config import VOCAB_SIZE
from pipelines.model.network import NotaGen
from pipelines.model.runtime import Runtime

log = logging.getLogger(__name__)

# The patch a path is checked on (cycled to the patch size): plain ABC, no pad, bos or eos, not `[r:`.
CHECK_TEXT = "L:1/8\nM:4/4\nK:G\n"
# Patches of context before it, prefilled by the modules, so the patch step attends to a long cache
# (the fused patch kernels split one over programs of 128 slots: this reaches a second one).
CHECK_CONTEXT = 130
# How far a checked path's logits and patch state may be from the modules', per unit of the largest
# value the modules give (at least 1). Paths differ only in the order of their sums and a rounding or
# two. Measured on the CPU in fp32 (tiny model; demo model, logits up to about 14): two chars a pass in
# PyTorch 3.6e-7 and 2.9e-6 in the logits, the Triton kernels (interpreted, tiny) 4.8e-7 one char a step
# and 4.5e-7 two chars a pass. In fp16 and bf16 (PyTorch's CPU ops) the torch pair pass gave the modules'
# logits exactly and patch states within 0.0039 and 0.031, the modules' own cached against uncached
# step. On an H100 the fused NotaGen-X stacks were within 0.003 (logits) and 0.006 (states, up to 3.8)
# in fp16. So the bounds are about ten roundings of the largest value: 2**-11 relative a rounding in
# fp16, 2**-8 in bf16. A wrong kernel or a miscompile gives errors the size of the values, or NaN.
CHECK_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 8e-2}


class PathCheckError(RuntimeError):
    """A decode path gave other logits than the modules when its decoder was built."""


@dataclass(frozen=True)
class PathCheck:
    """A path's largest differences from the modules at load (`PatchDecoder.check`), and the bounds."""

    logits: float
    state: float
    logits_bound: float
    state_bound: float

    @property
    def passed(self) -> bool:
        return self.logits <= self.logits_bound and self.state <= self.state_bound  # NaN fails

    def __str__(self) -> str:
        return (f"logits within {self.logits:.2g} of the modules' (bound {self.logits_bound:.2g}), "
                f"patch state within {self.state:.2g} (bound {self.state_bound:.2g})")


def lay_out_weights(model: NotaGen, runtime: Runtime):
    """Where the runtime runs the Triton kernels, lay the block weights out as they read them, once,
    before anything is compiled, whatever an engine's options: code compiled for the modules is
    specialised to their weights' strides (a later change under it failed with a stride mismatch
    on an H100, torch 2.11), and engines with other options may share the model."""
    if kernels_run_on(runtime) and kernels_take(model.config):
        from pipelines.generation.kernels.decode import lay_out_for_kernels

        lay_out_for_kernels(model)


def compile_step(fn):
    """`fn` through torch.compile as the decoder compiles its steps (static shapes, one graph)."""
    return torch.compile(fn, fullgraph=True, dynamic=False)


def recompiles_allowed(compiled: bool = True):
    """Where compiled steps are first called: each batch size compiles its own step (static shapes)
    and a session sees many, so the recompile limit (8 per function by default, then a hard
    failure) is raised. Uncompiled steps leave torch._dynamo unimported (seconds of imports)."""
    return torch._dynamo.config.patch(cache_size_limit=256) if compiled else contextlib.nullcontext()


def build_decoder(model: NotaGen, plan: DecodePlan, fallback: DecodePlan, device: torch.device,
                  dtype: torch.dtype) -> PatchDecoder:
    """The decoder `plan` names, once it passes its check (`PatchDecoder.check`); where building,
    compiling, checking or capturing it fails, the decoder of `fallback` (the modules), whose plan
    then carries the warning (logged once here)."""
    if not plan.checked:
        return PatchDecoder(model, plan, device, dtype)
    try:
        return PatchDecoder(model, plan, device, dtype)
    except Exception as e:  # noqa: BLE001 - whatever fails in the fast path, the modules write the pieces
        log.debug("the decode path %s failed", plan, exc_info=True)
        said = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = said if isinstance(e, PathCheckError) else f"{type(e).__name__}: {said}" if said else type(e).__name__
    warning = (f"the decode path '{plan.describe()}' failed its check at load ({reason}); generating through "
               f"the model's modules instead, which is slower")
    log.warning("%s", warning)
    return PatchDecoder(model, replace(fallback, fallback=warning), device, dtype)


def encode_rules(rules: list[LineRule | None], patch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row's line rules as `steps.apply_line_rules` reads them: text (R, P) (-1 past a rule's chars and in
    an empty slot), drawn (R,), before (R, V)."""
    text = torch.full((len(rules), patch_size), -1, dtype=torch.long)
    drawn = torch.zeros(len(rules), dtype=torch.long)
    before = torch.zeros(len(rules), VOCAB_SIZE, dtype=torch.bool)
    for slot, rule in enumerate(rules):
        if rule is None:
            continue
        if len(rule.text) > patch_size:
            raise ValueError(f"the header line {rule.text.strip()!r} does not fit one {patch_size}-char patch")
        text[slot, :len(rule.text)] = torch.tensor([ord(ch) for ch in rule.text])
        drawn[slot] = rule.drawn
        for ch in rule.before:
            before[slot, ord(ch)] = True
    return text, drawn, before


class PatchDecoder:
    """Static buffers and one patch of decoding: 16 char steps, then the patch-level step.

    On CUDA (`plan.graph`) the whole patch is captured once as a CUDA graph and replayed, so a
    patch costs one replay and one read of its chars. Its steps run either through the
    model's modules, compiled with `plan.compile`, or (`plan.fused`) through the Triton
    decode kernels (`kernels/decode.py`: five kernels per block), with the embeddings and the
    sampling around them compiled as asked; with `plan.pair` the char decoder instead draws
    two chars a pass (`kernels/pair.py`, or `torch_pair.py` in PyTorch ops where Triton is
    missing), eight passes a patch. Once every active row has written its eos the rest of the
    patch is padding: eagerly (CPU, MPS) the char loop stops there, and the kernels skip their
    work (a flag on the device, so the graph needs no host sync). Each draw is keyed by its
    position, so the pieces are the same either way.

    A checked plan (`DecodePlan.checked`) is checked before the capture: `PathCheckError` where
    its logits stray from the modules' (`check`).
    """

    def __init__(self, model: NotaGen, plan: DecodePlan, device: torch.device, dtype: torch.dtype):
        c, batch = model.config, plan.batch
        self.model, self.P, self.compiled, self.fallback = model, c.patch_size, plan.compile, plan.fallback
        z = dict(device=device)
        self.enc = torch.zeros(batch, c.hidden_size, dtype=dtype, **z)  # (B, C) each row's patch state
        self.chars = torch.zeros(batch, c.patch_size, dtype=torch.long, **z)  # (B, P) the patch being drawn
        self.out_chars = torch.zeros(batch, c.patch_size, dtype=torch.long, **z)  # (B, P) the last patch
        self.forced = torch.full((batch, c.patch_size), -1, dtype=torch.long, **z)  # (B, P) -1: sample
        self.in_body = torch.zeros(batch, dtype=torch.bool, **z)
        # The header's line rules (`steps.apply_line_rules`, `header.LineRule`): one slot per rule, each row its own.
        self.line_start = torch.ones(batch, dtype=torch.bool, **z)  # (B,) the next patch begins a line
        text, drawn, before = encode_rules(HeaderControls().rules(), c.patch_size)  # upstream's rule only
        self.rule_text = text.expand(batch, -1, -1).to(device).contiguous()  # (B, R, P)
        self.rule_drawn = drawn.expand(batch, -1).to(device).contiguous()  # (B, R)
        self.rule_before = before.expand(batch, -1, -1).to(device).contiguous()  # (B, R, V)
        self.rule_missing = torch.zeros(batch, RULE_SLOTS, dtype=torch.bool, **z)  # (B, R)
        self._missing_rows = [[False] * RULE_SLOTS for _ in range(batch)]  # the host's copy of rule_missing
        self.active = torch.ones(batch, dtype=torch.bool, **z)  # rows still writing (early exit)
        self._active_rows = [True] * batch  # the host's copy: `active` is written only when it changes
        self.skip = torch.zeros(1, dtype=torch.int32, **z)  # set once every active row has ended its patch
        self.seeds = torch.zeros(batch, dtype=torch.long, **z)
        self.counters = torch.zeros(batch, dtype=torch.long, **z)  # (B,) patches each row has drawn
        self.positions = torch.zeros(batch, dtype=torch.long, **z)  # (B,) each row's next patch-cache slot
        self.top_k = torch.zeros(batch, 1, dtype=torch.long, **z)
        self.top_p = torch.ones(batch, 1, dtype=torch.float32, **z)
        self.temperature = torch.ones(batch, 1, dtype=torch.float32, **z)
        self.pos_table = torch.arange(c.patch_size, **z)
        self.last_position = c.patch_length - 1
        self.patch_stack = self.char_stack = self.pair_stack = None
        self.torch_pair = False
        self._logits: torch.Tensor | None = None  # (B, P, V) while `check` records the logits each char is drawn from
        # Where building this decoder's seconds went (benchmarks/first_piece.py prints them).
        self.timings: dict[str, float] = {}
        mark = time.perf_counter()
        self._build_steps(model, plan)
        self.timings["steps and kernels"] = time.perf_counter() - mark
        self.checked: PathCheck | None = None
        if plan.checked:
            mark = time.perf_counter()
            self.checked = self.check()
            self.timings["check at load"] = time.perf_counter() - mark
            if not self.checked.passed:
                raise PathCheckError(str(self.checked))
        self.graph = self.body_graph = None
        self._in_body_rows = [False] * batch
        if plan.graph:
            mark = time.perf_counter()
            self._capture()
            self.timings["graph capture"] = time.perf_counter() - mark

    def _build_steps(self, model: NotaGen, plan: DecodePlan):
        # Compiled functions take the model as an argument: a compiled functools.partial would
        # share one code object (and one recompile budget) with every other partial.
        step = compile_step if plan.compile else (lambda fn: fn)
        batch = plan.batch
        if plan.fused or plan.pair:
            self.char_input = functools.partial(step(fused_char_input), model)
        if plan.fused:
            from pipelines.generation.kernels.decode import FusedStack

            self.patch_stack = FusedStack(model.patch_level_decoder.base, batch)
            self.patch_input = functools.partial(step(fused_patch_input), model)
            self.patch_fn = self._fused_patch_step
        else:
            self.patch_fn = functools.partial(step(patch_step), model)
        if plan.pair and plan.pair_torch:
            from pipelines.generation.torch_pair import TorchPairStack

            # Eager PyTorch ops (its picks know each pass's position as a number), under the CUDA graph.
            self.pair_stack, self.torch_pair = TorchPairStack(model.char_level_decoder.base, batch), True
        elif plan.pair:
            from pipelines.generation.kernels.pair import PairStack

            self.pair_stack = PairStack(model.char_level_decoder.base, batch, skip=self.skip)
            self.pick_pair = functools.partial(step(pick_pair_marking_ends), self.skip, self.active)
        elif plan.fused:
            from pipelines.generation.kernels.decode import FusedStack

            head = model.char_level_decoder.base
            self.char_stack = FusedStack(head.transformer, batch, head=head.lm_head.weight, skip=self.skip)
            self.pick = functools.partial(step(pick_char_marking_ends), self.skip, self.active)
            self.char_fn = self._fused_char_step
        else:
            self.char_fn = functools.partial(step(char_step), model)

    def describe(self) -> str:
        """The path this decoder runs, read off what it built (`DecodePlan.describe` of the plan it ran)."""
        chars = (TORCH_PAIR if self.torch_pair else PAIR if self.pair_stack is not None else
                 FUSED if self.char_stack is not None else MODULES)
        return describe_path(self.graph is not None, self.compiled, self.patch_stack is not None, chars, self.fallback)

    def _fused_char_step(self, enc, chars, pos, *picking):
        logits = self.char_stack(self.char_input(enc, chars, pos), pos.expand(chars.shape[0]))  # (B, V)
        return self.pick(logits, chars, pos, *picking), logits

    def _fused_patch_step(self, patch, positions):
        return self.patch_stack(self.patch_input(patch, positions), positions)  # (B, C)

    # -- trust, then verify ---------------------------------------------------------------------
    @torch.inference_mode()
    def check(self) -> PathCheck:
        """Run one patch through this decoder's steps (eagerly: compiled steps compile here), its chars
        given (CHECK_TEXT, after CHECK_CONTEXT patches the modules prefill), and compare the logits
        each char is drawn from and the next patch state with the plain modules' (no caches)."""
        model, B, P = self.model, self.chars.shape[0], self.P
        dev = self.chars.device
        ids = [ord(ch) for ch in (CHECK_TEXT * P)[:P]]
        n = min(CHECK_CONTEXT, model.config.patch_length - 1)
        patches = torch.tensor([ids[j % P:] + ids[:j % P] for j in range(n + 1)], device=dev).expand(B, -1, -1)
        patch = patches[:, -1].contiguous()  # (B, P) the patch checked, after n of context
        states = model.patch_level_decoder(patches[:, :n], torch.arange(n, device=dev).expand(B, -1))  # prefill
        want_logits = model.char_level_decoder(states[:, -1], patch[:, :-1]).float()  # (B, P, V)
        want_state = model.patch_level_decoder(patches)[:, -1].float()  # (B, C)
        self.enc.copy_(states[:, -1])
        self.forced.copy_(patch)
        self.positions.fill_(n)
        self._logits = torch.full_like(want_logits, float("nan"))
        try:
            with recompiles_allowed(self.compiled):
                self.decode_patch()
            got_logits, got_state = self._logits, self.enc.float()
        finally:
            self._logits = None
        tolerance = CHECK_TOLERANCE.get(self.enc.dtype, CHECK_TOLERANCE[torch.float16])
        result = PathCheck(
            logits=(got_logits - want_logits).abs().max().item(), state=(got_state - want_state).abs().max().item(),
            logits_bound=tolerance * max(1.0, want_logits.abs().max().item()),
            state_bound=tolerance * max(1.0, want_state.abs().max().item()))
        for buffer in (self.enc, self.chars, self.counters, self.positions, self.skip):  # as built
            buffer.zero_()
        return result

    def _record(self, i: int, logits: torch.Tensor, first: torch.Tensor | None = None):
        """While checking: the logits the char at `i` was drawn from (one char a step: (B, V)); with two
        chars a pass (B * (1 + V), V), row 0's at `i` and those of the branch of `first` at `i + 1`."""
        if first is None:
            self._logits[:, i] = logits.float()
            return
        rows = logits.float().view(first.shape[0], -1, logits.shape[-1])
        self._logits[:, i] = rows[:, 0]
        self._logits[:, i + 1] = rows[torch.arange(first.shape[0], device=first.device), first + 1]

    # -- the host's side: rows in, patches out ----------------------------------------------------
    def reset(self, enc: torch.Tensor, seeds: list[int], in_body: list[bool], sampling: SamplingConfig):
        """A new batch: each row's patch state `enc` (B, C), seed and whether it is in its tune body;
        every row active, its draws counted from 0; `start_row` says where each goes on."""
        self.enc.copy_(enc)
        self.seeds.copy_(torch.tensor(seeds))
        self.counters.zero_()
        self.in_body.copy_(torch.tensor(in_body))
        self._in_body_rows = list(in_body)
        self.active.fill_(True)
        self._active_rows = [True] * len(seeds)
        self.top_k.fill_(sampling.top_k)
        self.top_p.fill_(sampling.top_p)
        self.temperature.fill_(sampling.temperature)

    def start_row(self, row: int, position: int, forced: list[int]):
        """Where `row`'s next patch goes in its patch cache, and the chars that patch must begin with
        (none: it begins a line)."""
        self.positions[row] = min(position, self.last_position)
        self.forced[row] = -1
        self.line_start[row] = not forced
        if forced:
            self.forced[row, :len(forced)] = torch.tensor(forced, device=self.forced.device)

    def set_rules(self, row: int, rules: list[LineRule | None]):
        """`row`'s header line rules (`HeaderControls.rules()`), none of them missing yet."""
        text, drawn, before = (t.to(self.rule_text.device) for t in encode_rules(rules, self.P))
        self.rule_text[row], self.rule_drawn[row], self.rule_before[row] = text, drawn, before
        self.set_missing(row, [False] * RULE_SLOTS, force=True)

    def set_missing(self, row: int, missing: list[bool], force: bool = False):
        """Which of `row`'s rules have their line still to write; a copy to the device only when it changes."""
        if force or missing != self._missing_rows[row]:
            self.rule_missing[row] = torch.tensor(missing, device=self.rule_missing.device)
            self._missing_rows[row] = list(missing)

    def set_in_body(self, row: int, in_body: bool):
        """Whether `row` is in its tune body (the header's line rules no longer act on it)."""
        self.in_body[row] = in_body
        self._in_body_rows[row] = in_body

    def _rules_act(self) -> bool:
        """Whether some row still writing is in its header, where the line rules act (the host's copies)."""
        return not all(body or not active for body, active in zip(self._in_body_rows, self._active_rows))

    def set_active(self, rows: list[bool]):
        """Which rows still write (for the char loop's early exit); a copy to the device only when a row ends."""
        if rows != self._active_rows:
            self.active.copy_(torch.tensor(rows))
            self._active_rows = rows

    def run(self) -> list[list[int]]:
        """Decode one patch for every row; returns the patches (pad after eos) on the host."""
        header = self._rules_act()
        if self.graph is not None:
            (self.graph if header or self.body_graph is None else self.body_graph).replay()
        else:
            self.decode_patch(early_exit=True, header=header)
        return self.out_chars.cpu().tolist()

    # -- the device's side ------------------------------------------------------------------------
    def decode_patch(self, early_exit: bool = False, header: bool = True):
        """One patch for every row, on the device: its chars into `out_chars`, the next patch states
        into `enc`. `early_exit` stops the char loop once every row has ended (a host sync per char);
        `header` False leaves the header's line rules out (`run`: the host knows no row writing is in its
        header; they act only there, and uncompiled they are a few dozen small ops a pass)."""
        self.chars.zero_()
        self.skip.zero_()
        rules = (self.line_start, self.rule_text, self.rule_drawn, self.rule_before, self.rule_missing)
        if not header:
            rules = None
        picking = (self.forced, self.in_body, self.seeds, self.counters, self.top_k, self.top_p, self.temperature,
                   rules)
        for i in range(0, self.P, 1 if self.pair_stack is None else 2):
            self._draw_chars(i, picking)
            if early_exit and bool(rows_ended(self.chars, self.active).all()):
                break
        patch = zero_after_eos(self.chars)  # (B, P)
        self.out_chars.copy_(patch)
        self.line_start.copy_(line_starts(patch))
        self.enc.copy_(self.patch_fn(patch, self.positions))
        # Next patch's state stays on the device; the host writes a row only when it changes.
        self.forced.fill_(-1)
        self.counters.add_(1)
        self.positions.copy_((self.positions + 1).clamp(max=self.last_position))

    def _draw_chars(self, i: int, picking: tuple):
        """The char at position `i` of every row, or the chars at `i` and `i + 1` with two chars a pass."""
        pos = self.pos_table[i]
        if self.pair_stack is None:
            self.chars[:, i], logits = self.char_fn(self.enc, self.chars, pos, *picking)  # (B,), (B, V)
            if self._logits is not None:
                self._record(i, logits)
            return
        logits = self.pair_stack(self.char_input(self.enc, self.chars, pos), i, self.chars)  # (B * 129, V)
        if self.torch_pair:
            first, second = self.pair_stack.pick(logits, self.chars, i, pos, *picking)
        else:
            first, second = self.pick_pair(logits, self.chars, pos, *picking)
        self.chars[:, i], self.chars[:, i + 1] = first, second
        if self._logits is not None:
            self._record(i, logits, first)

    def _capture(self):
        # Warm-up compiles the steps (where the check has not); it writes garbage into the caches,
        # which prefill overwrites.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), recompiles_allowed(self.compiled):
            for _ in range(2):
                self.decode_patch()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.decode_patch()
        if not self.compiled:
            # Uncompiled, the line rules are a few dozen kernels a pass: once no row writing is in its header
            # (most of a piece), `run` replays a second graph without them (same buffers, same memory pool).
            self.body_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.body_graph, pool=self.graph.pool()):
                self.decode_patch(header=False)
