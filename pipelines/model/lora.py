"""LoRA adapters (via peft) for NotaGen: add, save small, load for generation, merge.

An adapter file is `torch.save` of
`{"format": "notagen-lora-v1", "lora": LoraSpec, "adapter": {lora weights}, "card": ...,
"base": {"path", "name", "config"}, "training": ...}`: a few MB instead of 2 GB.
`load_model` (the loader of any model file) hands such a file to `load_adapter`, which loads
the base model, applies the adapter and merges it, so generation sees an ordinary `NotaGen`.
The base is found by its recorded absolute path, then by name (NotaGen-X in the
models folders), then by file name beside the adapter.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipelines.errors import CheckpointError
from pipelines.files import atomic_write
from pipelines.model.checkpoint import (
    LoadedCheckpoint,
    ModelCard,
    detach_from_file,
    load_checkpoint,
    mapped_ranges,
    read_checkpoint_file,
    save_checkpoint,
)
from pipelines.model.config import NotaGenConfig
from pipelines.model.network import Conv1D, NotaGen
from pipelines.model.notagenx import find_notagenx, is_notagenx_name

# peft (and the transformers it needs) takes seconds to import: loading a plain checkpoint to generate
# never does, so these modules import it where an adapter is made or read.
if TYPE_CHECKING:
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

ADAPTER_FORMAT = "notagen-lora-v1"
ADAPTER_NAME = "default"


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    dropout: float = 0.0
    targets: tuple[str, ...] = ("c_attn", "c_proj", "c_fc")
    char_only: bool = False  # adapt the char-level decoder only (the patch-level one is frozen)

    def peft_config(self) -> LoraConfig:
        from peft import LoraConfig

        names = "|".join(self.targets)
        scope = r"char_level_decoder\..*" if self.char_only else r".*"
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, bias="none",
                          target_modules=rf"{scope}\.({names})", fan_in_fan_out=True)  # GPT-2 Conv1D layers

    def to_dict(self) -> dict:
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "LoraSpec":
        return cls(rank=int(data["rank"]), alpha=float(data["alpha"]), dropout=float(data.get("dropout", 0.0)),
                   targets=tuple(data.get("targets", cls.targets)), char_only=bool(data.get("char_only", False)))


def add_lora(model: NotaGen, spec: LoraSpec) -> LoraModel:
    """Inject adapters into `model` in place (its class and parameter names stay NotaGen's).

    Only the adapter weights train; they are kept in fp32 whatever the base's dtype.
    The returned peft wrapper is what `merge_into` needs.
    """
    from peft.tuners.lora import LoraModel

    as_peft_layers(model)
    wrapper = LoraModel(model, spec.peft_config(), ADAPTER_NAME)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
    return wrapper


def as_peft_layers(model: nn.Module) -> None:
    """Swap NotaGen's own Conv1D layers for transformers' class (same parameters, shared), which peft's LoRA
    adapts; the forward is the same product. Built on the meta device: no weights are drawn."""
    from transformers.pytorch_utils import Conv1D as PeftConv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Conv1D:
                with torch.device("meta"):
                    layer = PeftConv1D(child.nf, child.nx)
                layer.weight, layer.bias = child.weight, child.bias
                setattr(parent, name, layer)


def adapter_state(model: NotaGen) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME).items()}


def load_adapter_state(model: NotaGen, state: dict) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER_NAME)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"adapter does not fit the model: missing {missing[:3]}, "
                              f"unexpected {list(result.unexpected_keys)[:3]}")


def merge_into(wrapper: LoraModel) -> NotaGen:
    """Fold the adapters into the base weights; returns the plain model."""
    model = wrapper.merge_and_unload()
    model.tie_weights()
    return model


def base_record(base_path: Path, base_spec: str, config: NotaGenConfig) -> dict:
    return {"path": str(Path(base_path).resolve()), "name": base_spec if is_notagenx_name(base_spec) else "",
            "config": config.to_dict()}


def save_adapter(path: str | os.PathLike, model: NotaGen, spec: LoraSpec, card: ModelCard, base: dict,
                 training: dict | None = None) -> Path:
    obj = {"format": ADAPTER_FORMAT, "lora": spec.to_dict(), "adapter": adapter_state(model),
           "card": card.to_dict(), "base": base}
    if training is not None:
        obj["training"] = training
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def is_adapter(data) -> bool:
    return isinstance(data, dict) and data.get("format") == ADAPTER_FORMAT


def is_adapter_file(path: str | os.PathLike) -> bool:
    """Whether a model file is a LoRA adapter (a look at the mapped file, dropped at once)."""
    return is_adapter(read_checkpoint_file(path))


def find_base(adapter_path: Path, base: dict, models_dirs: Sequence[Path] = ()) -> Path:
    """The base model file an adapter was trained on."""
    recorded = Path(base.get("path", ""))
    if base.get("path") and recorded.is_file():
        return recorded
    if base.get("name"):
        found = find_notagenx(models_dirs)
        if found:
            return found
    beside = Path(adapter_path).parent / recorded.name
    if recorded.name and beside.is_file():
        return beside
    raise CheckpointError(f"{adapter_path}: its base model {base.get('name') or recorded} is not found; "
                          f"put it back at {recorded} or give the base explicitly")


def read_adapter(path: str | os.PathLike) -> dict:
    data = read_checkpoint_file(path)
    if not is_adapter(data):
        raise CheckpointError(f"{path}: not a NotaGen LoRA adapter file")
    return data


def load_with_adapter(path: str | os.PathLike, base_path: str | os.PathLike | None = None,
                      models_dirs: Sequence[Path] = (), leave_mapped: bool = False) -> tuple[NotaGen, LoraModel, dict]:
    """Base model (fp32, CPU) with the adapter applied but not merged, for training or merging.

    The adapter file's object comes back copied out of the file's mapping, so the file can be replaced.
    """
    mapped = read_adapter(path)
    data = detach_from_file(mapped, mapped_ranges(mapped))
    del mapped
    base_file = Path(base_path) if base_path else find_base(Path(path), data["base"], models_dirs)
    base = load_checkpoint(base_file, leave_mapped=leave_mapped)
    expected = NotaGenConfig.from_dict(data["base"]["config"])
    if base.model.config != expected:
        raise CheckpointError(f"{path}: was trained on a model of sizes {expected}, "
                              f"but {base_file} holds {base.model.config}")
    model = base.model
    wrapper = add_lora(model, LoraSpec.from_dict(data["lora"]))
    load_adapter_state(model, data["adapter"])
    return model, wrapper, data


def load_adapter(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 base_path: str | os.PathLike | None = None, models_dirs: Sequence[Path] = (),
                 leave_mapped: bool = False) -> LoadedCheckpoint:
    """An adapter file as a ready model: base + adapter, merged (generation runs at full speed)."""
    _, wrapper, data = load_with_adapter(path, base_path, models_dirs, leave_mapped)
    model = merge_into(wrapper).to(device=device, dtype=dtype)
    model.tie_weights()
    return LoadedCheckpoint(model=model.eval(), card=ModelCard.from_dict(data["card"]), path=Path(path),
                            upstream=False, training=data.get("training"))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None, leave_mapped: bool = False) -> LoadedCheckpoint:
    """Any model file the studio lists: a checkpoint, or a LoRA adapter merged into its base.

    Nothing returned stays in a file's mapping (Windows could not replace the file), unless
    `leave_mapped` (see `load_checkpoint`)."""
    if is_adapter_file(path):
        return load_adapter(path, device=device, dtype=dtype, leave_mapped=leave_mapped)
    return load_checkpoint(path, device=device, dtype=dtype, leave_mapped=leave_mapped)


def merge_lora(adapter_path: str | os.PathLike, out_path: str | os.PathLike,
               base_path: str | os.PathLike | None = None, models_dirs: Sequence[Path] = ()) -> Path:
    """Write a full studio checkpoint (fp32) of base + adapter; it keeps the adapter's model card."""
    loaded = load_adapter(adapter_path, base_path=base_path, models_dirs=models_dirs)
    card = loaded.card
    card.notes = (card.notes + "\n" if card.notes else "") + f"LoRA adapter {Path(adapter_path).name} merged"
    save_checkpoint(out_path, loaded.model, card)
    return Path(out_path)
