"""Two chars a pass of the char decoder in PyTorch ops: the pass of `kernels/pair.py` where Triton is missing.

PyTorch's Windows wheels ship without Triton, so neither torch.compile nor the decode kernels run
there. A char step through the modules is then a long chain of small kernels. A pass here runs the
same rows as the Triton pair pass, 1 + 128 a piece (row 0: position p, whose input is known; row
1 + c: position p + 1 as if the char drawn at p were c), through the char decoder's own modules:
its products in cuBLAS (the `Conv1D` `addmm`s; on CUDA the up-projection applies GPT-2's tanh GELU
in its epilogue, `torch._addmm_activation`, as `kernels/pair.py` does), layer norms, and per block
one `scaled_dot_product_attention` call with a fixed mask. So a patch takes eight passes instead
of sixteen steps, and each pass samples once for both chars (`steps.pick_pair_rows`).

Each block keeps its keys and values in one buffer (blocks, 2, B, H, T, D): slots 0..P-1 are the
patch's known positions, then one slot per row of the pass (T rounded up to 16 for the attention
kernels). A row attends to the known slots before p, to row 0 (position p) and to itself, which the
mask of the pass says; its keys and values are written where the rows' slots are. The next pass
first copies two of those slots back, in every block at once: row 0 (slot p) and the branch of the
char drawn at p (slot p + 1). The rows compute what a one-row step at their positions would (up to
the order of the sums), and every draw is keyed by its position, so the pieces are those of one
char a step.

p is a Python int (the patch decoder runs a patch's passes in order), so every shape is fixed and
nothing syncs with the host: a patch is captured in one CUDA graph. The pass reads the blocks'
weights through the modules and keeps its own buffers (not the modules' KV caches).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipelines.generation.sampling import exponential_noise
from pipelines.generation.steps import pick_pair_rows
from pipelines.model.config import VOCAB_SIZE
from pipelines.model.network import CharLevelHead

ROWS = 1 + VOCAB_SIZE  # a piece's rows in a pair pass: the known position and one branch per possible char


class TorchPairStack:
    """A pass of the char decoder (`CharLevelHead`) for `batch` pieces at an even position p, in PyTorch
    ops: the logits (batch * ROWS, V) of the char at p (row 0) and, for each char c that could be drawn
    there, of the char at p + 1 (row 1 + c). `pick` draws both chars from them."""

    def __init__(self, head: CharLevelHead, batch: int):
        stack = head.transformer
        self.head, self.batch = head, batch
        ref = stack.ln_f.weight
        C, self.heads = ref.shape[0], stack.h[0].attn.heads
        self.P = stack.wpe.num_embeddings - 1  # the patch size: positions 0..P-1 (and the one after)
        slots = -(-(self.P + ROWS) // 16) * 16  # known positions, then the pass's rows
        z = dict(dtype=ref.dtype, device=ref.device)
        self.kv = torch.zeros(len(stack.h), 2, batch, self.heads, slots, C // self.heads, **z)  # (L, 2, B, H, T, D)
        self.x = torch.zeros(batch, ROWS, C, **z)  # (B, ROWS, C) the pass's input
        self.row_zero = torch.full((batch, 1), self.P, device=ref.device)  # (B, 1) row 0's slot
        self.noise = torch.ones(batch, self.P, VOCAB_SIZE, device=ref.device)  # (B, P, V) the patch's noise
        self.masks = {p: self._mask(p, slots, **z) for p in range(0, self.P, 2)}
        # On CUDA cuBLAS applies the tanh GELU in the up-product's epilogue (see kernels/pair.py); on
        # the CPU that call computes the exact GELU, so there the modules' own.
        self.gelu_in_product = ref.is_cuda and hasattr(torch, "_addmm_activation")

    def _mask(self, p: int, slots: int, dtype, device) -> torch.Tensor:
        """(ROWS, T) additive mask of the pass at p: every row sees the known slots before p and row 0
        (position p); a branch row sees itself too."""
        seen = torch.zeros(ROWS, slots, dtype=torch.bool)
        seen[:, :p] = True
        seen[:, self.P] = True
        seen[1:, self.P + 1:self.P + ROWS] = torch.eye(ROWS - 1, dtype=torch.bool)
        return torch.zeros(ROWS, slots, dtype=dtype).masked_fill(~seen, float("-inf")).to(device)

    def __call__(self, x0: torch.Tensor, p: int, chars: torch.Tensor) -> torch.Tensor:
        """x0 (B, C): each piece's input at position p (even), position table included; chars (B, P)
        the patches so far (the char at p - 2 picks the last pass's branch). Returns the logits (B * ROWS, V)."""
        B, C = x0.shape
        P, kv, stack = self.P, self.kv, self.head.transformer
        if p > 0:  # slots p - 2 and p - 1: the last pass's row 0 and its branch of the char drawn at p - 2
            rows = torch.cat([self.row_zero, chars[:, p - 2:p - 1] + P + 1], 1)  # (B, 2)
            L, _, _, H, _, D = kv.shape
            kv[:, :, :, :, p - 2:p] = kv.gather(4, rows.view(1, 1, B, 1, 2, 1).expand(L, 2, B, H, 2, D))
        x = self.x
        x[:, 0] = x0
        x[:, 1:] = stack.wte.weight + stack.wpe.weight[p + 1]  # each char's embedding at p + 1, as the modules add it
        for i, block in enumerate(stack.h):
            attn, mlp = block.attn, block.mlp
            qkv = attn.c_attn(block.ln_1(x)).view(B, ROWS, 3, self.heads, -1)  # (B, ROWS, 3, H, D)
            kv[i, :, :, :, P:P + ROWS] = qkv[:, :, 1:].permute(2, 0, 3, 1, 4)  # the rows' keys and values
            y = F.scaled_dot_product_attention(qkv[:, :, 0].transpose(1, 2), kv[i, 0], kv[i, 1],
                                               attn_mask=self.masks[p])  # (B, H, ROWS, D)
            x = x + attn.c_proj(y.transpose(1, 2).reshape(B, ROWS, C))
            x = x + mlp.c_proj(self._up(mlp, block.ln_2(x)))
        return self.head.lm_head(stack.ln_f(x)).view(B * ROWS, -1)

    def _up(self, mlp, h: torch.Tensor) -> torch.Tensor:
        """The MLP's up-product and GELU (tanh), as the modules compute it (on CUDA fused in the product)."""
        if not self.gelu_in_product:
            return F.gelu(mlp.c_fc(h), approximate="tanh")
        fc = mlp.c_fc
        return torch._addmm_activation(fc.bias, h.view(-1, h.shape[-1]), fc.weight, use_gelu=True).view(
            *h.shape[:-1], -1)

    def pick(self, logits, chars, p: int, pos, forced, in_body, seeds, counters, top_k, top_p, temperature, rules):
        """Each piece's chars at p and p + 1 (`steps.pick_pair_rows`); at p = 0 the whole patch's noise
        is drawn first (one set of kernels a patch, not one a char)."""
        if p == 0:
            B, P = chars.shape
            steps = counters[:, None] * P + torch.arange(P, device=chars.device)  # (B, P)
            self.noise.copy_(exponential_noise(seeds[:, None].expand(B, P).reshape(-1), steps.reshape(-1),
                                               VOCAB_SIZE).view(B, P, -1))
        return pick_pair_rows(logits, chars, p, pos, self.noise, forced, in_body, top_k, top_p, temperature, rules)
