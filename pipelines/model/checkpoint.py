"""Reading and writing NotaGen checkpoints.

Upstream files are `torch.save({'model': state_dict})`; the config is inferred
from tensor shapes. Studio checkpoints add a `card` (model config, prompt
vocabulary, header format, provenance, the meters and keys it was trained on per
prompt) and optionally a `training` state, and
keep `'model'` so upstream scripts still read them.

Loading builds the model on the meta device and assigns the tensors from a
memory-mapped file, so a 2 GB file loads in about the time it takes to read it.
Nothing a loader returns stays in that mapping: Windows refuses to replace a file
while any part of it is mapped, and a run's `last.pth` or a DPO iteration's model is
loaded, then saved again in the same place. Tensors that the move to the asked device
and dtype did not copy are copied out of the file (`detach_from_file`) before the load
returns, and the mapping goes with the last reference to the file's data.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipelines.errors import CheckpointError
from pipelines.files import atomic_write
from pipelines.model.config import NotaGenConfig
from pipelines.model.network import NotaGen

HEADER_FORMAT = "period-composer-instrumentation-v1"
# GPT-2 mask buffers that files saved with older transformers carry; nothing else is dropped.
_LEGACY_BUFFER = re.compile(r".*\.attn\.(bias|masked_bias)$")


@dataclass
class ModelCard:
    """What a checkpoint says about itself."""

    config: NotaGenConfig
    prompts: list[str] = field(default_factory=list)  # Period_Composer_Instrumentation lines
    header_format: str = HEADER_FORMAT
    base_model: str = ""
    notes: str = ""
    # Per prompt line, the meters and keys of the pieces the model was trained on, with how many pieces
    # had each: {"meters": {"3/4": 12, ...}, "keys": {"G": 12, "Emin": 3, ...}} (empty: not recorded).
    header_choices: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "prompts": list(self.prompts),
                "header_format": self.header_format, "base_model": self.base_model, "notes": self.notes,
                "header_choices": self.header_choices}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        return cls(config=NotaGenConfig.from_dict(data["config"]), prompts=list(data.get("prompts", [])),
                   header_format=data.get("header_format", HEADER_FORMAT),
                   base_model=data.get("base_model", ""), notes=data.get("notes", ""),
                   header_choices=data.get("header_choices", {}))


@dataclass
class LoadedCheckpoint:
    model: NotaGen
    card: ModelCard
    path: Path
    upstream: bool  # True: a plain {'model': ...} file with no card
    training: dict | None = None


def _layer_count(keys, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def infer_config(state_dict: dict) -> NotaGenConfig:
    """Model sizes from an upstream state dict's tensor shapes."""
    try:
        emb = state_dict["patch_level_decoder.patch_embedding.weight"]  # (C, P * 128)
        wpe = state_dict["patch_level_decoder.base.wpe.weight"]  # (patch_length, C)
    except KeyError as e:
        raise CheckpointError(f"not a NotaGen state dict: missing {e.args[0]}") from None
    hidden, flat = emb.shape
    keys = list(state_dict)
    return NotaGenConfig(
        patch_size=flat // 128,
        patch_length=wpe.shape[0],
        patch_layers=_layer_count(keys, "patch_level_decoder.base.h."),
        char_layers=_layer_count(keys, "char_level_decoder.base.transformer.h."),
        hidden_size=hidden,
    )


def clean_state_dict(state_dict: dict) -> dict:
    """Drop exactly GPT-2's legacy `.attn.bias` / `.attn.masked_bias` buffers, nothing else."""
    return {k: v for k, v in state_dict.items() if not _LEGACY_BUFFER.match(k)}


def model_from_state_dict(state_dict: dict, config: NotaGenConfig | None = None,
                          device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> NotaGen:
    """Build a model on the meta device and assign the tensors (strict)."""
    state_dict = clean_state_dict(state_dict)
    config = config or infer_config(state_dict)
    with torch.device("meta"):
        model = NotaGen(config)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"state dict does not fit a NotaGen with {config}: {e}") from None
    model.to(device=device, dtype=dtype)
    model.tie_weights()  # assign=True and device moves can untie lm_head from wte
    return model.eval()


