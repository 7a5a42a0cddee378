"""NotaGen: a hierarchical GPT-2 over 16-character patches of ABC notation.

The patch-level decoder sees one vector per patch (a linear map of the patch's
one-hot characters) and predicts a hidden state for the next patch; the
char-level decoder starts from that hidden state and spells the next patch one
character at a time. Parameter names and shapes are exactly upstream NotaGen's
(Hugging Face GPT-2 blocks with Conv1D weights), so `{'model': state_dict}`
checkpoints load with `strict=True`.

Attention runs through SDPA. Every attention layer can write into a
preallocated `KVCache` (fixed shapes, written by index) so the generation
engine can decode with constant-shape steps; training uses plain causal
attention without a cache.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.abc.tokenizer import PAD_ID
from pipelines.model.config import VOCAB_SIZE, NotaGenConfig


def draw_normal(tensor: torch.Tensor, std: float) -> None:
    """nn.init.normal_, except on the meta device (a model built there to receive a checkpoint's tensors):
    the first normal_ on meta loads torch's reference ops, seconds of a fresh process's first piece."""
    if not tensor.is_meta:
        nn.init.normal_(tensor, std=std)


def embedding(count: int, dim: int) -> nn.Embedding:
    """nn.Embedding(count, dim), drawn as it draws (std 1), except on the meta device (see draw_normal)."""
    table = nn.Embedding(count, dim, _weight=torch.empty(count, dim))
    draw_normal(table.weight, 1.0)
    return table


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored (in, out), y = x @ W + b; the parameter names and shapes of upstream's
    checkpoints. Our own, so generation never imports transformers (seconds at every start); LoRA hands these to
    peft as transformers' own class (pipelines.model.lora)."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        draw_normal(self.weight, 0.02)

    def forward(self, x):
        out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return out.view(*x.shape[:-1], self.nf)


class KVCache(nn.Module):
    """Fixed-size key/value buffers for one attention layer, written by position."""

    def __init__(self, batch: int, heads: int, length: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, heads, length, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: torch.Tensor | None):
        """Write k, v (B, H, T, D) at `positions` (B, T); return the cache for those rows."""
        if rows is None:
            rows = torch.arange(k.shape[0], device=k.device)
        self.k[rows[:, None], :, positions] = k.transpose(1, 2)  # (B, T, H, D) slots
        self.v[rows[:, None], :, positions] = v.transpose(1, 2)
        if rows.numel() == self.k.shape[0]:
            return self.k, self.v
        return self.k[rows], self.v[rows]


def decode_attention(q, k, v, positions):
    """One query per row over the cache slots up to its position: q (B, H, 1, D), positions (B, 1).

    Under torch.compile it is written as products and sums, which the compiler fuses
    into a few kernels (scores, softmax, weighted sum) instead of an SDPA call and a
    mask; eagerly it uses matmuls. Both accumulate in fp32.
    """
    compiling = torch.compiler.is_compiling()
    valid = (torch.arange(k.shape[2], device=q.device) <= positions)[:, None, :]  # (B, 1, S)
    if compiling:
        scores = (q.float() * k.float()).sum(-1)  # (B, H, S)
    else:
        scores = (q @ k.transpose(-1, -2))[:, :, 0].float()
    weights = torch.softmax(scores.mul(q.shape[-1] ** -0.5).masked_fill(~valid, float("-inf")), dim=-1)
    if compiling:
        y = (weights[..., None] * v.float()).sum(-2)  # (B, H, D)
    else:
        y = (weights[:, :, None, :].to(v.dtype) @ v)[:, :, 0]
    return y[:, :, None, :].to(q.dtype)


class Attention(nn.Module):
    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.heads = config.num_heads
        self.dropout = config.dropout
        self.c_attn = Conv1D(3 * config.hidden_size, config.hidden_size)
        self.c_proj = Conv1D(config.hidden_size, config.hidden_size)
        self.cache: KVCache | None = None

    def forward(self, x, positions, rows=None, use_cache: bool = False):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q = q.view(B, T, self.heads, -1).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.heads, -1).transpose(1, 2)
        v = v.view(B, T, self.heads, -1).transpose(1, 2)
        if not use_cache:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            k, v = self.cache.update(positions, k, v, rows)
            if T == 1:
                y = decode_attention(q, k, v, positions)
            else:
                slots = torch.arange(k.shape[2], device=x.device)
                mask = positions[:, None, :, None] >= slots  # (B, 1, T, S): causal over absolute positions
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.c_fc = Conv1D(4 * config.hidden_size, config.hidden_size)
        self.c_proj = Conv1D(config.hidden_size, 4 * config.hidden_size)
        self.dropout = config.dropout

    def forward(self, x):
        h = F.gelu(self.c_fc(x), approximate="tanh")  # GPT-2's gelu_new
        return F.dropout(self.c_proj(h), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, positions, rows=None, use_cache: bool = False):
        x = x + self.attn(self.ln_1(x), positions, rows, use_cache)
        return x + self.mlp(self.ln_2(x))


class GPT2Stack(nn.Module):
    """GPT-2 body: token and position tables, blocks, final layer norm."""

    def __init__(self, config: NotaGenConfig, vocab: int, positions: int, layers: int):
        super().__init__()
        self.wte = embedding(vocab, config.hidden_size)
        self.wpe = embedding(positions, config.hidden_size)
        self.h = nn.ModuleList(Block(config) for _ in range(layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = config.dropout
        self.checkpointing = False
        draw_normal(self.wte.weight, 0.02)
        draw_normal(self.wpe.weight, 0.01)

    def forward(self, embeds, positions, rows=None, use_cache: bool = False):
        """embeds (B, T, C); positions (B, T) absolute positions, also the KV-cache slots with `use_cache`.

        Without `use_cache` attention is plain causal over the given sequence (training,
        evaluation); with it, each layer writes its keys and values into its `KVCache`
        (for `rows` of the batch, default all) and attends to the cached positions.
        """
        x = F.dropout(embeds + self.wpe(positions), self.dropout, self.training)
        for block in self.h:
            if self.checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, positions, rows, use_cache, use_reentrant=False)
            else:
                x = block(x, positions, rows, use_cache)
        return self.ln_f(x)


class PatchLevelDecoder(nn.Module):
    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.patch_embedding = nn.Linear(config.patch_size * VOCAB_SIZE, config.hidden_size)
        draw_normal(self.patch_embedding.weight, 0.02)
        nn.init.zeros_(self.patch_embedding.bias)
        self.base = GPT2Stack(config, vocab=1, positions=config.patch_length, layers=config.patch_layers)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, N, P) char ids -> (B, N, C); equals linear(one_hot(patches)) without building it."""
        P = self.patch_size
        offsets = torch.arange(P, device=patches.device) * VOCAB_SIZE
        table = self.patch_embedding.weight.t()  # (P * 128, C)
        return F.embedding(patches + offsets, table).sum(dim=-2) + self.patch_embedding.bias

    def forward(self, patches, positions=None, rows=None):
        """patches (B, N, P) -> states (B, N, C); given `positions`, through the KV caches."""
        use_cache = positions is not None
        if positions is None:
            positions = torch.arange(patches.shape[1], device=patches.device).expand(patches.shape[0], -1)
        return self.base(self.embed(patches), positions, rows, use_cache)  # (B, N, C)


class CharLevelHead(nn.Module):
    """Upstream wraps GPT2LMHeadModel, hence `base.transformer` and `base.lm_head` (tied to wte)."""

    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.transformer = GPT2Stack(config, vocab=VOCAB_SIZE, positions=config.patch_size + 1,
                                     layers=config.char_layers)
        self.lm_head = nn.Linear(config.hidden_size, VOCAB_SIZE, bias=False)
        self.lm_head.weight = self.transformer.wte.weight


class CharLevelDecoder(nn.Module):
    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.base = CharLevelHead(config)

    def forward(self, encoded: torch.Tensor, chars: torch.Tensor, start: int = 0, rows=None):
        """Logits of each next char.

        encoded (B, C): the patch-level state that stands in position 0 (upstream's bos);
        chars (B, T): the chars at positions start+1 .. start+T (start = 0: whole sequence).
        Returns (B, T + 1, 128) when start == 0, else (B, T, 128).
        """
        emb = self.base.transformer.wte(chars)
        if start == 0:
            emb = torch.cat([encoded[:, None, :].to(emb.dtype), emb], dim=1)
            first = 0
        else:
            first = start + 1
        positions = torch.arange(first, first + emb.shape[1], device=emb.device).expand(emb.shape[0], -1)
        h = self.base.transformer(emb, positions, rows)
        return self.base.lm_head(h)


class NotaGen(nn.Module):
    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.config = config
        self.patch_level_decoder = PatchLevelDecoder(config)
        self.char_level_decoder = CharLevelDecoder(config)

    def tie_weights(self):
        """Re-tie lm_head to wte (needed after `load_state_dict(assign=True)`)."""
        head = self.char_level_decoder.base
        head.lm_head.weight = head.transformer.wte.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def char_losses(self, patches: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy (nats) and the number of predicted chars, per sequence.

        patches (B, N, P) long, masks (B, N) with 1 for real patches (right-padded).
        As upstream: every patch after the first is predicted from the previous patch's
        hidden state; pad chars (id 0) are not predicted.
        """
        B, N, P = patches.shape
        hidden = self.patch_level_decoder(patches)  # (B, N, C)
        lengths = masks.sum(dim=1)  # (B,)
        idx = torch.arange(N, device=patches.device)
        source = idx[None, :] < (lengths[:, None] - 1)  # states that have a next patch
        target = (idx[None, :] >= 1) & (idx[None, :] < lengths[:, None])
        encoded = hidden[source]  # (M, C)
        targets = patches[target]  # (M, P)
        owner = idx.new_zeros(B, N) + torch.arange(B, device=patches.device)[:, None]
        owner = owner[target]  # (M,)
        logits = self.char_level_decoder(encoded, targets[:, :-1])  # (M, P, 128)
        ce = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), targets.reshape(-1), reduction="none")
        ce = ce.view(-1, P)
        counted = targets != PAD_ID
        ce = (ce * counted).sum(dim=1)
        loss_sum = torch.zeros(B, device=patches.device).index_add_(0, owner, ce)
        chars = torch.zeros(B, device=patches.device).index_add_(0, owner, counted.sum(dim=1).float())
        return loss_sum, chars

    def forward(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Upstream's training loss: mean cross-entropy over every predicted char of the batch."""
        loss_sum, chars = self.char_losses(patches, masks)
        return loss_sum.sum() / chars.sum().clamp(min=1)

    def setup_caches(self, batch: int, dtype=None, device=None):
        """Allocate fixed-size KV caches for generation (patch level and char level)."""
        c = self.config
        ref = self.patch_level_decoder.patch_embedding.weight
        dtype = dtype or ref.dtype
        device = device or ref.device
        for block in self.patch_level_decoder.base.h:
            block.attn.cache = KVCache(batch, c.num_heads, c.patch_length, c.head_dim, dtype, device)
        for block in self.char_level_decoder.base.transformer.h:
            block.attn.cache = KVCache(batch, c.num_heads, c.patch_size + 1, c.head_dim, dtype, device)

    def clear_caches(self):
        for block in [*self.patch_level_decoder.base.h, *self.char_level_decoder.base.transformer.h]:
            block.attn.cache = None


def count_parameters(config: NotaGenConfig) -> int:
    """Parameter count without allocating memory."""
    with torch.device("meta"):
        return NotaGen(config).num_parameters()


def init_weights_like_gpt2(model: NotaGen):
    """GPT-2's scaled init of residual projections (used when training from scratch)."""
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            layers = (model.config.patch_layers if name.startswith("patch") else model.config.char_layers)
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * layers))
