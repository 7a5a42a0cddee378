"""The first piece, not the steady state: where a fresh process's seconds go before its first piece is written.

A musician clicks Generate once and waits for everything: Python's imports, reading the checkpoint,
moving it to the GPU, compiling the decode steps (inductor and Triton), capturing the CUDA graph,
and only then the piece. This script runs each of those in a fresh process and times them apart:

- driver rows: a child process imports the engine, loads the model file, builds the patch decoder for
  the batch (`Engine.decoder`: compilation and graph capture happen here), writes the pieces, then builds
  the decoder for each `--then-batches` size in the same process (the stall of asking for a different
  number of pieces);
- CLI rows: `notagen generate` (through launch.cli, as the installed command) from start to finished files, the
  figure a musician sees.

Each runs with empty on-disk compile caches (TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR in a new
folder: "cold") and again with the caches the cold run left ("warm"). The reference is the same piece
written by the warm engine inside one process (the steady state), measured in the same run: the
ratio says how many times the steady state's time the first piece costs.

    python benchmarks/first_piece.py                       # NotaGen-X-shaped random weights, fp16
    python benchmarks/first_piece.py --model CKPT --batches 1 4 --patches 200
    python benchmarks/first_piece.py --batches 1 --skip-cli --studio   # the studio's first click too

Random weights seldom write an eos, so every piece runs to the patch limit: `--patches` patches of
16 chars. Needs a CUDA GPU for the figures that matter; on a CPU it runs (small models) as a check.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = ("Romantic", "Chopin, Frederic", "Keyboard")
NOTAGEN = "import sys, launch; sys.exit(launch.cli(sys.argv[1:]))"  # the `notagen` command, without an install


def make_checkpoint(path: Path, preset_name: str) -> None:
    """Random weights of a preset's shape, saved as official checkpoints are ({'model': state_dict}, fp32)."""
    import torch

    from pipelines.model.config import preset
    from pipelines.model.network import NotaGen

    torch.manual_seed(0)
    model = NotaGen(preset(preset_name))
    torch.save({"model": model.state_dict()}, path)


