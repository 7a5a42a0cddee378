"""The training recipe's building blocks, shared by the loop and the benchmark.

Device and precision choice, model preparation (dropout, freezing, LoRA, frozen
weights in bf16, gradient checkpointing per decoder, compiled blocks), AdamW
with decoupled weight decay on matrices only, and one optimizer step with
gradient clipping and, for fp16, a gradient scaler.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from pipelines.errors import NotaGenError, TrainingError
from pipelines.model.lora import LoraSpec, add_lora
from pipelines.model.network import NotaGen
from pipelines.model.runtime import DTYPES, pick_device
from pipelines.training.config import TrainConfig


def resolve_device(spec: str) -> torch.device:
    """`runtime.pick_device`, its failures as TrainingError."""
    try:
        return pick_device(spec)
    except RuntimeError:
        raise TrainingError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    except NotaGenError as e:
        raise TrainingError(str(e)) from None


def resolve_precision(precision: str, device: torch.device) -> str:
    """bf16 autocast where the GPU supports it, fp16 with a scaler on older GPUs, fp32 on CPU / MPS."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainingError("this GPU does not support bf16; use --precision fp16 (or auto)")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@dataclass
class Amp:
    """Autocast and (fp16 only) gradient scaling for one device."""

    device_type: str
    precision: str  # bf16 | fp16 | fp32
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def create(cls, device: torch.device, precision: str) -> "Amp":
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        return cls(device.type, precision, scaler)

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=DTYPES[self.precision])


def set_dropout(model: NotaGen, p: float) -> None:
    """Override every dropout rate of the model (embeddings, attention, residual)."""
    for module in model.modules():
        if hasattr(module, "dropout") and isinstance(module.dropout, float):
            module.dropout = p


def set_checkpointing(model: NotaGen, which: str) -> None:
    model.patch_level_decoder.base.checkpointing = which in ("patch", "both")
    model.char_level_decoder.base.transformer.checkpointing = which in ("char", "both")


def lora_spec(config: TrainConfig) -> LoraSpec | None:
    if not config.lora_rank:
        return None
    return LoraSpec(rank=config.lora_rank, alpha=config.effective_lora_alpha, dropout=config.lora_dropout,
                    targets=config.lora_targets, char_only=config.freeze_patch_decoder)


def prepare_model(model: NotaGen, config: TrainConfig, precision: str, device: torch.device,
                  has_lora: bool = False):
    """Apply the run's options to a freshly loaded fp32 model; returns (model, peft wrapper or None).

    `has_lora`: the model already carries the run's adapters (a resumed LoRA run).
    """
    wrapper = None
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    spec = lora_spec(config)
    if spec and not has_lora:
        wrapper = add_lora(model, spec)  # freezes everything but the adapters
    if config.freeze_patch_decoder and not spec:
        model.patch_level_decoder.requires_grad_(False)
    # The patch-level GPT-2 keeps upstream's 1-row token table, which its forward never uses.
    model.patch_level_decoder.base.wte.weight.requires_grad_(False)
    if precision == "bf16" and config.frozen_dtype == "auto" and (spec or has_lora):
        # A LoRA run's base never changes and is not saved: half the memory, no fp32 master copy.
        # (A frozen patch decoder of a full fine-tune stays fp32: it is saved in the checkpoint.)
        for param in model.parameters():
            if not param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    model.to(device)
    model.tie_weights()
    set_checkpointing(model, config.checkpointing)
    if config.compile:
        for block in [*model.patch_level_decoder.base.h, *model.char_level_decoder.base.transformer.h]:
            block.compile()  # in place: parameter names stay as they are
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError("nothing to train: every weight is frozen")
    return model, wrapper


class OptimizerSettings(Protocol):
    """What `build_optimizer` reads; TrainConfig and DPOConfig both have it."""

    lr: float
    betas: tuple[float, float]
    weight_decay: float
    optimizer: str  # auto | fused | foreach | plain


def build_optimizer(model: nn.Module, config: OptimizerSettings, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not biases, layer norms); fused on GPU unless told otherwise."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 and "ln_" not in name else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kind = config.optimizer
    if kind == "auto":
        kind = "fused" if device.type == "cuda" else "foreach"
    options = {"fused": {"fused": True}, "foreach": {"foreach": True}, "plain": {"foreach": False}}[kind]
    if kind == "foreach" and device.type == "cpu":
        options = {}  # PyTorch picks its CPU implementation
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), **options)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, amp: Amp, grad_clip: float) -> tuple[bool, float]:
    """Clip, step, zero the gradients. Returns (stepped, gradient norm); fp16 may skip a step on overflow."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if amp.scaler is not None:
        amp.scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if amp.scaler is not None:
        scale = amp.scaler.get_scale()
        amp.scaler.step(optimizer)
        amp.scaler.update()
        stepped = amp.scaler.get_scale() >= scale
    else:
        optimizer.step()
        stepped = True
    optimizer.zero_grad(set_to_none=True)
    return stepped, float(norm)
