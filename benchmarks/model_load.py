"""Loading a model file for the GPU: left in the file's mapping until the move, or copied out first.

The studio reads model files memory-mapped, and nothing a loader keeps may stay in the mapping
(Windows refuses to replace a mapped file, and a run's best.pth is saved over while the studio
may hold it). For the GPU the generation loader asks `leave_mapped=True`, because the Engine's move
to the GPU copies every weight out at once; this compares that with copying out on the CPU first:

- mapped: `load_checkpoint(path, leave_mapped=True)` (CPU, fp32, in the mapping), then `.to(cuda, fp16)`;
- copied: `load_checkpoint(path, dtype=fp16)` (converted on the CPU: out of the mapping), then `.to(cuda)`.

Each load runs in a new process with the file in the page cache; seconds to a model on the GPU,
median of --repeat runs. The file is a NotaGen-X-shaped checkpoint of random weights (about 2 GB
fp32), written to --file unless it is there.

Usage: python benchmarks/model_load.py [--file CKPT] [--repeat 3] [--preset notagen-x]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ONE_LOAD = """
import sys, time, torch
sys.path.insert(0, {repo!r})
from pipelines.model.checkpoint import load_checkpoint
torch.zeros(1, device="cuda"); torch.cuda.synchronize()  # CUDA context outside the timing
start = time.perf_counter()
if {path!r} == "mapped":
    model = load_checkpoint({file!r}, leave_mapped=True).model.to(device="cuda", dtype=torch.float16)
else:
    model = load_checkpoint({file!r}, dtype=torch.float16).model.to("cuda")
torch.cuda.synchronize()
print(time.perf_counter() - start)
"""

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, default=Path(tempfile.gettempdir()) / "notagenx-shaped.pth",
                        help="the checkpoint to load (written first, random weights of --preset, if missing)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--preset", default="notagen-x")
    args = parser.parse_args()

    import torch

    from pipelines.model.checkpoint import ModelCard, save_checkpoint
    from pipelines.model.config import preset
    from pipelines.model.network import NotaGen

    if not args.file.is_file():
        torch.manual_seed(0)
        model = NotaGen(preset(args.preset))
        save_checkpoint(args.file, model, ModelCard(config=model.config))
        del model
    args.file.read_bytes()  # into the page cache
    print(f"{torch.cuda.get_device_name()}, {args.file.stat().st_size / 2**30:.2f} GiB file ({args.preset})")
    times: dict[str, list[float]] = {"mapped": [], "copied": []}
    for _ in range(args.repeat):
        for path in times:
            code = ONE_LOAD.format(repo=str(REPO), path=path, file=str(args.file))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            times[path].append(float(out.stdout.strip().splitlines()[-1]))
    for path, seconds in times.items():
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"{path:<7} {statistics.median(seconds):6.2f} s to the GPU (runs: {runs})")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - started:.0f} s")
    sys.exit(code)
