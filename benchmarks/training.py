"""Training step memory and speed: upstream NotaGen's fine-tuning recipe vs the studio's, in one run.

NotaGen-X's shape (random weights), one 1024-patch sample per optimizer step.
For each variant: peak GPU memory (`torch.cuda.max_memory_allocated`, from an
empty card to the end of the timed steps: weights, gradients, optimizer state,
activations) and the median wall time of an optimizer step.

- upstream: fp16 autocast + GradScaler + AdamW (PyTorch's default implementation),
  batch 1, no gradient checkpointing, full fine-tuning, no clipping;
- studio: the training loop's own recipe (`pipelines.training.recipe`), full fine-tuning;
- lora: the studio recipe with LoRA adapters.

Variants take the studio's levers as `NAME:key=value,...` with NAME upstream,
studio or lora and keys among TrainConfig's fields (checkpointing, optimizer,
compile, precision, dropout, frozen_dtype, lora_rank, freeze_patch_decoder,
grad_clip), e.g.

    python benchmarks/training.py --variant upstream --variant studio:checkpointing=char \\
        --variant studio:checkpointing=char,compile=1 --variant lora:checkpointing=none

Goals (issue 6): studio full fine-tuning <= 12 GiB and a step no slower than
upstream; LoRA <= 8 GiB. CPU smoke check: `--preset tiny --device cpu --patches 64`.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.abc.tokenizer import BOS_ID, EOS_ID  # noqa: E402
from pipelines.model.config import preset
from pipelines.model.network import NotaGen  # noqa: E402
from pipelines.training.config import TrainConfig  # noqa: E402
from pipelines.training.recipe import Amp, build_optimizer, optimizer_step, prepare_model, resolve_precision  # noqa: E402
from pipelines.training.schedule import WarmupDecay, build_scheduler  # noqa: E402

GIB = 2**30
DEFAULT_VARIANTS = ("upstream", "studio", "lora")
GOALS = {"studio": 12.0, "lora": 8.0}  # GiB


def random_piece(patches: int, patch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, N, P) ids shaped like a training piece: bos patch, patches of printable chars, eos patch."""
    ids = torch.randint(32, 127, (patches, patch_size), generator=generator)
    lengths = torch.randint(1, patch_size + 1, (patches,), generator=generator)
    for i, n in enumerate(lengths.tolist()):
        if n < patch_size:
            ids[i, n] = EOS_ID
            ids[i, n + 1:] = 0
    ids[0] = torch.tensor([BOS_ID] * (patch_size - 1) + [EOS_ID])
    ids[-1] = torch.tensor([BOS_ID] + [EOS_ID] * (patch_size - 1))
    return ids[None], torch.ones(1, patches, dtype=torch.long)


