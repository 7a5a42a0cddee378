"""Check on a GPU that every decode path of the engine writes the same pieces.

fp32, a tiny random model, the same seeds: the modules' operations captured in a CUDA
graph as they are, compiled, the fused Triton kernels one char a step (two pieces at a time:
more would run the modules) and two chars a pass (one, two and four pieces at a time) must
give the same text, as must the CPU, and so must the default path (uncompiled: the kernels, two chars a
pass, and a second graph without the header's line rules). Half the pieces start inside their tune
body, half under a chosen meter, key and length. Each row names the plan it means (`Engine.plan`) and
fails loudly where the engine plans another or its pieces say another ran
(`GeneratedPiece.decode_path`, read off the decoder). Each row prints its check at load
(the path's logits and patch state against the modules', `PatchDecoder.check`). The fallback
row breaks its path on purpose (its compile raises) and must write the same pieces through the
graph of the modules, its pieces saying so. Also compares the noise and the sampling
distribution computed eagerly and compiled. Exits 1 where any text differs.

With --without-triton the process runs as if Triton were not installed (PyTorch's Windows
wheels): it cannot import it. The rows are then the graph of the modules, two chars a pass in
PyTorch ops (one, two and four pieces at a time) and the fallback, whose pair pass is made to
give wrong logits.

    python benchmarks/check_compiled.py
    python benchmarks/check_compiled.py --without-triton
    python benchmarks/check_compiled.py --only pair fallback     # some rows (see --help)
"""
import argparse
import contextlib
import sys
from unittest import mock

import torch

from pipelines.abc.prompts import Prompt
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.header import HeaderControls
from pipelines.generation.options import GenerationLimits
from pipelines.generation.sampling import sorted_distribution, uniform_noise
from pipelines.model.config import preset
from pipelines.model.network import NotaGen
from pipelines.model.runtime import pick_runtime


def failing_compile(fn):
    """A torch.compile that fails as a broken backend does: when the step is first called."""
    def compiled(*args, **kwargs):
        raise RuntimeError("injected: the backend compiler failed")
    return compiled


def wrong_pair_pass():
    """Two chars a pass in PyTorch giving logits that are off by 0.5 (a wrong kernel)."""
    from pipelines.generation.torch_pair import TorchPairStack

    right = TorchPairStack.__call__
    return mock.patch.object(TorchPairStack, "__call__", lambda self, *a: right(self, *a) + 0.5)


# Each row: its key (--only), name, the engine's options, pieces at a time, the plan it must run
# (graph, compile, fused, pair, pair in PyTorch) at that batch, and the fault it injects (its path
# must then fall back to the graph of the modules).
MODULES_GRAPH = (True, False, False, False, False)
WITH_TRITON = [
    ("graph", "graph of the modules", dict(compile=False, fused=False, pair=False), 4, MODULES_GRAPH, None),
    ("compiled", "compiled", dict(compile=True, fused=False, pair=False), 4, (True, True, False, False, False), None),
    ("fused", "fused kernels, one char a step, 2 pieces at a time", dict(compile=True, fused=True, pair=False), 2,
     (True, True, True, False, False), None),
] + [("pair", f"two chars a pass, {n} piece(s) at a time", dict(compile=True, fused=True, pair=True), n,
      (True, True, n <= 2, True, False), None) for n in (1, 2, 4)] + [
    ("default", f"the default (uncompiled), {n} piece(s) at a time", dict(), n, (True, False, n <= 2, True, False),
     None) for n in (1, 4)] + [
    ("fallback", "fallback: two chars a pass whose compile fails, 2 pieces at a time",
     dict(compile=True, fused=True, pair=True), 2, (True, True, True, True, False),
     lambda: mock.patch("pipelines.generation.decoder.compile_step", failing_compile)),
]
WITHOUT_TRITON = [
    ("graph", "graph of the modules (Triton missing)", dict(pair=False), 4, MODULES_GRAPH, None),
] + [("torch-pair", f"two chars a pass in PyTorch (Triton missing), {n} piece(s) at a time", dict(), n,
      (True, False, False, True, True), None) for n in (1, 2, 4)] + [
    ("fallback", "fallback: two chars a pass in PyTorch with wrong logits, 2 pieces at a time", dict(), 2,
     (True, False, False, True, True), wrong_pair_pass),
]


