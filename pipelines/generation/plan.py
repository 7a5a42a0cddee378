"""Which decode path runs a batch: the one place that decides it, and says why.

A patch is decoded by a `PatchDecoder` (pipelines.generation.decoder) in one of these ways:
- graph: on CUDA the whole patch is captured once as a CUDA graph and replayed; elsewhere the
  steps run eagerly and the char loop stops once every row has ended its patch;
- compile: the step functions go through torch.compile;
- fused: the patch-level step (and, one char a step, the char-level step) runs through the
  Triton decode kernels (`kernels/decode.py`), for batches of up to FUSED_MAX_BATCH;
- pair: the char decoder draws two chars a pass, for batches of up to PAIR_MAX_BATCH through the
  Triton kernels (`kernels/pair.py`), or where Triton is missing (PyTorch's Windows wheels) up to
  TORCH_PAIR_MAX_BATCH in PyTorch ops (`torch_pair.py`).

`DecodeOptions` are the engine's wishes, each independent: None (auto) turns it on where the
runtime runs it (fused: CUDA with Triton; pair: CUDA), True asks for it elsewhere too (the Triton
interpreter on the CPU runs the kernels: the tests do), False turns it off. Compiled steps are off
by default: on an H200 they halve a patch step (NotaGen-X, batch 1: 3.0 against 6.3 ms) but cost
about 20 s of compilation with empty caches and 6-8 s with warm ones for each new batch size, more
than a 1024-patch piece saves; long jobs (DPO's sampling) ask for them.
`plan_decode` turns them into a `DecodePlan` for one batch size, within the facts: the kernels
and compiled GPU code need Triton, the kernels tile only head sizes that `kernels_take`, and each
path pays off only up to its batch limit.

Every path but the modules as they are is checked against them when its decoder is built, and
replaced by them where it fails (`decoder.build_decoder`); the plan then names the fallback and why.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.model.runtime import Runtime, triton_available

# Rows share each weight tile in the decode kernels; on an H100 (NotaGen-X) they won at batches 1 and 2
# and lost at 4 (8,836 against 10,250 chars/s), where batched products do better.
FUSED_MAX_BATCH = 2
# The char decoder draws two chars a pass (kernels/pair.py) up to this batch: on an H100 (NotaGen-X,
# fp16) it gave 14,383 against 10,293 chars/s at batch 4, 18,260 against 18,596 at 8 and 23,094
# against 31,059 at 16, where the 129 rows a piece make the products bound by arithmetic.
PAIR_MAX_BATCH = 4
# Two chars a pass in PyTorch ops (torch_pair.py) where Triton is missing, up to this batch: on an H200
# (NotaGen-X, fp16, uncompiled, pieces in their tune body) 2,695 against 1,439 chars/s one char a step at
# batch 1, 4,992 against 2,671 at 2 and 8,951 against 5,305 at 4. Batch 8 is not measured yet.
TORCH_PAIR_MAX_BATCH = 4

# The char steps a plan can name (`DecodePlan.char_step`).
MODULES, FUSED, PAIR, TORCH_PAIR = "modules", "fused kernels", "two chars a pass", "two chars a pass in PyTorch"


def kernels_take(config) -> bool:
    """Whether the Triton decode kernels take this model: their attention tiles a head, so its
    size must be a power of two, 16 or more (NotaGen's presets have 64); others run the modules."""
    d = config.head_dim
    return d >= 16 and d & (d - 1) == 0


def kernels_run_on(runtime: Runtime) -> bool:
    """Whether the runtime runs compiled steps and the Triton kernels by default: CUDA with Triton."""
    return runtime.device.type == "cuda" and triton_available()


@dataclass(frozen=True)
class DecodeOptions:
    """What the engine is asked for; None: auto (on with CUDA and Triton). See the module docstring."""

    compile: bool | None = None
    fused: bool | None = None
    pair: bool | None = None


# The modules as they are (in a CUDA graph on CUDA): the path every other one is checked against and
# falls back to.
MODULES_ONLY = DecodeOptions(compile=False, fused=False, pair=False)


def describe_path(graph: bool, compiled: bool, patch_kernels: bool, char_step: str, fallback: str = "") -> str:
    """One line naming a decode path; `char_step` one of MODULES, FUSED, PAIR, TORCH_PAIR; `fallback`
    the warning where this path replaced one that failed its check."""
    how = "CUDA graph" if graph else "eager"
    steps = "compiled" if compiled else "uncompiled"
    patch = "fused kernels" if patch_kernels else "modules"
    chars = char_step if char_step in (PAIR, TORCH_PAIR) else f"one char a step ({char_step})"
    return f"{how}, {steps}; patch step: {patch}; char step: {chars}" + (f" [fallback: {fallback}]" if fallback else "")


@dataclass(frozen=True)
class DecodePlan:
    """How one batch size is decoded, and why (one reason per choice)."""

    batch: int
    graph: bool
    compile: bool
    fused: bool  # the patch step through the decode kernels, and the char step too unless `pair`
    pair: bool  # the char decoder two chars a pass
    pair_torch: bool = False  # ... in PyTorch ops (torch_pair.py), not the Triton kernels
    why: tuple[str, ...] = ()
    fallback: str = ""  # the warning, where this plan replaced one that failed its check at load

    @property
    def char_step(self) -> str:
        if self.pair:
            return TORCH_PAIR if self.pair_torch else PAIR
        return FUSED if self.fused else MODULES

    @property
    def checked(self) -> bool:
        """Whether its decoder is checked against the modules when built: any path but the modules as they are."""
        return self.compile or self.fused or self.pair

    def describe(self) -> str:
        return describe_path(self.graph, self.compile, self.fused, self.char_step, self.fallback)

    def __str__(self) -> str:
        return f"batch {self.batch}: {self.describe()} ({'; '.join(self.why)})"


def _wanted(asked: bool | None, auto: bool, what: str, needs: str = "Triton") -> tuple[bool, str]:
    """An option as asked (True / False) or auto, and the reason; auto needs CUDA (and `needs`, if any)."""
    if asked is None:
        runtime = "CUDA" + (f" with {needs}" if needs else "")
        return auto, f"{what} {'on' if auto else 'off'} by default ({'' if auto else 'needs '}{runtime})"
    return asked, f"{what} {'asked for' if asked else 'turned off'}"


def _kernels_allow(config, batch: int, limit: int, limit_name: str) -> str:
    """Why the kernels cannot run this batch of this model ("" where they can)."""
    if not triton_available():
        return "Triton is not installed"
    if not kernels_take(config):
        return f"the kernels do not tile head size {config.head_dim} (a power of two, 16 or more)"
    if batch > limit:
        return f"batch {batch} is over {limit_name} ({limit})"
    return ""


def plan_decode(config, runtime: Runtime, batch: int, options: DecodeOptions = DecodeOptions()) -> DecodePlan:
    """The decode path for `batch` rows of a model (`config`) on `runtime`, from `options`."""
    auto = kernels_run_on(runtime)
    graph = runtime.device.type == "cuda"
    why = ["CUDA graph: one replay a patch" if graph else
           f"no CUDA graph on {runtime.device.type}: steps run eagerly, a patch stops once its rows have ended"]
    compile, reason = _wanted(options.compile, False, "compiled steps")
    if options.compile is None:
        reason = ("compiled steps off by default (they halve a patch step but compile for each batch size, "
                  "longer than a piece takes: ask for them for long jobs)")
    compile, reason = _within_facts(compile, reason, "Triton is not installed (torch.compile's GPU code is Triton)"
                                    if graph and not triton_available() else "")
    why.append(reason)
    fused, reason = _wanted(options.fused, auto, "fused kernels")
    fused, reason = _within_facts(fused, reason, _kernels_allow(config, batch, FUSED_MAX_BATCH, "FUSED_MAX_BATCH"))
    why.append(reason)
    # Two chars a pass: through the Triton kernels where Triton is there, else in PyTorch ops.
    pair_torch = not triton_available()
    pair, reason = _wanted(options.pair, graph, "two chars a pass", needs="")
    if pair_torch:
        facts = f"batch {batch} is over TORCH_PAIR_MAX_BATCH ({TORCH_PAIR_MAX_BATCH})" if (
            batch > TORCH_PAIR_MAX_BATCH) else ""
    else:
        facts = _kernels_allow(config, batch, PAIR_MAX_BATCH, "PAIR_MAX_BATCH")
    if not facts and config.patch_size % 2:
        facts = f"patch size {config.patch_size} is odd"
    pair, reason = _within_facts(pair, reason, facts)
    if pair and pair_torch:
        reason += ", in PyTorch ops (Triton is not installed)"
    why.append(reason)
    return DecodePlan(batch, graph, compile, fused, pair, pair_torch=pair and pair_torch, why=tuple(why))


def _within_facts(wanted: bool, reason: str, refused: str) -> tuple[bool, str]:
    if wanted and refused:
        return False, f"{reason}, but off: {refused}"
    return wanted, reason
