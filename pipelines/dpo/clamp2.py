"""CLaMP 2's music encoder (M3 patch encoder + projection) and a loader for the official weights.

CLaMP 2 (sanderwood/clamp2, the model NotaGen's CLaMP-DPO scores with) encodes
interleaved ABC in 64-char bar patches with a 12-layer BERT (M3) and projects the
mean of its states to 768 dimensions. Music-to-music similarity needs only this
half; the text encoder (XLM-R) in the same file is skipped, so nothing is
downloaded from Hugging Face.

The user downloads, from https://huggingface.co/sander-wood/clamp2 :
- `weights_clamp2_h_size_768_lr_5e-05_batch_128_scale_1_t_length_128_t_model_FacebookAI_xlm-roberta-base_t_dropout_True_m3_True.pth`
  (`{'model': state_dict, 'epoch', 'min_eval_loss', ...}`; state keys `music_model.patch_embedding.*`,
  `music_model.base.*` (a Hugging Face BertModel), `music_proj.*`, `text_model.*`, `text_proj.*`);
- optionally `weights_m3_p_size_64_p_length_512_t_layers_3_p_layers_12_h_size_768_lr_0.0001_batch_16_mask_0.45.pth`
  (`{'model': ...}` with `encoder.*` = the patch encoder and `decoder.*` = M3's char decoder).
Upstream builds the encoder from M3 and then overwrites every weight with the CLaMP 2
file, so the CLaMP 2 file alone gives the same features; M3 alone gives the encoder's
pooled states without the projection.

Sizes are read from the tensors, so the same code loads randomly initialised tiny
files in the tests.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel
from unidecode import unidecode

from pipelines.abc.tokenizer import pad_patches
from pipelines.dpo.scorers import Scorer, scoring_text
from pipelines.errors import CheckpointError, DPOError
from pipelines.model.checkpoint import read_checkpoint_file

CLAMP2_FILE = ("weights_clamp2_h_size_768_lr_5e-05_batch_128_scale_1_t_length_128_t_model_"
               "FacebookAI_xlm-roberta-base_t_dropout_True_m3_True.pth")
M3_FILE = "weights_m3_p_size_64_p_length_512_t_layers_3_p_layers_12_h_size_768_lr_0.0001_batch_16_mask_0.45.pth"
PAD, BOS, EOS = 0, 1, 2
_BARLINES = ["|:", "::", ":|", "[|", "||", "|]", "|"]
_BARLINE_SPLIT = re.compile("(" + "|".join(map(re.escape, _BARLINES)) + ")")
_BUFFERS = re.compile(r".*embeddings\.(position_ids|token_type_ids)$")  # non-persistent in newer transformers


@dataclass(frozen=True)
class M3Config:
    patch_size: int = 64  # chars per patch (a bar or a header line)
    patch_length: int = 512  # patches per segment
    layers: int = 12
    hidden_size: int = 768
    projection: int = 768  # CLaMP 2's shared embedding size; 0: no projection (M3 alone)

    def bert_config(self) -> BertConfig:
        return BertConfig(vocab_size=1, hidden_size=self.hidden_size, num_hidden_layers=self.layers,
                          num_attention_heads=max(1, self.hidden_size // 64), intermediate_size=4 * self.hidden_size,
                          max_position_embeddings=self.patch_length)


class M3PatchEncoder(nn.Module):
    """A linear map of each patch's one-hot chars, then BERT over the patch sequence."""

    def __init__(self, config: M3Config):
        super().__init__()
        self.patch_size = config.patch_size
        self.patch_embedding = nn.Linear(config.patch_size * 128, config.hidden_size)
        self.base = BertModel(config.bert_config())

    def forward(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """patches (B, N, P) char ids, masks (B, N) -> states (B, N, H)."""
        offsets = torch.arange(self.patch_size, device=patches.device) * 128
        table = self.patch_embedding.weight.t()  # (P * 128, H); equals linear(one_hot(patches))
        embeds = F.embedding(patches + offsets, table).sum(dim=-2) + self.patch_embedding.bias
        return self.base(inputs_embeds=embeds, attention_mask=masks).last_hidden_state


class Clamp2MusicEncoder(nn.Module):
    """CLaMP 2's music tower; parameter names are the official file's (`music_model.*`, `music_proj.*`)."""

    def __init__(self, config: M3Config):
        super().__init__()
        self.config = config
        self.music_model = M3PatchEncoder(config)
        self.music_proj = nn.Linear(config.hidden_size, config.projection) if config.projection else None

    def forward(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Mean of the states over real patches, projected: (B, D)."""
        states = self.music_model(patches, masks)
        m = masks.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        return self.music_proj(pooled) if self.music_proj is not None else pooled


# ---------------------------------------------------------------- CLaMP 2's patches

def _split_bars(line: str) -> list[str]:
    parts = [p for p in _BARLINE_SPLIT.split(line) if p]
    if parts and parts[0] in _BARLINES:
        if len(parts) == 1:
            return []
        parts = [parts[0] + parts[1]] + parts[2:]
    return [parts[2 * i] + parts[2 * i + 1] for i in range(len(parts) // 2)]


def m3_patches(abc: str, patch_size: int = 64) -> list[list[int]]:
    """CLaMP 2's encoding of interleaved ABC: a patch per header line and per bar, bos/eos patches.

    Header fields and `%%` lines are one patch each; other lines are split after each
    barline (a last piece without a barline is dropped, as CLaMP 2 does) and the line's
    last bar keeps the newline. Each patch is bos, up to patch_size - 2 chars, eos, padding.
    """
    text = unidecode(abc)
    lines = [line for line in re.findall(r".*?\n|.*$", text) if line]
    chunks = []
    for line in lines:
        if len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%")):
            chunks.append(line)
        else:
            bars = _split_bars(line)
            if bars:
                bars[-1] += "\n"
                chunks.extend(bars)
    chunks = [chr(BOS) * patch_size] + chunks + [chr(EOS) * patch_size]
    patches = []
    for chunk in chunks:
        ids = ([BOS] + [min(ord(c), 127) for c in chunk] + [EOS])[:patch_size]
        patches.append(ids + [PAD] * (patch_size - len(ids)))
    return patches


def segments(patches: list[list[int]], length: int) -> tuple[list[list[list[int]]], list[int]]:
    """CLaMP 2's windows of a long piece and their weights: full windows, then the last
    `length` patches weighted by the remainder (as its feature extraction does)."""
    windows = [patches[i:i + length] for i in range(0, len(patches), length)]
    windows[-1] = patches[-length:]
    full, rest = divmod(len(patches), length)
    weights = [length] * full + ([rest] if rest else [])
    return windows, weights


# ---------------------------------------------------------------- loading

def _state_dict(path: Path) -> dict:
    try:
        data = read_checkpoint_file(path)
    except CheckpointError as e:
        raise DPOError(str(e)) from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise DPOError(f"{path}: has no 'model' entry; expected an official CLaMP 2 or M3 .pth file")
    return data["model"]


def infer_m3_config(state: dict, prefix: str, projection: int) -> M3Config:
    try:
        hidden, flat = state[prefix + "patch_embedding.weight"].shape
        positions = state[prefix + "base.embeddings.position_embeddings.weight"].shape[0]
    except KeyError as e:
        raise DPOError(f"missing {e.args[0]}") from None
    layer = re.compile(re.escape(prefix) + r"base\.encoder\.layer\.(\d+)\.")
    layers = 1 + max((int(m.group(1)) for k in state if (m := layer.match(k))), default=-1)
    return M3Config(patch_size=flat // 128, patch_length=positions, layers=layers, hidden_size=hidden,
                    projection=projection)


def load_clamp2(clamp2_path: str | os.PathLike | None = None, m3_path: str | os.PathLike | None = None,
                device: str | torch.device = "cpu") -> Clamp2MusicEncoder:
    """The music encoder from the official files (see the module docstring); strict on names and shapes."""
    if clamp2_path is None and m3_path is None:
        raise DPOError("CLaMP 2 scoring needs the CLaMP 2 weights file (and optionally the M3 one)")
    parts = {}
    if m3_path is not None:
        state = _state_dict(Path(m3_path))
        if not any(k.startswith("encoder.") for k in state):
            raise DPOError(f"{m3_path}: not an M3 file (no encoder.* weights)")
        parts["m3"] = {"music_model." + k[len("encoder."):]: v for k, v in state.items()
                       if k.startswith("encoder.") and not _BUFFERS.match(k)}
    if clamp2_path is not None:
        state = _state_dict(Path(clamp2_path))
        if not any(k.startswith("music_model.") for k in state):
            hint = " (this looks like the M3 file: pass it as the M3 weights)" if any(
                k.startswith("encoder.") for k in state) else ""
            raise DPOError(f"{clamp2_path}: not a CLaMP 2 file (no music_model.* weights){hint}")
        parts["clamp2"] = {k: v for k, v in state.items()
                           if k.startswith(("music_model.", "music_proj.")) and not _BUFFERS.match(k)}
    final = parts.get("clamp2", parts.get("m3"))
    projection = final["music_proj.weight"].shape[0] if "music_proj.weight" in final else 0
    try:
        config = infer_m3_config(final, "music_model.", projection)
    except DPOError as e:
        raise DPOError(f"{clamp2_path or m3_path}: {e}") from None
    model = Clamp2MusicEncoder(config)
    for name, path in (("m3", m3_path), ("clamp2", clamp2_path)):  # M3 first, CLaMP 2 over it, as upstream
        if name not in parts:
            continue
        try:
            missing, unexpected = model.load_state_dict(parts[name], strict=False)
        except RuntimeError as e:  # shape mismatches
            raise DPOError(f"{path}: weights do not fit a CLaMP 2 music encoder of {config}: {e}") from None
        if name == "m3":  # the M3 file has no projection
            missing = [k for k in missing if not k.startswith("music_proj.")]
        if missing or unexpected:
            raise DPOError(f"{path}: weights do not fit a CLaMP 2 music encoder of {config}: "
                           f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval()


class Clamp2Scorer(Scorer):
    """CLaMP 2 features of interleaved ABC (NotaGen's CLaMP 2 score)."""

    name = "clamp2"
    plagiarism_threshold = 0.95  # NotaGen's CLaMP-DPO

    def __init__(self, encoder: Clamp2MusicEncoder, batch_size: int = 8):
        self.encoder = encoder
        self.batch_size = batch_size

    @classmethod
    def from_files(cls, clamp2_path=None, m3_path=None, device="cpu", batch_size: int = 8) -> "Clamp2Scorer":
        return cls(load_clamp2(clamp2_path, m3_path, device=device), batch_size)

    @torch.no_grad()
    def features(self, abc_texts: list[str]) -> torch.Tensor:
        config = self.encoder.config
        device = next(self.encoder.parameters()).device
        windows, owners, weights = [], [], []
        for i, text in enumerate(abc_texts):
            w, wt = segments(m3_patches(scoring_text(text), config.patch_size), config.patch_length)
            windows += w
            owners += [i] * len(w)
            weights += wt
        if not windows:
            return torch.zeros(0, config.projection or config.hidden_size)
        out = []
        for start in range(0, len(windows), self.batch_size):
            patches, masks = pad_patches(windows[start:start + self.batch_size], config.patch_size)
            out.append(self.encoder(patches.to(device), masks.to(device)).float().cpu())
        per_window = torch.cat(out)  # (S, D)
        w = torch.tensor(weights, dtype=torch.float32)[:, None]
        owner = torch.tensor(owners)
        total = torch.zeros(len(abc_texts), per_window.shape[1]).index_add_(0, owner, per_window * w)
        norm = torch.zeros(len(abc_texts)).index_add_(0, owner, w[:, 0])
        return total / norm[:, None]