def child(args) -> None:
    """One fresh process: the phases, as JSON on stdout's last line."""
    t0 = float(os.environ["FIRST_PIECE_T0"])
    phases = {}
    import torch

    from pipelines.abc.prompts import Prompt
    from pipelines.generation.engine import GenerationRequest
    from pipelines.generation.loading import load_engine
    from pipelines.generation.options import GenerationLimits, SamplingConfig
    phases["start and imports"] = time.time() - t0

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    mark = time.perf_counter()
    from pipelines.generation.plan import DecodeOptions
    compile = {"auto": None, "on": True, "off": False}[args.compile]
    engine = load_engine(Path(args.model), args.device, args.dtype, DecodeOptions(compile=compile))
    sync()
    phases["load the model"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with torch.inference_mode():  # as Engine.generate builds it
        engine.decoder(args.batch)
    sync()
    phases["build the decoder (compile, capture)"] = time.perf_counter() - mark
    for part, seconds in engine.decoder(args.batch).timings.items():
        phases[f"  of which {part}"] = seconds
    requests = [GenerationRequest(prompt=Prompt(*PROMPT), seed=i) for i in range(args.batch)]
    limits = GenerationLimits(max_patches=args.patches, max_seconds=3600, bar_retries=0)
    mark = time.perf_counter()
    pieces = engine.generate(requests, SamplingConfig(), limits)
    sync()
    phases["write the pieces"] = time.perf_counter() - mark
    chars = sum(p.chars for p in pieces)
    total = time.time() - t0
    # The steady state: the same pieces again, warm, in this process.
    mark = time.perf_counter()
    engine.generate(requests, SamplingConfig(), limits)
    sync()
    steady = time.perf_counter() - mark
    stalls = {}
    for other in args.then_batches:
        mark = time.perf_counter()
        with torch.inference_mode():
            engine.decoder(other)
        sync()
        stalls[str(other)] = time.perf_counter() - mark
    print(json.dumps({"phases": phases, "total": total, "chars": chars, "steady": steady, "stalls": stalls,
                      "plan": str(engine.plan(args.batch)), "path": pieces[0].decode_path}))


def spawn(argv: list[str], caches: Path, ok_codes=(0,)) -> tuple[float, str]:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(caches / "inductor"), TRITON_CACHE_DIR=str(caches / "triton"),
               FIRST_PIECE_T0=repr(time.time()), PYTHONPATH=os.pathsep.join(
                   [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    start = time.time()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode not in ok_codes:
        sys.exit(f"{' '.join(argv[:3])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def studio_child(args) -> None:
    """One fresh process as the studio is when a musician clicks Generate: its backend started, the model
    not loaded, the render worker started (the studio starts it as a job starts). Times the click to the
    finished job (load, decoder build, the piece, its files) and the engraving of a real piece: random
    weights end no piece, so the job engraves nothing, and a chorale from the test fixtures stands in."""
    import shutil

    from pipelines.render.score import RenderConfig, render_abc
    from pipelines.service import Backend, GenerationSpec, Settings, Workspace

    workspace = Workspace.open(Path(tempfile.mkdtemp(prefix="studio-")) / "workspace")
    shutil.copy(args.model, workspace.area("models") / "model.pth")
    backend = Backend(workspace, Settings(device=args.device, dtype=args.dtype))
    chorale = json.loads((REPO / "tests" / "fixtures" / "upstream" / "postprocess.json").read_text())[0]
    try:
        render_abc(chorale["postprocessed"], RenderConfig())  # the studio's worker, warm as after its first piece
        mark = time.perf_counter()
        spec = GenerationSpec("models/model.pth", *PROMPT, count=args.batch, max_patches=args.patches,
                              bar_retries=0)
        done = backend.jobs.wait(backend.generation.submit(spec).id, 600)
        job = time.perf_counter() - mark
        mark = time.perf_counter()
        render_abc(chorale["postprocessed"], RenderConfig())
        engrave = time.perf_counter() - mark
        print(json.dumps({"job": job, "engrave": engrave, "state": done.state,
                          "chorale_chars": len(chorale["postprocessed"])}))
    finally:
        backend.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint; default: random weights of --preset's shape")
    p.add_argument("--preset", default="notagen-x")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--then-batches", type=int, nargs="*", default=[8], help="decoders built after, same process")
    p.add_argument("--patches", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="driver rows: compile the decode steps (auto: the engine's choice)")
    p.add_argument("--skip-cli", action="store_true", help="driver rows only")
    p.add_argument("--studio", action="store_true",
                   help="also the studio's first click: the service in a fresh process, the model not loaded")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--studio-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.studio_child:
        return studio_child(args)
    work = Path(tempfile.mkdtemp(prefix="first-piece-"))
    if args.model is None:
        args.model = work / f"{args.preset}.pth"
        mark = time.perf_counter()
        make_checkpoint(args.model, args.preset)
        print(f"random {args.preset} weights: {args.model} ({args.model.stat().st_size / 2**30:.2f} GiB, "
              f"{time.perf_counter() - mark:.1f} s to write)")
    rows = []
    for batch in args.batches:
        caches = work / f"caches-driver-{batch}"
        for state in ("cold", "warm"):
            wall, out = spawn([sys.executable, __file__, "--child", "--model", str(args.model), "--batch", str(batch),
                               "--patches", str(args.patches), "--device", args.device, "--dtype", args.dtype,
                               "--compile", args.compile, "--then-batches", *map(str, args.then_batches)], caches)
            found = json.loads(out.strip().splitlines()[-1])
            rows.append(("driver", batch, state, wall, found))
            print(f"\nbatch {batch}, {state} caches, fresh process: {wall:.1f} s wall; path: {found['path']}")
            for name, seconds in found["phases"].items():
                print(f"  {name:<40} {seconds:7.2f} s")
            print(f"  {'first piece(s) in all':<40} {found['total']:7.2f} s  ({found['chars']} chars)")
            print(f"  {'the same again, warm (reference)':<40} {found['steady']:7.2f} s  "
                  f"-> the first costs {found['total'] / found['steady']:.1f}x the steady state")
            for other, seconds in found["stalls"].items():
                print(f"  {'then a decoder for batch ' + other:<40} {seconds:7.2f} s")
        if args.skip_cli:
            continue
        caches = work / f"caches-cli-{batch}"
        for state in ("cold", "warm"):
            out_dir = work / f"cli-{batch}-{state}"
            wall, _ = spawn([sys.executable, "-c", NOTAGEN, "generate", "--model", str(args.model),
                             "--period", PROMPT[0], "--composer", PROMPT[1], "--instrumentation", PROMPT[2],
                             "--num", str(batch), "--max-patches", str(args.patches), "--device", args.device,
                             "--dtype", args.dtype, "--bar-retries", "0", "--out", str(out_dir)], caches,
                            ok_codes=(0, 1))  # 1: no piece ended, as expected of random weights
            sidecar = json.loads(sorted(out_dir.glob("*.json"))[0].read_text())
            rows.append(("cli", batch, state, wall, sidecar))
            print(f"\n`notagen generate --num {batch}`, {state} caches: {wall:.1f} s from start to finished files "
                  f"(its sidecar: warm-up {sidecar.get('warmup_seconds')} s, then {sidecar.get('seconds')} s at "
                  f"{sidecar.get('chars_per_second')} chars/s)")
    if args.studio:
        caches = work / "caches-studio"
        for state in ("cold", "warm"):
            wall, out = spawn([sys.executable, __file__, "--studio-child", "--model", str(args.model), "--batch", "1",
                               "--patches", str(args.patches), "--device", args.device, "--dtype", args.dtype],
                              caches)
            found = json.loads(out.strip().splitlines()[-1])
            print(f"\nstudio, model not loaded, {state} caches: click to finished job {found['job']:.2f} s "
                  f"({found['state']}), engraving a {found['chorale_chars']}-char chorale {found['engrave']:.2f} s: "
                  f"click to engraved piece about {found['job'] + found['engrave']:.2f} s")
    print("\nsummary (seconds, fresh process):")
    print(f"{'what':<10} {'batch':>5} {'caches':>6} {'wall':>7} {'steady':>7}")
    for kind, batch, state, wall, found in rows:
        steady = f"{found['steady']:7.2f}" if kind == "driver" else "      -"
        print(f"{kind:<10} {batch:>5} {state:>6} {wall:7.1f} {steady}")


if __name__ == "__main__":
    main()