def read_checkpoint_file(path: str | os.PathLike) -> dict:
    """The file's object, memory-mapped: cheap to open, even for a look at the card of a 2 GB file.

    Its tensors live in the file's mapping for as long as any of them is referenced: keep
    nothing from it (or pass it through `detach_from_file`), so the file can be replaced.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt or foreign file
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({e})") from e


def mapped_ranges(data) -> list[tuple[int, int]]:
    """The memory (start, end) of every tensor storage in an object read by `read_checkpoint_file`."""
    ranges = []
    for tensor in _tensors(data):
        storage = tensor.untyped_storage()
        if storage.device.type == "cpu" and storage.nbytes():
            ranges.append((storage.data_ptr(), storage.data_ptr() + storage.nbytes()))
    return sorted(set(ranges))


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def in_ranges(tensor: torch.Tensor, ranges: list[tuple[int, int]]) -> bool:
    if tensor.device.type != "cpu" or not ranges:
        return False
    start = tensor.untyped_storage().data_ptr()
    return any(low <= start < high for low, high in ranges)


def detach_from_file(obj, ranges: list[tuple[int, int]]):
    """`obj` with every tensor that lies in `ranges` (a file's mapping) replaced by a copy in memory.

    Modules are changed in place (their parameters and buffers; call `tie_weights` after);
    dicts, lists and tuples are rebuilt; anything else is returned as it is.
    """
    if isinstance(obj, torch.nn.Module):
        for module in obj.modules():
            for name, param in module.named_parameters(recurse=False):
                if in_ranges(param, ranges):
                    param.data = param.data.clone()
            for name, buffer in module.named_buffers(recurse=False):
                if in_ranges(buffer, ranges):
                    module._buffers[name] = buffer.clone()
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.clone() if in_ranges(obj, ranges) else obj
    if isinstance(obj, dict):
        return {k: detach_from_file(v, ranges) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [detach_from_file(v, ranges) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def read_card(path: str | os.PathLike) -> ModelCard:
    """A checkpoint's card without building its model; an upstream file's is inferred from its shapes."""
    data = read_checkpoint_file(path)
    if isinstance(data, dict) and data.get("card"):
        return ModelCard.from_dict(data["card"])
    if isinstance(data, dict) and "model" in data:
        return ModelCard(config=infer_config(data["model"]), base_model=Path(path).name)
    raise CheckpointError(f"{Path(path).name}: not a NotaGen checkpoint; expected torch.save({{'model': state_dict}})")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, leave_mapped: bool = False) -> LoadedCheckpoint:
    """Load an upstream or studio checkpoint; the config comes from the file itself.

    `leave_mapped`: the model's weights may stay in the file's mapping (no copy), for a caller that
    moves the model to another device or dtype at once, which copies them out (the training state is
    copied out either way)."""
    data = read_checkpoint_file(path)
    if isinstance(data, dict) and data.get("format") == "notagen-lora-v1":
        raise CheckpointError(f"{path}: a LoRA adapter, not a checkpoint; load it with lora.load_model")
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path}: has no 'model' entry; expected torch.save({{'model': state_dict}})")
    card_data = data.get("card")
    card = ModelCard.from_dict(card_data) if card_data else None
    config = card.config if card else None
    try:
        model = model_from_state_dict(data["model"], config, device=device, dtype=dtype)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if card is None:
        card = ModelCard(config=model.config, base_model=Path(path).name)
    ranges = mapped_ranges(data)
    if not leave_mapped:
        detach_from_file(model, ranges).tie_weights()
    training = detach_from_file(data.get("training"), ranges)
    return LoadedCheckpoint(model=model, card=card, path=Path(path), upstream=card_data is None,
                            training=training)


def save_checkpoint(path: str | os.PathLike, model: NotaGen, card: ModelCard, training: dict | None = None):
    """A self-describing checkpoint that upstream scripts can still read (`'model'`)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"model": state, "card": card.to_dict()}
    if training is not None:
        obj["training"] = training
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
