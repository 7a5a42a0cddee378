"""`notagen train`, `notagen merge-lora` and `notagen download-notagenx`.

Several GPUs: `accelerate launch --multi_gpu --num_processes N -m pipelines.cli train ...`
(or `torchrun --nproc_per_node N -m pipelines.cli train ...`; several machines: add
accelerate's / torchrun's machine options). Every process runs the same command and
trains on its own shard of each epoch; only the first writes files and prints. Ctrl-C stops
after the current step and leaves a resumable checkpoint (`--resume`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from pipelines.commands.interrupt import ctrl_c_stops
from pipelines.fields import add_option, values_of
from pipelines.training.config import TrainConfig

DEFAULT_MODELS_DIR = Path("workspace") / "models"

# TrainConfig fields with a flag of the same name (--max-steps sets max_steps); defaults, ranges,
# choices and help come from the field.
TRAIN_OPTIONS = ("epochs", "lr", "batch_size", "grad_accum", "max_steps", "warmup_steps", "schedule", "min_lr_ratio",
                 "weight_decay", "grad_clip", "patience", "save_every", "lora_rank", "lora_alpha", "lora_dropout",
                 "freeze_patch_decoder", "key_augment", "seed", "dropout", "device", "precision", "checkpointing",
                 "optimizer", "frozen_dtype", "compile", "data_workers", "resume")


def register(subparsers):
    p = subparsers.add_parser("train", help="fine-tune NotaGen (full or LoRA) or train one from scratch")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (from `notagen dataset build`)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, log, prompts.txt")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--base", help="checkpoint file to start from, or 'notagen-x'")
    start.add_argument("--preset", help="train from scratch with this model size (e.g. demo, tiny)")
    p.add_argument("--models-dir", type=Path, action="append", default=None,
                   help=f"folder searched for NotaGen-X by name (default {DEFAULT_MODELS_DIR}); repeatable")
    for name in TRAIN_OPTIONS:
        add_option(p, TrainConfig, name)
    p.add_argument("--merge", action="store_true", help="LoRA: also write merged.pth (base + best adapter)")
    p.add_argument("--quiet", action="store_true", help="print only evaluations and the result")
    p.set_defaults(func=run_train)

    p = subparsers.add_parser("merge-lora", help="fold a LoRA adapter into a full checkpoint")
    p.add_argument("--adapter", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--base", type=Path, default=None, help="the base model file, if not where it was when trained")
    p.add_argument("--models-dir", type=Path, action="append", default=None)
    p.set_defaults(func=run_merge)

    p = subparsers.add_parser("download-notagenx", help="fetch NotaGen-X from the official Hugging Face repository")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.set_defaults(func=run_download)


def config_from_args(args) -> TrainConfig:
    """The run's settings; TrainConfig refuses values out of range with its own message."""
    return TrainConfig(data_dir=args.data, out_dir=args.out, base=args.base, preset=args.preset,
                       models_dirs=args.models_dir or [DEFAULT_MODELS_DIR], **values_of(args, TRAIN_OPTIONS))


def format_record(record: dict) -> str | None:
    event = record["event"]
    if event == "step":
        eta = record["eta_s"]
        return (f"step {record['step']}/{record['total_steps']} epoch {record['epoch']} loss {record['loss']:.4f} "
                f"lr {record['lr']:.2e} {record['chars_per_s']:.0f} chars/s eta {eta // 60:.0f}m{eta % 60:02.0f}s")
    if event == "eval":
        loss = "n/a (no eval split)" if record["eval_loss"] is None else f"{record['eval_loss']:.4f}"
        return f"epoch {record['epoch']}: eval loss {loss}{' (best)' if record['best'] else ''}"
    if event in ("start", "resume"):
        return (f"{event} at step {record['step']} of {record['total_steps']} on {record['device']} "
                f"({record['precision']}, {record['processes']} process(es), "
                f"{record['trainable_parameters']:,} trainable parameters)")
    return None


def run_train(args) -> int:
    from pipelines.model.lora import merge_lora
    from pipelines.training import train

    config = config_from_args(args)

    def on_log(record):
        line = format_record(record)
        if line and not (args.quiet and record["event"] == "step"):
            print(line, flush=True)

    with ctrl_c_stops("stopping after this step (Ctrl-C again to abort without a checkpoint)") as should_stop:
        result = train(config, on_log=on_log, should_stop=should_stop)
    from accelerate.state import PartialState

    if not PartialState().is_main_process:  # other processes of a multi-GPU run stay quiet
        return 0 if result.status != "cancelled" else 130
    best = f"{result.best_eval_loss:.4f}" if result.best_eval_loss is not None else "n/a"
    print(f"{result.status} after {result.step} steps; best eval loss {best}; "
          f"best model {result.best_path}; resumable state {result.last_path}")
    if args.merge and config.lora_rank and result.best_path:
        merged = merge_lora(result.best_path, config.out_dir / "merged.pth", models_dirs=config.models_dirs)
        print(f"merged model {merged}")
    return 0 if result.status != "cancelled" else 130


def run_merge(args) -> int:
    from pipelines.model.lora import merge_lora

    out = merge_lora(args.adapter, args.out, base_path=args.base, models_dirs=args.models_dir or [DEFAULT_MODELS_DIR])
    print(f"merged model {out}")
    return 0


def run_download(args) -> int:
    from pipelines.model.notagenx import NOTAGENX_FILE, download_notagenx, find_notagenx

    found = find_notagenx([args.models_dir])
    if found:
        print(f"NotaGen-X is already at {found}")
        return 0
    shown = {"percent": -1}

    def on_progress(done, total):
        percent = int(100 * done / total) if total else -1
        if percent != shown["percent"]:
            shown["percent"] = percent
            print(f"\r{NOTAGENX_FILE}: {done / 2**20:.0f} MiB ({percent}%)", end="", file=sys.stderr, flush=True)

    path = download_notagenx(args.models_dir, on_progress=on_progress)
    print(f"\nNotaGen-X saved and checked: {path}")
    return 0
