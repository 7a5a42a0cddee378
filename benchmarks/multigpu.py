"""Several processes against one: training throughput and DPO sampling wall time, with the ratio.

    # training: N processes of batch B against 1 process of batch N x B (the same global batch)
    python benchmarks/multigpu.py train --data DATASET --preset demo --batch-size 4 --steps 40 --nproc 2
    # DPO's sampling step: the pieces of N processes against those of 1 (same seeds), and the time
    python benchmarks/multigpu.py sample --model MODEL.pth --data DATASET --samples 200 --max-patches 600 \
        --batch 50 --nproc 2

Each side runs in its own launch (`python -m torch.distributed.run --standalone`), as a user
would start it; on CPU (`--device cpu`) the processes talk through gloo, on GPUs through NCCL,
one GPU per process. `train` prints each side's chars/s (global chars, median of the steps
after the first `--skip`), the ratio and the largest loss difference between the curves;
`sample` prints each side's generation seconds (model load, compile with warm caches, generation
and gather), the ratio and whether the two sets of pieces are the same; process r generates
batches r, r+N, ... of the one-process cut, so give it at least N batches. `sample-worker` is
what `sample` launches in every process.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.training.runlog import LOG_NAME, read_train_log  # noqa: E402


def launch(nproc: int, args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """`args` (a module or script and its options) in `nproc` processes through torchrun."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def train_args(data: Path, out: Path, preset: str, batch: int, steps: int, device: str, extra: list[str]) -> list[str]:
    return ["-m", "pipelines.cli", "train", "--data", str(data), "--out", str(out), "--preset", preset,
            "--batch-size", str(batch), "--max-steps", str(steps), "--epochs", "1000", "--warmup-steps", "0",
            "--patience", "0", "--dropout", "0", "--device", device, *extra]


def compare_training(args) -> dict:
    sides = {}
    for nproc, batch in ((1, args.nproc * args.batch_size), (args.nproc, args.batch_size)):
        out = args.out / f"{nproc}proc"
        started = time.monotonic()
        launch(nproc, train_args(args.data, out, args.preset, batch, args.steps, args.device, args.extra))
        log = read_train_log(out / LOG_NAME)
        steps = [r for r in log if r["event"] == "step"]
        sides[nproc] = {"batch_per_process": batch, "seconds": time.monotonic() - started,
                        "chars_per_s": statistics.median(r["chars_per_s"] for r in steps[args.skip:]),
                        "losses": [r["loss"] for r in steps],
                        "processes": next(r["processes"] for r in log if r["event"] == "start")}
    one, many = sides[1], sides[args.nproc]
    diff = max(abs(a - b) for a, b in zip(one["losses"], many["losses"]))
    return {"one": one, "many": many, "ratio": many["chars_per_s"] / one["chars_per_s"], "max_loss_diff": diff}


def sample_args(args, nproc: int, out: Path) -> list[str]:
    return [str(Path(__file__).resolve()), "sample-worker", "--model", str(args.model), "--data", str(args.data),
            "--samples", str(args.samples), "--max-patches", str(args.max_patches), "--batch", str(args.batch),
            "--seed", str(args.seed), "--device", args.device, "--out", str(out)]


def compare_sampling(args) -> dict:
    # One short warm-up launch fills the compile caches (Inductor's, on disk) for the batch shape,
    # so neither measured side pays a first compile the other does not.
    warm = argparse.Namespace(**{**vars(args), "samples": args.batch, "max_patches": 4})
    launch(1, sample_args(warm, 1, args.out / "warmup"))
    sides = {}
    for nproc in (1, args.nproc):
        out = args.out / f"{nproc}proc"
        launch(nproc, sample_args(args, nproc, out))
        sides[nproc] = json.loads((out / "pieces.json").read_text(encoding="utf-8"))
    one, many = sides[1], sides[args.nproc]
    return {"one_s": one["seconds"], "many_s": many["seconds"], "ratio": one["seconds"] / many["seconds"],
            "same_pieces": one["pieces"] == many["pieces"], "pieces": len(one["pieces"]),
            "processes": many["processes"]}


def sample_worker(args) -> None:
    """One process of a sampling launch: its share of the pieces, then all of them on the first process."""
    import torch.distributed as dist
    from accelerate import PartialState

    from pipelines.dpo.config import DPOConfig
    from pipelines.dpo.loop import dataset_prompt_list, generate_candidates

    state = PartialState(cpu=args.device == "cpu")
    device = args.device if args.device == "cpu" else f"cuda:{state.local_process_index}"
    config = DPOConfig(model=args.model, data_dir=args.data, out_dir=args.out, samples=args.samples,
                       generation_batch=args.batch, max_patches=args.max_patches, device=device, seed=args.seed)
    prompts = dataset_prompt_list(args.data)
    state.wait_for_everyone()
    started = time.monotonic()
    pieces = generate_candidates(args.model, prompts, config, 1, args.out / f"samples_rank{state.process_index}",
                                 rank=state.process_index, world=state.num_processes)
    seconds = time.monotonic() - started  # includes the gather: the step is done when every piece is everywhere
    if state.is_main_process:
        record = {"seconds": seconds, "processes": state.num_processes,
                  "pieces": [{"seed": p.seed, "prompt": p.prompt.line, "status": p.status, "raw": p.text} for p in pieces]}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pieces.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    state.wait_for_everyone()
    if dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, default=Path("tmp/multigpu"))
    t.add_argument("--preset", default="demo")
    t.add_argument("--batch-size", type=int, default=4, help="per process; the 1-process run takes nproc x this")
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the median")
    t.add_argument("--nproc", type=int, default=2)
    t.add_argument("--device", default="cuda")
    t.add_argument("extra", nargs="*", help="more `notagen train` options, after --")
    for name in ("sample", "sample-worker"):
        s = sub.add_parser(name)
        s.add_argument("--model", type=Path, required=True)
        s.add_argument("--data", type=Path, required=True, help="a dataset folder: its prompts.txt is cycled")
        s.add_argument("--out", type=Path, default=Path("tmp/multigpu-sample"))
        s.add_argument("--samples", type=int, default=32)
        s.add_argument("--max-patches", type=int, default=64)
        s.add_argument("--batch", type=int, default=8, help="pieces per engine batch in each process")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--nproc", type=int, default=2)
        s.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    if args.mode == "sample-worker":
        sample_worker(args)
        return 0
    if args.mode == "train":
        r = compare_training(args)
        print(f"1 process  x batch {r['one']['batch_per_process']}: {r['one']['chars_per_s']:,.0f} chars/s")
        print(f"{r['many']['processes']} processes x batch {r['many']['batch_per_process']}: "
              f"{r['many']['chars_per_s']:,.0f} chars/s")
        print(f"ratio {r['ratio']:.2f}x; largest loss difference over {len(r['one']['losses'])} steps "
              f"{r['max_loss_diff']:.2e}")
    else:
        r = compare_sampling(args)
        print(f"{r['pieces']} pieces: 1 process {r['one_s']:.1f} s, {r['processes']} processes {r['many_s']:.1f} s, "
              f"ratio {r['ratio']:.2f}x; same pieces: {r['same_pieces']}")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
