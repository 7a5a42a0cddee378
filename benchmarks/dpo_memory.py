"""DPO memory: peak GPU memory of one DPOP step with policy and reference, NotaGen-X shape, full context.

The studio's recipe (what `notagen dpo` does: fp32 policy under bf16 autocast with
the char decoder checkpointed, the frozen reference in bf16) against upstream's
(policy and reference both fp32, no autocast, no checkpointing), in the same run,
on one (chosen, rejected) pair of full-length pieces. Also prints the estimate
`notagen dpo` shows before it starts. Random weights: memory does not depend on them.

    python benchmarks/dpo_memory.py                 # NotaGen-X shape, needs a GPU
    python benchmarks/dpo_memory.py --preset demo   # anything smaller
"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from pipelines.dpo.config import DPOConfig
from pipelines.dpo.logprobs import sequence_logprobs
from pipelines.dpo.loop import dpo_step, load_policy_and_reference
from pipelines.dpo.memory import estimate_dpo_memory
from pipelines.model.checkpoint import ModelCard, save_checkpoint
from pipelines.model.config import preset
from pipelines.model.network import NotaGen
from pipelines.training.recipe import Amp, build_optimizer

GIB = 2 ** 30


def dpo_step_peak(model_path: Path, config: DPOConfig, precision: str, steps: int = 2) -> tuple[float, float]:
    """(peak GiB, seconds per step) of `steps` DPOP steps on one random full-length pair."""
    device = torch.device("cuda")
    policy, reference, _ = load_policy_and_reference(model_path, config, device)
    amp = Amp.create(device, precision)
    c = policy.config
    gen = torch.Generator().manual_seed(0)
    patches = torch.randint(3, 128, (2, c.patch_length, c.patch_size), generator=gen).to(device)
    masks = torch.ones(2, c.patch_length, dtype=torch.long, device=device)
    with torch.no_grad(), amp.autocast():
        ref = sequence_logprobs(reference, patches, masks).float()
    optimizer = build_optimizer(policy, config, device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 1):  # the first step (optimizer state, kernel choice) is not timed
        if step == 1:
            torch.cuda.synchronize()
            start = time.perf_counter()
        dpo_step(policy, optimizer, amp, patches, masks, ref[:1], ref[1:], config)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / GIB
    del policy, reference, optimizer, patches, masks, ref
    gc.collect()
    torch.cuda.empty_cache()
    return peak, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="notagen-x")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark measures GPU memory: run it on a CUDA machine")
    config = preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.pth"
        torch.manual_seed(0)
        save_checkpoint(path, NotaGen(config), ModelCard(config=config))
        studio = DPOConfig(model=path, data_dir=Path(tmp), out_dir=Path(tmp))
        upstream = replace(studio, reference_dtype="fp32", checkpointing="none", precision="fp32")
        print(f"device {torch.cuda.get_device_name()}, model {args.preset} ({config.patch_length} patches "
              f"of {config.patch_size}), one (chosen, rejected) pair per step")
        estimate = estimate_dpo_memory(config)
        print(f"estimate (notagen dpo): {estimate.describe()}")
        rows = []
        for label, cfg, precision in (("studio: bf16 autocast, bf16 reference, char checkpointing", studio, "bf16"),
                                      ("upstream: fp32 policy and reference, no checkpointing", upstream, "fp32")):
            try:
                peak, seconds = dpo_step_peak(path, cfg, precision)
            except torch.OutOfMemoryError:
                peak, seconds = float("nan"), float("nan")
                torch.cuda.empty_cache()
            rows.append((label, peak, seconds))
            print(f"{label}: peak {peak:.2f} GiB, {seconds:.2f} s per step", flush=True)
    studio_peak, upstream_peak = rows[0][1], rows[1][1]
    print(f"\nstudio / upstream peak: {studio_peak / upstream_peak:.2f}; "
          f"studio under 24 GB (22.35 GiB): {studio_peak < 24e9 / GIB}")


if __name__ == "__main__":
    main()
