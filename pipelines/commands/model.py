"""`notagen eval` and `notagen inspect`."""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.errors import NotaGenError
from pipelines.model.checkpoint import save_checkpoint
from pipelines.model.lora import load_model
from pipelines.training.data import dataset_files, read_abc
from pipelines.training.evaluate import evaluate_texts


def register(subparsers):
    p = subparsers.add_parser("eval", help="mean per-char cross-entropy (nats) of a model on ABC files")
    p.add_argument("--model", required=True, help="checkpoint file (.pth)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--abc", type=Path, help="one ABC file (training format, header lines included)")
    src.add_argument("--data", type=Path, help="a dataset folder; its eval split is used")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help='print {"loss": ..., "chars": ...}')
    p.set_defaults(func=run_eval)

    p = subparsers.add_parser("inspect", help="config, parameter count and prompt vocabulary of a checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_inspect)

    p = subparsers.add_parser("convert", help="rewrite a checkpoint as a studio checkpoint (e.g. fp16 to halve it)")
    p.add_argument("--model", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    p.add_argument("--notes", default="", help="text to record in the model card")
    p.set_defaults(func=run_convert)


def run_eval(args) -> int:
    ckpt = load_model(args.model, device=args.device)
    files = [args.abc] if args.abc else dataset_files(args.data)
    if not files:
        raise NotaGenError(f"{args.data}: the eval split is empty")
    texts = [read_abc(f) for f in files]
    result = evaluate_texts(ckpt.model, texts)
    if args.json:
        print(json.dumps({"loss": result.loss, "chars": result.chars}))
    else:
        print(f"loss {result.loss:.6f} nats/char over {result.chars} chars in {result.pieces} piece(s)")
    return 0


def run_inspect(args) -> int:
    ckpt = load_model(args.model, device="meta")
    info = {
        "path": str(ckpt.path),
        "format": "upstream" if ckpt.upstream else "studio",
        "config": ckpt.card.config.to_dict(),
        "parameters": ckpt.model.num_parameters(),
        "prompts": ckpt.card.prompts,
        "base_model": ckpt.card.base_model,
        "has_training_state": ckpt.training is not None,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = ckpt.card.config
    print(f"{info['path']} ({info['format']} checkpoint)")
    print(f"  patch size {c.patch_size}, patch length {c.patch_length}, layers {c.patch_layers}+{c.char_layers}, "
          f"hidden {c.hidden_size}, heads {c.num_heads}")
    print(f"  {info['parameters']:,} parameters")
    if ckpt.card.prompts:
        print(f"  {len(ckpt.card.prompts)} prompts:")
        for line in ckpt.card.prompts:
            print(f"    {line}")
    else:
        print("  no recorded prompt vocabulary (any prompt is accepted)")
    return 0


def run_convert(args) -> int:
    import torch

    ckpt = load_model(args.model, device="cpu")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    card = ckpt.card
    if args.notes:
        card.notes = args.notes
    save_checkpoint(args.out, ckpt.model.to(dtype), card)  # training state is dropped
    print(f"{args.out}: {ckpt.model.num_parameters():,} parameters in {args.dtype}, "
          f"{args.out.stat().st_size / 2**20:.1f} MiB")
    return 0
