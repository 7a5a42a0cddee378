"""Sampling of the next char: top-k, then top-p, then temperature, all on the device.

The distribution equals upstream's (the `samplings` package as NotaGen calls it):
normalise, keep the k most likely, renormalise, keep the smallest set whose
probability reaches top-p (the token that crosses it is kept), renormalise, then
p ** (1 / T) renormalised. Draws use the exponential race (argmax p / E with
E ~ Exp(1)), which needs no host sync; the noise comes from a counter-based hash
of (piece seed, step, token), so a piece's draws do not depend on which other
pieces share its batch.
"""
from __future__ import annotations

import torch


def sampling_distribution(probs: torch.Tensor, top_k, top_p, temperature) -> torch.Tensor:
    """probs (..., V) -> the distribution a char is drawn from, (..., V).

    `top_k` (0: off), `top_p` and `temperature` are numbers or tensors broadcastable
    to (..., 1), so one compiled step serves every setting.
    """
    sorted_p, order = sorted_distribution(probs, top_k, top_p, temperature)
    return torch.zeros_like(sorted_p).scatter(-1, order, sorted_p)


def sorted_distribution(probs: torch.Tensor, top_k, top_p, temperature) -> tuple[torch.Tensor, torch.Tensor]:
    """The filtered distribution in descending order of `probs`, and that order (token ids)."""
    probs = probs.float()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    sorted_p, order = torch.sort(probs, dim=-1, descending=True)
    rank = torch.arange(probs.shape[-1], device=probs.device)
    top_k = torch.as_tensor(top_k, device=probs.device)
    keep = (rank < top_k) | (top_k <= 0)  # top-k: the k most likely (0 keeps all)
    sorted_p = torch.where(keep, sorted_p, 0.0)
    sorted_p = sorted_p / sorted_p.sum(dim=-1, keepdim=True)
    before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the more likely tokens
    sorted_p = torch.where(before > torch.as_tensor(top_p, device=probs.device), 0.0, sorted_p)
    sorted_p = sorted_p / sorted_p.sum(dim=-1, keepdim=True)
    sorted_p = sorted_p.pow(1.0 / torch.as_tensor(temperature, device=probs.device, dtype=torch.float32))
    return sorted_p / sorted_p.sum(dim=-1, keepdim=True), order


_MASK31 = (1 << 31) - 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """An integer hash on 31-bit values whose products stay below 2**58: exact in int64 on every backend."""
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK31
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK31
    return x ^ (x >> 16)


def uniform_noise(seeds: torch.Tensor, steps: torch.Tensor, vocab: int) -> torch.Tensor:
    """Uniform (0, 1) noise (B, vocab), a pure function of each row's seed and step."""
    seeds = seeds.to(torch.int64)
    seed = _mix((seeds & _MASK31) ^ ((seeds >> 31) & _MASK31))
    key = _mix(seed ^ _mix((steps.to(torch.int64) & _MASK31) + 0x2545F49))[:, None]
    token = torch.arange(vocab, device=seeds.device, dtype=torch.int64) * 0x9E37  # < 2**23: no overflow
    bits = _mix((key + token) & _MASK31) >> 7  # 24 random bits
    return (bits.float() + 0.5) / float(1 << 24)


def exponential_noise(seeds: torch.Tensor, steps: torch.Tensor, vocab: int) -> torch.Tensor:
    """E = -log U ~ Exp(1) per token (N, vocab), keyed like `uniform_noise`: what `race` divides by."""
    return -torch.log(uniform_noise(seeds, steps, vocab))


def race(distribution: torch.Tensor, exp_noise: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
    """The exponential race: argmax p / E over the last axis, E (..., V) in token-id order.

    With `order`, `distribution` is in that (sorted) order of token ids; returns token ids (...)."""
    if order is None:
        return torch.argmax(distribution / exp_noise, dim=-1)
    pick = torch.argmax(distribution / exp_noise.gather(-1, order), dim=-1, keepdim=True)
    return order.gather(-1, pick)[..., 0]


def draw(distribution: torch.Tensor, seeds: torch.Tensor, steps: torch.Tensor,
         order: torch.Tensor | None = None) -> torch.Tensor:
    """Sample one id per row: argmax p / E with E = -log U ~ Exp(1), the noise keyed by token id.

    With `order`, `distribution` is in that (sorted) order of token ids.
    """
    return race(distribution, exponential_noise(seeds, steps, distribution.shape[-1]), order)