def check_sampling(dev: torch.device):
    seeds, steps = torch.arange(8, device=dev), torch.arange(8, device=dev) * 16 + 3
    eager = uniform_noise(seeds, steps, 128)
    compiled = torch.compile(uniform_noise, dynamic=False)(seeds, steps, 128)
    print("noise: max |compiled - eager| =", (eager - compiled).abs().max().item())
    probs = torch.softmax(torch.randn(8, 128, device=dev), -1)
    args = (probs, torch.full((8, 1), 9, device=dev), torch.full((8, 1), 0.9, device=dev),
            torch.full((8, 1), 1.2, device=dev))
    a, oa = sorted_distribution(*args)
    b, ob = torch.compile(sorted_distribution, dynamic=False)(*args)
    print("distribution: max diff", (a - b).abs().max().item(), "same order", torch.equal(oa, ob))


def run_row(model, runtime, name, options, at_once, wanted, fault, requests, limits) -> list:
    """The row's pieces, `at_once` at a time; raises where the engine plans or runs another path."""
    engine = Engine(model, runtime, **options)
    plan = engine.plan(at_once)
    print(f"{name}: {plan}")
    planned = (plan.graph, plan.compile, plan.fused, plan.pair, plan.pair_torch)
    if planned != wanted:
        raise SystemExit(f"{name}: planned (graph, compile, fused, pair, pair in PyTorch) = {planned}, not {wanted}")
    with fault() if fault else contextlib.nullcontext():
        pieces = [p for i in range(0, len(requests), at_once)
                  for p in engine.generate(requests[i:i + at_once], limits=limits)]
    ran = {p.decode_path for p in pieces}
    if fault:  # the path must have failed its check and given way to the graph of the modules
        plan = engine.plan(at_once)
        if (plan.graph, plan.compile, plan.fused, plan.pair, plan.pair_torch) != MODULES_GRAPH or not plan.fallback:
            raise SystemExit(f"{name}: the broken path did not fall back to the graph of the modules: {plan}")
        print(f"{name}: fell back: {engine.fallback}")
    if ran != {plan.describe()}:
        raise SystemExit(f"{name}: planned {plan.describe()!r}, but ran {sorted(ran)}")
    print(f"{name}: check at load: {engine.decoder(at_once).checked or 'none (the modules as they are)'}")
    engine.unload()
    return pieces


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--without-triton", action="store_true",
                    help="run as if Triton were not installed (the process cannot import it)")
    ap.add_argument("--only", nargs="+", metavar="ROW",
                    help="only these rows: graph, compiled, fused, pair, default, fallback (with Triton), sampling "
                         "(its "
                         "compiled sampling check); graph, torch-pair, fallback (--without-triton)")
    args = ap.parse_args()
    if args.without_triton:
        sys.modules["triton"] = None  # importing it now fails, and find_spec says it is not installed
    rows = WITHOUT_TRITON if args.without_triton else WITH_TRITON
    keys = {r[0] for r in rows} | ({"sampling"} if not args.without_triton else set())
    if args.only and set(args.only) - keys:
        raise SystemExit(f"no such row: {', '.join(sorted(set(args.only) - keys))}; choose from {', '.join(keys)}")
    chosen = set(args.only or keys)
    if "sampling" in chosen:
        check_sampling(torch.device("cuda"))
    torch.manual_seed(0)
    model = NotaGen(preset("tiny")).eval()
    runtime = pick_runtime("cuda", "fp32")
    prompts = [Prompt("Baroque", "Bach, Johann Sebastian", "Choral"),
               Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber")]
    # Half the pieces under a chosen meter, key and length: the header's line rules run in every path's pick.
    # The others start inside their tune body (random weights seldom begin one), where an uncompiled
    # decoder replays its graph without the rules once no row writing is in its header.
    header = HeaderControls(meter="3/4", key="G", bars=8)
    body = "L:1/8\nM:4/4\nK:C\nV:1 treble\nV:2 bass\n[r:0/99][V:1]c8|[V:2]C,8|\n"
    requests = [GenerationRequest(p, seed=i, header=header) if i % 2 else
                GenerationRequest(p, seed=i, prefix="".join(line + "\n" for line in p.header_lines()) + body)
                for i, p in enumerate(prompts * 2)]
    limits = GenerationLimits(max_patches=40, bar_retries=0)
    cpu = Engine(model, pick_runtime("cpu", "fp32")).generate(requests, limits=limits)
    differs = False
    for key, name, options, at_once, wanted, fault in rows:
        if key not in chosen:
            continue
        pieces = run_row(model, runtime, name, options, at_once, wanted, fault, requests, limits)
        same = [a.raw == b.raw for a, b in zip(cpu, pieces)]
        differs |= not all(same)
        print(f"{name} == cpu per piece:", same)
        for a, b in zip(cpu, pieces):
            if a.raw != b.raw:
                n = next(i for i, (x, y) in enumerate(zip(a.raw, b.raw)) if x != y)
                print("  first difference at char", n, "of", len(a.raw), repr(a.raw[n - 5:n + 5]),
                      repr(b.raw[n - 5:n + 5]))
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
