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

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    top_k: int = 9
    top_p: float = 0.9
    temperature: float = 1.2

    def __post_init__(self):
        if self.top_k < 0:
            raise ValueError(f"top-k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def sampling_distribution(probs: torch.Tensor, top_k: int, top_p: float, temperature: float) -> torch.Tensor:
    """probs (..., V) -> the distribution a char is drawn from, (..., V)."""
    probs = probs.float()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    vocab = probs.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(probs, top_k, dim=-1).values[..., -1:]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(dim=-1, keepdim=True)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the more likely tokens
        sorted_p = torch.where(before > top_p, torch.zeros_like(sorted_p), sorted_p)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    if temperature != 1.0:
        probs = probs.pow(1.0 / temperature)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


_MASK62 = (1 << 62) - 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A splitmix-style integer hash kept in 62 bits so int64 arithmetic never overflows the sign."""
    x = x & _MASK62
    x = ((x ^ (x >> 31)) * 0x5BD1E995) & _MASK62
    x = ((x ^ (x >> 29)) * 0x27D4EB2F) & _MASK62
    x = ((x ^ (x >> 32)) * 0x165667B1) & _MASK62
    return x ^ (x >> 29)


def uniform_noise(seeds: torch.Tensor, steps: torch.Tensor, vocab: int) -> torch.Tensor:
    """Uniform (0, 1) noise (B, vocab), a pure function of each row's seed and step."""
    token = torch.arange(vocab, device=seeds.device, dtype=torch.int64)
    key = _mix(seeds.to(torch.int64)[:, None] * 0x9E3779B1 + _mix(steps.to(torch.int64)[:, None] + 0x632BE5AB))
    bits = _mix(key + token * 0x85EBCA77) >> 38  # 24 random bits
    return (bits.float() + 0.5) / float(1 << 24)


def draw(distribution: torch.Tensor, seeds: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Sample one id per row: argmax p / E with E = -log U ~ Exp(1)."""
    exp_noise = -torch.log(uniform_noise(seeds, steps, distribution.shape[-1]))
    return torch.argmax(distribution / exp_noise, dim=-1)
