"""One-position decode through a GPT-2 stack in Triton kernels: five launches per block.

The generation engine runs its batches of up to FUSED_MAX_BATCH rows through these on CUDA.

At small batches a decode step is a chain of matrix-vector products over weight
matrices of 3-13 MB (NotaGen-X). Through PyTorch each block is about fifteen
kernels on an H100 (cuBLAS splits every product in two, then come the norms,
cache writes, attention, activation and residual adds), each of them a few
microseconds for about a microsecond of weight traffic. Here a block is five:

1. layer norm, QKV product and bias                      -> qkv (B, 3C)
2. the new key and value into the cache at each row's position, attention over
   the cache up to it (a long cache is split over several programs per head and
   merged by one more small kernel)                     -> y (B, C)
3. output projection, bias and residual                 -> x, in place
4. layer norm, MLP up-projection, bias and GELU (tanh)  -> h (B, 4C)
5. MLP down-projection, bias and residual               -> x, in place

and the final norm (with an optional head product) is one more. Products
accumulate in fp32 and round to the model's dtype where the PyTorch modules do
(after the norm, each linear layer, the GELU and each residual add), so the
results match the modules up to the order of the sums.

Weights are read as (out, in) rows, contiguous along the input. GPT-2's Conv1D
stores (in, out), so `FusedStack` re-lays those matrices in memory once; shapes
and values are unchanged and PyTorch's own products take either layout.

The kernels run on CUDA; with TRITON_INTERPRET=1 set before import, Triton's
interpreter runs them on CPU tensors (the tests do).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pipelines.model.network import GPT2Stack

ATTENTION_SLOTS = 128  # cache slots per attention program: the patch decoder's 1024 make 8 programs a head
# (BLOCK_N, BLOCK_K, warps per row) of each product, the fastest measured on an H100 at batch 1
# (NotaGen-X: 5.0, 2.8, 5.6, 5.5 and 3.0 us per call with the weights in L2; the weight traffic
# alone is 2.9, 1.0, 3.9, 3.9 and 0.1 us). Many small programs keep the most loads in flight. In a
# whole patch (weights from memory) seven variants measured 4.02-6.02 ms; this one 4.04.
LINEAR_BLOCKS = {"qkv": (4, 1024, 1), "out": (2, 1024, 1), "up": (4, 512, 1), "down": (2, 1024, 1),
                 "head": (1, 1024, 1)}


@triton.jit
def _skipped(skip_ptr, CAN_SKIP: tl.constexpr):
    """Whether this step is skipped: the flag is set once every row has ended its patch (the rest
    of the patch is padding, so there is nothing to compute)."""
    if CAN_SKIP:
        return tl.load(skip_ptr) != 0
    return False


@triton.jit
def _linear_kernel(x_ptr, stride_x, ln_w_ptr, ln_b_ptr, eps, w_ptr, bias_ptr, out_ptr, stride_out, B, N, skip_ptr,
                   K: tl.constexpr, K_POW2: tl.constexpr, PRE_LN: tl.constexpr, HAS_BIAS: tl.constexpr,
                   GELU: tl.constexpr, RESIDUAL: tl.constexpr, CAN_SKIP: tl.constexpr,
                   B_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[b, n] (+)= act(sum_k norm(x)[b, k] * w[n, k] + bias[n]) for BLOCK_N outputs of every row."""
    if _skipped(skip_ptr, CAN_SKIP):
        return
    dtype = out_ptr.dtype.element_ty
    rows = tl.arange(0, B_BLOCK)
    row_ok = rows < B
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    if PRE_LN:  # the row statistics, from the whole row (a few KB, cached)
        row_k = tl.arange(0, K_POW2)
        row_m = row_ok[:, None] & (row_k < K)[None, :]
        xf = tl.load(x_ptr + rows[:, None] * stride_x + row_k[None, :], mask=row_m, other=0.0).to(tl.float32)
        mean = tl.sum(xf, axis=1) / K
        centred = tl.where(row_m, xf - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / K + eps)
    acc = tl.zeros((B_BLOCK, BLOCK_N), dtype=tl.float32)
    for k0 in tl.static_range(0, K, BLOCK_K):  # unrolled: every weight load can be in flight at once
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        xv = tl.load(x_ptr + rows[:, None] * stride_x + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                     other=0.0).to(tl.float32)
        if PRE_LN:
            g = tl.load(ln_w_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            beta = tl.load(ln_b_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
            xv = ((xv - mean[:, None]) * rstd[:, None] * g[None, :] + beta[None, :]).to(dtype).to(tl.float32)
        w = tl.load(w_ptr + cols[:, None] * K + ks[None, :], mask=col_ok[:, None] & k_ok[None, :],
                    other=0.0).to(tl.float32)
        acc += tl.sum(xv[:, None, :] * w[None, :, :], axis=2)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    y = acc.to(dtype).to(tl.float32)
    if GELU:  # GPT-2's tanh form; tanh(z) = 1 - 2 / (exp(2z) + 1)
        z = 0.7978845608028654 * (y + 0.044715 * y * y * y)
        y = (0.5 * y * (2.0 - 2.0 / (tl.exp(2.0 * z) + 1.0))).to(dtype).to(tl.float32)
    offsets = rows[:, None] * stride_out + cols[None, :]
    out_ok = row_ok[:, None] & col_ok[None, :]
    if RESIDUAL:  # each output is read and written by this program only, so in place is safe
        y += tl.load(out_ptr + offsets, mask=out_ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, y.to(dtype), mask=out_ok)


@triton.jit
def _attention_kernel(qkv_ptr, stride_qkv, k_ptr, v_ptr, pos_ptr, stride_pos, out_ptr, stride_out, part_ptr, H,
                      scale, skip_ptr, S: tl.constexpr, C: tl.constexpr, D: tl.constexpr, BLOCK_S: tl.constexpr,
                      SPLITS: tl.constexpr, CAN_SKIP: tl.constexpr):
    """One (row, head, split of the cache): split 0 writes the new key and value at the row's
    position and starts from that slot; each split attends to its share of slots 0..position-1.

    With one split the result goes to `out`; with several, each split's partial softmax (max,
    sum, weighted values) goes to `part` (B, H, SPLITS, D + 2) for `_attention_merge_kernel`.
    """
    if _skipped(skip_ptr, CAN_SKIP):
        return
    b = tl.program_id(0)
    h = tl.program_id(1)
    j = tl.program_id(2)
    d = tl.arange(0, D)
    head = qkv_ptr + b * stride_qkv + h * D + d
    q = tl.load(head).to(tl.float32)
    k_new = tl.load(head + C)
    v_new = tl.load(head + 2 * C)
    p = tl.load(pos_ptr + b * stride_pos)
    cache = (b * H + h) * S * D
    first = j == 0
    only_first = d + j * D < D  # (D,) all true in split 0, all false elsewhere
    tl.store(k_ptr + cache + p * D + d, k_new, mask=only_first)
    tl.store(v_ptr + cache + p * D + d, v_new, mask=only_first)
    # Online softmax; a split with no slots keeps a finite max and a zero sum.
    m_i = tl.where(first, tl.sum(q * k_new.to(tl.float32), axis=0) * scale, -1e30)
    l_i = tl.where(first, 1.0, 0.0)
    acc = tl.where(first, v_new.to(tl.float32), 0.0)
    CHUNK: tl.constexpr = S // SPLITS
    for s0 in range(0, CHUNK, BLOCK_S):  # blocks past the position are masked out: no loads
        s = j * CHUNK + s0 + tl.arange(0, BLOCK_S)
        s_ok = s < p
        slots = cache + s[:, None] * D + d[None, :]
        kt = tl.load(k_ptr + slots, mask=s_ok[:, None], other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + slots, mask=s_ok[:, None], other=0.0).to(tl.float32)
        scores = tl.where(s_ok, tl.sum(kt * q[None, :], axis=1) * scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=0))
        alpha = tl.exp(m_i - m_new)
        e = tl.exp(scores - m_new)
        l_i = l_i * alpha + tl.sum(e, axis=0)
        acc = acc * alpha + tl.sum(e[:, None] * vt, axis=0)
        m_i = m_new
    if SPLITS == 1:
        tl.store(out_ptr + b * stride_out + h * D + d, (acc / l_i).to(out_ptr.dtype.element_ty))
    else:
        part = part_ptr + ((b * H + h) * SPLITS + j) * (D + 2)
        tl.store(part + d, acc)
        tl.store(part + D, m_i)
        tl.store(part + D + 1, l_i)


@triton.jit
def _attention_merge_kernel(part_ptr, out_ptr, stride_out, H, skip_ptr, D: tl.constexpr, SPLITS: tl.constexpr,
                            CAN_SKIP: tl.constexpr):
    """One (row, head): combine the splits' partial softmaxes into the attention output."""
    if _skipped(skip_ptr, CAN_SKIP):
        return
    b = tl.program_id(0)
    h = tl.program_id(1)
    j = tl.arange(0, SPLITS)
    d = tl.arange(0, D)
    part = part_ptr + ((b * H + h) * SPLITS + j) * (D + 2)  # (SPLITS,)
    m = tl.load(part + D)
    weight = tl.exp(m - tl.max(m, axis=0))
    total = tl.sum(weight * tl.load(part + D + 1), axis=0)
    acc = tl.sum(weight[:, None] * tl.load(part[:, None] + d[None, :]), axis=0)
    tl.store(out_ptr + b * stride_out + h * D + d, (acc / total).to(out_ptr.dtype.element_ty))


@triton.jit
def _layer_norm_kernel(x_ptr, stride_x, w_ptr, b_ptr, eps, out_ptr, stride_out, skip_ptr, K: tl.constexpr,
                       K_POW2: tl.constexpr, CAN_SKIP: tl.constexpr):
    if _skipped(skip_ptr, CAN_SKIP):
        return
    row = tl.program_id(0)
    ks = tl.arange(0, K_POW2)
    k_ok = ks < K
    x = tl.load(x_ptr + row * stride_x + ks, mask=k_ok, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / K
    centred = tl.where(k_ok, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / K + eps)
    g = tl.load(w_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
    beta = tl.load(b_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)
    y = centred * rstd * g + beta
    tl.store(out_ptr + row * stride_out + ks, y.to(out_ptr.dtype.element_ty), mask=k_ok)


@torch.no_grad()
def row_major(weight: torch.nn.Parameter) -> torch.Tensor:
    """Lay a Conv1D (in, out) weight out as (out, in) rows in memory, in place; returns that (out, in) view."""
    if not weight.t().is_contiguous():
        weight.data = weight.data.t().contiguous().t()
    return weight.t()


def block_weights(stack: GPT2Stack) -> list[tuple[torch.Tensor, ...]]:
    """Each block's QKV, output, MLP up and down weights as (out, in) rows (`row_major`)."""
    return [(row_major(b.attn.c_attn.weight), row_major(b.attn.c_proj.weight), row_major(b.mlp.c_fc.weight),
             row_major(b.mlp.c_proj.weight)) for b in stack.h]


def lay_out_for_kernels(model) -> None:
    """Lay every block weight of both decoders out as the kernels read it, once, before anything
    is compiled: code compiled for the modules is specialised to their weights' strides, and a
    later change under it (seen on an H100 with torch 2.11) fails with a stride mismatch."""
    block_weights(model.patch_level_decoder.base)
    block_weights(model.char_level_decoder.base.transformer)


class FusedStack:
    """One decode position through a GPT2Stack's blocks (and its final norm) for every row.

    Uses the blocks' KV caches (`setup_caches` first); `head` (V, C), when given, turns the
    normed state into logits. Buffers are fixed, so the calls can be captured in a CUDA graph.
    Every program holds all rows, so it suits a few rows (the engine's FUSED_MAX_BATCH).
    `skip` (a one-element int32 tensor on the device), when given, is read by every kernel:
    while it is non-zero a call computes and writes nothing, so a captured step costs only
    its launches (the engine sets it once every row has ended its patch).
    """

    def __init__(self, stack: GPT2Stack, batch: int, head: torch.Tensor | None = None,
                 slots_per_program: int = ATTENTION_SLOTS, skip: torch.Tensor | None = None):
        self.stack, self.batch, self.head = stack, batch, head
        self._skip_args = dict(skip_ptr=skip if skip is not None else stack.ln_f.weight, CAN_SKIP=skip is not None)
        self.weights = block_weights(stack)
        ref = stack.ln_f.weight
        self.rows = triton.next_power_of_2(batch)
        # Triton's interpreter (CPU) runs one program at a time: fewer, wider ones there.
        self.interpreted = not ref.is_cuda
        C = ref.shape[0]
        self.heads = stack.h[0].attn.heads if len(stack.h) else 1
        self.head_dim = C // self.heads
        new = lambda width: torch.empty(batch, width, dtype=ref.dtype, device=ref.device)  # noqa: E731
        self.qkv, self.y, self.h = new(3 * C), new(C), new(4 * C)
        # Long caches (the patch decoder's) are split over more programs, then merged.
        slots = stack.h[0].attn.cache.k.shape[2] if len(stack.h) else 1
        self.slots_per_program = slots_per_program
        self.splits = max(1, slots // slots_per_program) if slots % slots_per_program == 0 else 1
        self.part = torch.empty(batch, self.heads, self.splits, self.head_dim + 2, dtype=torch.float32,
                                device=ref.device)
        self.out = new(head.shape[0] if head is not None else C)

    def _linear(self, role, x, w, bias, out, norm=None, gelu=False, residual=False):
        N, K = w.shape
        block_n, block_k, warps = (64, 256, 1) if self.interpreted else LINEAR_BLOCKS[role]
        ln_w, ln_b, eps = (norm.weight, norm.bias, norm.eps) if norm is not None else (w, w, 0.0)
        _linear_kernel[(triton.cdiv(N, block_n),)](
            x, x.stride(0), ln_w, ln_b, eps, w, bias if bias is not None else w, out, out.stride(0), self.batch, N,
            **self._skip_args, K=K, K_POW2=triton.next_power_of_2(K), PRE_LN=norm is not None,
            HAS_BIAS=bias is not None, GELU=gelu, RESIDUAL=residual, B_BLOCK=self.rows, BLOCK_N=block_n,
            BLOCK_K=min(block_k, triton.next_power_of_2(K)),
            num_warps=warps * self.rows)  # warps per row: each thread's share of the tile stays the same

    def _attention(self, cache, positions):
        S, splits = cache.k.shape[2], self.splits
        _attention_kernel[(self.batch, self.heads, splits)](
            self.qkv, self.qkv.stride(0), cache.k, cache.v, positions, positions.stride(0), self.y, self.y.stride(0),
            self.part, self.heads, self.head_dim ** -0.5, **self._skip_args, S=S, C=self.heads * self.head_dim,
            D=self.head_dim, BLOCK_S=min(self.slots_per_program, triton.next_power_of_2(S)), SPLITS=splits,
            num_warps=1 if S <= 32 else 4)
        if splits > 1:
            _attention_merge_kernel[(self.batch, self.heads)](self.part, self.y, self.y.stride(0), self.heads,
                                                              **self._skip_args, D=self.head_dim, SPLITS=splits,
                                                              num_warps=1)

    def __call__(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, C) input embeddings (position table included), updated in place as the residual
        stream; positions (B,) the cache slots to write.

        Returns the final-normed states (B, C), or the head's logits (B, V).
        """
        if x.stride(1) != 1:
            x = x.contiguous()
        C = x.shape[1]
        for block, (w_qkv, w_out, w_up, w_down) in zip(self.stack.h, self.weights):
            attn, mlp, cache = block.attn, block.mlp, block.attn.cache
            self._linear("qkv", x, w_qkv, attn.c_attn.bias, self.qkv, norm=block.ln_1)
            self._attention(cache, positions)
            self._linear("out", self.y, w_out, attn.c_proj.bias, x, residual=True)
            self._linear("up", x, w_up, mlp.c_fc.bias, self.h, norm=block.ln_2, gelu=True)
            self._linear("down", self.h, w_down, mlp.c_proj.bias, x, residual=True)
        norm = self.stack.ln_f
        if self.head is not None:
            self._linear("head", x, self.head, None, self.out, norm=norm)
        else:
            _layer_norm_kernel[(self.batch,)](x, x.stride(0), norm.weight, norm.bias, norm.eps, self.out,
                                              self.out.stride(0), **self._skip_args, K=C,
                                              K_POW2=triton.next_power_of_2(C))
        return self.out
