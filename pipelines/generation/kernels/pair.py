"""Two chars per pass of the char decoder: each piece's next position, and every possible one after it.

At small batches a char step is bound by reading the char decoder's weights (236 MB for
NotaGen-X in fp16) through a chain of small dependent kernels, not by arithmetic: on an
H100 the 24 products of the six blocks take 208 us in cuBLAS for 129 rows, against 170 us
for one row in the fused kernels (`kernels/decode.py`). So each pass runs 1 + 128 rows a piece
through the decoder:

- row 0 is position p, whose input (the patch state at 0, else the char at p - 1) is known;
- row 1 + c is position p + 1 as it would be if the char drawn at p were c, for every c
  of the 128-symbol vocabulary.

In every block, row 0 attends to the cached slots before p and to itself, and each branch
row to the same slots, to row 0's new key and value (slot p) and to itself, so each row
computes what a one-row step at its position would. Row 0's logits give the char at p;
the branch row of that char gives the logits of the char at p + 1. Every draw is keyed by
its position as before, so the pieces are those of one char a step, and a patch takes half
as many passes. The chosen branch's keys and values become cache slot p + 1: the next
pass's attention reads them from the branch buffers and row 0's programs copy them into
the cache (the buffers alternate between passes, so that pass's branches do not overwrite
them while they are read).

A pass is, per block: residual add and layer norm (Triton), QKV product (cuBLAS), the
attention above (Triton), output product, residual and norm, MLP up-product with GELU (on
CUDA in cuBLAS's epilogue, which skips the modules' rounding before the GELU) and
down-product; then the final norm and the head. The products are the modules' own `addmm`s
and the residual adds round where the modules round, so row 0 and every branch match the
modules up to the order of the sums in norms and attention (and that one rounding).

The Triton kernels skip their work while the decoder's `skip` flag is set (every row has
ended its patch); the cuBLAS products still run on stale buffers, and nothing reads them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pipelines.generation.kernels.decode import _skipped
from pipelines.model.config import VOCAB_SIZE
from pipelines.model.network import CharLevelHead

ROWS = 1 + VOCAB_SIZE  # the known position and one branch per possible char
# Rows per program of the norm kernel on CUDA, and its warps: 2 or 4 rows were 1-7 us slower a pass,
# 1, 2 or 8 warps within the spread of repeats (279-285 us).
NORM_ROWS = (1, 4)
# Rows per program of the attention kernel on CUDA (16 at least), and its warps: in a pass of
# NotaGen-X on an H100, (16, 4), (32, 4), (64, 4) and (64, 8) took 290-291 us, one row a program 298.
ATTENTION_ROWS = (64, 4)


@triton.jit
def _pair_norm_kernel(x_ptr, d_ptr, xn_ptr, w_ptr, b_ptr, eps, x0_ptr, wte_ptr, wpe_ptr, p, skip_ptr,
                      C: tl.constexpr, C_POW2: tl.constexpr, G: tl.constexpr, R: tl.constexpr,
                      R_BLOCK: tl.constexpr, FIRST: tl.constexpr, CAN_SKIP: tl.constexpr):
    """R_BLOCK of the R rows (G a piece): their residual stream x (FIRST: the inputs, else
    x + d) written back, and its layer norm to xn.

    FIRST: a piece's row 0 takes its x0 row (the input at position p, position table
    included); its branch row 1 + c takes the embedding of char c plus the position table at
    p + 1, rounded as the modules round their sum."""
    if _skipped(skip_ptr, CAN_SKIP):
        return
    dtype = x_ptr.dtype.element_ty
    r = tl.program_id(0) * R_BLOCK + tl.arange(0, R_BLOCK)
    k = tl.arange(0, C_POW2)
    ok = (r < R)[:, None] & (k < C)[None, :]
    at = r[:, None] * C + k[None, :]
    if FIRST:
        j = r % G  # the row within its piece
        branch = ok & (j > 0)[:, None]
        emb = (tl.load(wte_ptr + (j - 1)[:, None] * C + k[None, :], mask=branch, other=0.0).to(tl.float32)
               + tl.load(wpe_ptr + (p + 1) * C + k, mask=k < C, other=0.0).to(tl.float32)[None, :])
        known = tl.load(x0_ptr + (r // G)[:, None] * C + k[None, :], mask=ok & (j == 0)[:, None],
                        other=0.0).to(tl.float32)
        x = tl.where((j == 0)[:, None], known, emb.to(dtype).to(tl.float32))
    else:
        x = (tl.load(x_ptr + at, mask=ok, other=0.0).to(tl.float32)
             + tl.load(d_ptr + at, mask=ok, other=0.0).to(tl.float32)).to(dtype).to(tl.float32)
    tl.store(x_ptr + at, x.to(dtype), mask=ok)
    mean = tl.sum(x, axis=1) / C
    centred = tl.where(ok, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / C + eps)
    g = tl.load(w_ptr + k, mask=k < C, other=0.0).to(tl.float32)
    beta = tl.load(b_ptr + k, mask=k < C, other=0.0).to(tl.float32)
    tl.store(xn_ptr + at, (centred * rstd[:, None] * g[None, :] + beta[None, :]).to(dtype), mask=ok)


@triton.jit
def _pair_attention_kernel(qkv_ptr, k_ptr, v_ptr, bk_ptr, bv_ptr, p, chars_ptr, stride_chars, y_ptr, scale,
                           skip_ptr, C: tl.constexpr, D: tl.constexpr, V: tl.constexpr, S: tl.constexpr,
                           SLOTS_POW2: tl.constexpr, R_BLOCK: tl.constexpr, CAN_SKIP: tl.constexpr):
    """R_BLOCK rows of one piece (program axis 2) and one head of a block at position p:
    softmax attention over the piece's cache slots 0..p-2, slot p-1 (the previous pass's
    branch for the char drawn at p-2, the input of p-1), slot p (row 0's new key; branch rows
    only) and the row itself. Row 0 writes slots p-1 and p into the cache; branch rows write
    their keys and values into this pass's half of the piece's branch buffers (B, 2, V, C).
    The cached slots, shared by the piece's rows, go through two matrix products (R_BLOCK and
    SLOTS_POW2 at least 16): fp32 sums, the softmax weights rounded to the model's dtype for
    the second as the modules' eager attention rounds them."""
    if _skipped(skip_ptr, CAN_SKIP):
        return
    j = tl.program_id(0) * R_BLOCK + tl.arange(0, R_BLOCK)  # rows within the piece
    h = tl.program_id(1)
    b = tl.program_id(2)
    d = tl.arange(0, D)
    rows2 = (j < V + 1)[:, None] & (d < D)[None, :]
    r = b * (V + 1) + j
    half = (p // 2) % 2  # this pass writes branch buffer `half`; the previous pass wrote the other
    own = qkv_ptr + r[:, None] * 3 * C + h * D + d[None, :]
    q_in = tl.load(own, mask=rows2, other=0.0)
    q = q_in.to(tl.float32)
    k_self = tl.load(own + C, mask=rows2, other=0.0)
    v_self = tl.load(own + 2 * C, mask=rows2, other=0.0)
    zero = qkv_ptr + b * (V + 1) * 3 * C + h * D + d  # the piece's row 0: its key and value are slot p
    k_zero = tl.load(zero + C)
    v_zero = tl.load(zero + 2 * C)
    prev = tl.load(chars_ptr + b * stride_chars + tl.maximum(p - 2, 0))  # slot p-1's input: the char at p-2
    prev_slot = ((b * 2 + 1 - half) * V + prev) * C + h * D + d
    k_prev = tl.load(bk_ptr + prev_slot)
    v_prev = tl.load(bv_ptr + prev_slot)
    cache = (b * (C // D) + h) * S * D  # caches (B, H, S, D)
    if tl.program_id(0) == 0:  # the block that holds row 0 writes slots p-1 and p
        tl.store(k_ptr + cache + p * D + d, k_zero)
        tl.store(v_ptr + cache + p * D + d, v_zero)
        if p > 0:
            tl.store(k_ptr + cache + (p - 1) * D + d, k_prev)
            tl.store(v_ptr + cache + (p - 1) * D + d, v_prev)
    branch = rows2 & (j > 0)[:, None]
    mine = ((b * 2 + half) * V + j[:, None] - 1) * C + h * D + d[None, :]
    tl.store(bk_ptr + mine, k_self, mask=branch)
    tl.store(bv_ptr + mine, v_self, mask=branch)
    s = tl.arange(0, SLOTS_POW2)
    s_ok = s < p - 1
    slots = cache + s[:, None] * D + d[None, :]
    kt = tl.load(k_ptr + slots, mask=s_ok[:, None], other=0.0)  # (SLOTS, D)
    vt = tl.load(v_ptr + slots, mask=s_ok[:, None], other=0.0)
    scores = tl.dot(q_in, tl.trans(kt), input_precision="ieee") * scale  # (R_BLOCK, SLOTS)
    scores = tl.where(s_ok[None, :], scores, float("-inf"))
    s_prev = tl.sum(q * k_prev.to(tl.float32)[None, :], axis=1) * scale
    s_prev = tl.where(j * 0 + p > 0, s_prev, float("-inf"))
    s_zero = tl.where(j > 0, tl.sum(q * k_zero.to(tl.float32)[None, :], axis=1) * scale, float("-inf"))
    s_self = tl.sum(q * k_self.to(tl.float32), axis=1) * scale
    m = tl.maximum(tl.maximum(tl.max(scores, axis=1), s_prev), tl.maximum(s_zero, s_self))
    e = tl.exp(scores - m[:, None])
    e_prev, e_zero, e_self = tl.exp(s_prev - m), tl.exp(s_zero - m), tl.exp(s_self - m)
    total = tl.sum(e, axis=1) + e_prev + e_zero + e_self
    acc = tl.dot(e.to(vt.dtype), vt, input_precision="ieee")
    acc += e_zero[:, None] * v_zero.to(tl.float32)[None, :] + e_self[:, None] * v_self.to(tl.float32)
    if p > 0:
        acc += e_prev[:, None] * v_prev.to(tl.float32)[None, :]
    tl.store(y_ptr + r[:, None] * C + h * D + d[None, :], (acc / total[:, None]).to(y_ptr.dtype.element_ty),
             mask=rows2)


class PairStack:
    """A pass of the char decoder (`CharLevelHead`) for `batch` pieces at an even position p:
    per piece, ROWS rows of logits (batch * ROWS, V): the char at p (row 0) and, for each char c
    that could be drawn there, the char at p + 1 (row 1 + c).

    Uses the blocks' KV caches (`setup_caches(batch)`). `skip`, when given, is the decoder's
    one-element flag (see `kernels.decode.FusedStack`). Buffers are fixed, so passes can be
    captured in a CUDA graph.
    """

    def __init__(self, head: CharLevelHead, batch: int = 1, skip: torch.Tensor | None = None):
        stack = head.transformer
        self.stack, self.head, self.batch = stack, head.lm_head.weight, batch
        ref = stack.ln_f.weight
        C = ref.shape[0]
        self.heads = stack.h[0].attn.heads
        self.head_dim = C // self.heads
        self.slots = stack.h[0].attn.cache.k.shape[2]
        self._skip_args = dict(skip_ptr=skip if skip is not None else ref, CAN_SKIP=skip is not None)
        new = lambda *shape: torch.zeros(*shape, dtype=ref.dtype, device=ref.device)  # noqa: E731
        R = batch * ROWS
        self.x, self.xn, self.d, self.y = new(R, C), new(R, C), new(R, C), new(R, C)
        self.qkv, self.h, self.logits = new(R, 3 * C), new(R, 4 * C), new(R, self.head.shape[0])
        # Each block's branch keys and values per piece, two halves that alternate between passes.
        self.branch_k = new(len(stack.h), batch, 2, ROWS - 1, C)
        self.branch_v = new(len(stack.h), batch, 2, ROWS - 1, C)
        # On CUDA cuBLAS applies GPT-2's GELU (the tanh form: on an H100 in fp32 it matched that
        # within 6e-6, the exact GELU only within 5e-4) in the up-product's epilogue, one kernel
        # fewer a block; on the CPU that call computes the exact GELU, so there the modules' own.
        self.gelu_in_product = ref.is_cuda and hasattr(torch, "_addmm_activation")
        # Rows per program. Triton's interpreter (CPU) runs one program at a time: a piece's rows in one there.
        every = triton.next_power_of_2(ROWS)
        (self.norm_rows, self.norm_warps), (self.attention_rows, self.attention_warps) = (
            ((every, 4), (every, 4)) if not ref.is_cuda else (NORM_ROWS, ATTENTION_ROWS))

    def _norm(self, norm, x0=None, p: int = 0):
        R, C = self.x.shape
        first = x0 is not None
        rows = self.norm_rows
        _pair_norm_kernel[(triton.cdiv(R, rows),)](
            self.x, self.d, self.xn, norm.weight, norm.bias, norm.eps, x0 if first else self.x,
            self.stack.wte.weight, self.stack.wpe.weight, p, **self._skip_args, C=C,
            C_POW2=triton.next_power_of_2(C), G=ROWS, R=R, R_BLOCK=rows, FIRST=first, num_warps=self.norm_warps)

    def __call__(self, x0: torch.Tensor, p: int, chars: torch.Tensor) -> torch.Tensor:
        """x0 (batch, C): each piece's input at position p (even), position table included;
        chars (batch, P): the patches so far (the char at p - 2 picks the previous pass's
        branch). Returns the logits (batch * ROWS, V)."""
        C = self.x.shape[1]
        rows = self.attention_rows
        for i, block in enumerate(self.stack.h):
            attn, mlp, cache = block.attn, block.mlp, block.attn.cache
            if i == 0:
                self._norm(block.ln_1, x0.contiguous(), p)
            else:
                self._norm(block.ln_1)
            torch.addmm(attn.c_attn.bias, self.xn, attn.c_attn.weight, out=self.qkv)
            _pair_attention_kernel[(triton.cdiv(ROWS, rows), self.heads, self.batch)](
                self.qkv, cache.k, cache.v, self.branch_k[i], self.branch_v[i], p, chars, chars.stride(0), self.y,
                self.head_dim ** -0.5, **self._skip_args, C=C, D=self.head_dim, V=ROWS - 1, S=self.slots,
                SLOTS_POW2=max(16, triton.next_power_of_2(self.slots - 2)), R_BLOCK=rows,
                num_warps=self.attention_warps)
            torch.addmm(attn.c_proj.bias, self.y, attn.c_proj.weight, out=self.d)
            self._norm(block.ln_2)
            if self.gelu_in_product:
                torch._addmm_activation(mlp.c_fc.bias, self.xn, mlp.c_fc.weight, use_gelu=True, out=self.h)
            else:
                torch.addmm(mlp.c_fc.bias, self.xn, mlp.c_fc.weight, out=self.h)
                torch.ops.aten.gelu_(self.h, approximate="tanh")  # the modules' GELU, in place
            torch.addmm(mlp.c_proj.bias, self.h, mlp.c_proj.weight, out=self.d)
        self._norm(self.stack.ln_f)
        torch.mm(self.xn, self.head.t(), out=self.logits)
        return self.logits
