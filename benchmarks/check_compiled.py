"""Check on a GPU that every decode path of the engine writes the same pieces.

fp32, a tiny random model, the same seeds: the modules' operations captured in a CUDA
graph as they are, compiled, the fused Triton kernels one char a step (two pieces at a time:
more would run the modules) and two chars a pass (one, two and four pieces at a time) must
give the same text, as must the CPU. Each row names the plan it means (`Engine.plan`) and
fails loudly where the engine plans another or its pieces say another ran
(`GeneratedPiece.decode_path`, read off the decoder). Also compares the noise and the
sampling distribution computed eagerly and compiled. Exits 1 where any text differs.
"""
import sys

import torch

from pipelines.abc.prompts import Prompt
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.options import GenerationLimits
from pipelines.generation.sampling import sorted_distribution, uniform_noise
from pipelines.model.config import preset
from pipelines.model.network import NotaGen
from pipelines.model.runtime import pick_runtime

# Each row: its name, the engine's options, pieces at a time, and the plan it must run
# (graph, compile, fused, pair) at that batch.
ROWS = [
    ("graph of the modules", dict(compile=False, fused=False, pair=False), 4, (True, False, False, False)),
    ("compiled", dict(compile=True, fused=False, pair=False), 4, (True, True, False, False)),
    ("fused kernels, one char a step, 2 pieces at a time", dict(compile=True, fused=True, pair=False), 2,
     (True, True, True, False)),
] + [(f"two chars a pass, {n} piece(s) at a time", dict(compile=True, fused=True, pair=True), n,
      (True, True, n <= 2, True)) for n in (1, 2, 4)]


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


def run_row(model, runtime, name, options, at_once, wanted, requests, limits) -> list:
    """The row's pieces, `at_once` at a time; raises where the engine plans or runs another path."""
    engine = Engine(model, runtime, **options)
    plan = engine.plan(at_once)
    print(f"{name}: {plan}")
    if (plan.graph, plan.compile, plan.fused, plan.pair) != wanted:
        raise SystemExit(f"{name}: planned (graph, compile, fused, pair) = "
                         f"{(plan.graph, plan.compile, plan.fused, plan.pair)}, not {wanted}")
    pieces = [p for i in range(0, len(requests), at_once) for p in engine.generate(requests[i:i + at_once],
                                                                                    limits=limits)]
    ran = {p.decode_path for p in pieces}
    if ran != {plan.describe()}:
        raise SystemExit(f"{name}: planned {plan.describe()!r}, but ran {sorted(ran)}")
    engine.unload()
    return pieces


def main() -> int:
    check_sampling(torch.device("cuda"))
    torch.manual_seed(0)
    model = NotaGen(preset("tiny")).eval()
    runtime = pick_runtime("cuda", "fp32")
    prompts = [Prompt("Baroque", "Bach, Johann Sebastian", "Choral"),
               Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber")]
    requests = [GenerationRequest(p, seed=i) for i, p in enumerate(prompts * 2)]
    limits = GenerationLimits(max_patches=40, bar_retries=0)
    cpu = Engine(model, pick_runtime("cpu", "fp32")).generate(requests, limits=limits)
    differs = False
    for name, options, at_once, wanted in ROWS:
        pieces = run_row(model, runtime, name, options, at_once, wanted, requests, limits)
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