def parse_variant(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    if name not in DEFAULT_VARIANTS:
        raise SystemExit(f"variant {spec!r}: the recipe must be one of {', '.join(DEFAULT_VARIANTS)}")
    types = {f.name: f.type for f in fields(TrainConfig)}
    levers = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"variant {spec!r}: {key!r} is not a TrainConfig field")
        kind = str(types[key])
        if "bool" in kind:
            levers[key] = value.lower() in ("1", "true", "yes")
        elif "int" in kind:
            levers[key] = int(value)
        elif "float" in kind:
            levers[key] = float(value)
        else:
            levers[key] = value
    if name == "upstream" and levers:
        raise SystemExit(f"variant {spec!r}: upstream's recipe is fixed")
    return name, levers


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def upstream_setup(model: NotaGen, device: torch.device):
    """As upstream's finetune/train-gen.py: AdamW(lr 1e-5, defaults), fp16 autocast, a GradScaler."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    def step(patches, masks) -> float:
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=device.type == "cuda"):
            loss = model(patches, masks)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        model.zero_grad(set_to_none=True)
        return loss.item()

    return step


def studio_setup(model: NotaGen, device: torch.device, levers: dict, lora: bool):
    base = {"lora_rank": 16} if lora else {}
    config = TrainConfig(data_dir=Path("."), out_dir=Path("."), base="benchmark", **{**base, **levers})
    precision = resolve_precision(config.precision, device)
    model, _ = prepare_model(model, config, precision, device)
    optimizer = build_optimizer(model, config, device)
    scheduler = build_scheduler(optimizer, WarmupDecay(config.warmup_steps, 10_000, config.schedule))
    amp = Amp.create(device, precision)

    def step(patches, masks) -> float:
        with amp.autocast():
            loss = model(patches, masks)
        (amp.scaler.scale(loss) if amp.scaler else loss).backward()
        stepped, _ = optimizer_step(model, optimizer, amp, config.grad_clip)
        if stepped:
            scheduler.step()
        return loss.item()

    return step, config, precision


def run_variant(spec: str, args, device: torch.device) -> dict:
    name, levers = parse_variant(spec)
    release(device)
    torch.manual_seed(0)
    config = preset(args.preset)
    with torch.device(device):
        model = NotaGen(config)
    model.train()
    detail = "fp16+GradScaler" if device.type == "cuda" else "fp32 (no fp16 autocast on CPU)"
    detail += ", AdamW default, no checkpointing"
    if name == "upstream":
        step = upstream_setup(model, device)
    else:
        step, tc, precision = studio_setup(model, device, levers, lora=name == "lora")
        detail = (f"{precision}, ckpt={tc.checkpointing}, opt={tc.optimizer}, compile={int(tc.compile)}"
                  + (f", lora r={tc.lora_rank}" if tc.lora_rank else ""))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    patches, masks = random_piece(args.patches, config.patch_size, torch.Generator().manual_seed(1))
    patches, masks = patches.to(device), masks.to(device)
    times, losses = [], []
    try:
        for i in range(args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            losses.append(step(patches, masks))
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError as e:
        del model, step
        release(device)
        return {"variant": spec, "recipe": name, "detail": detail, "error": f"out of memory: {str(e)[:120]}"}
    peak = torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else None
    reserved = torch.cuda.max_memory_reserved() / GIB if device.type == "cuda" else None
    del model, step
    release(device)
    return {"variant": spec, "recipe": name, "detail": detail, "trainable_parameters": trainable,
            "peak_gib": peak, "reserved_gib": reserved, "median_step_s": statistics.median(times),
            "min_step_s": min(times), "first_loss": losses[0], "last_loss": losses[-1]}


def print_table(results: list[dict], device_name: str, args) -> None:
    print(f"\nNotaGen training step, preset {args.preset}, {args.patches} patches, batch 1, on {device_name}")
    print(f"median of {args.steps} steps after {args.warmup} warm-up steps\n")
    ref = next((r for r in results if r["recipe"] == "upstream" and "error" not in r), None)
    header = f"{'variant':36} {'peak GiB':>9} {'step s':>8} {'mem/up':>7} {'time/up':>8}  goal"
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['variant']:36} {r['error']}")
            continue
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "n/a"
        mem_ratio = f"{r['peak_gib'] / ref['peak_gib']:.2f}x" if ref and r["peak_gib"] is not None else "-"
        time_ratio = f"{r['median_step_s'] / ref['median_step_s']:.2f}x" if ref else "-"
        goal = ""
        if r["recipe"] in GOALS and r["peak_gib"] is not None:
            ok_mem = r["peak_gib"] <= GOALS[r["recipe"]]
            ok_time = r["recipe"] != "studio" or (ref is not None and r["median_step_s"] <= ref["median_step_s"])
            goal = f"<= {GOALS[r['recipe']]:.0f} GiB{' & <= upstream time' if r['recipe'] == 'studio' else ''}: " \
                   f"{'met' if ok_mem and ok_time else 'NOT met'}"
        print(f"{r['variant']:36} {peak:>9} {r['median_step_s']:>8.3f} {mem_ratio:>7} {time_ratio:>8}  {goal}")
        print(f"{'':36} {r['detail']}; {r['trainable_parameters']:,} trainable")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="notagen-x")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--patches", type=int, default=1024, help="patches in the sample (<= the preset's length)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (optimizer state, compile)")
    parser.add_argument("--variant", action="append", default=None,
                        help="NAME[:key=value,...] (repeatable; default: upstream, studio, lora)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.patches > preset(args.preset).patch_length:
        raise SystemExit(f"--patches {args.patches} exceeds {args.preset}'s patch length")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # both recipes alike
        name = torch.cuda.get_device_name(device)
    else:
        name = "CPU"
    results = [run_variant(spec, args, device) for spec in (args.variant or DEFAULT_VARIANTS)]
    print_table(results, name, args)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "preset": args.preset, "patches": args.patches,
                                         "results": results}, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
