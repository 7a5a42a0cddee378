"""The DPOP loss (DPO with the positive-preference penalty), a free function of per-piece log-probs.

With policy log-probs pi_c, pi_r and frozen reference log-probs ref_c, ref_r of a
chosen and a rejected piece (whole-piece sums, in nats):

    loss = -logsigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r) - lam * max(0, ref_c - pi_c)))

The penalty term (DPO-Positive) stops the policy from lowering the chosen piece's
likelihood below the reference's while it widens the margin, as NotaGen's CLaMP-DPO
does with beta 0.1 and lambda 10. Rewards are TRL's: beta times the policy/reference
log-ratio, detached. Log-probs are computed elsewhere (`logprobs.py`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1,
             lam: float = 10.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses, chosen rewards and rejected rewards, each of shape (B,)."""
    margin = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    penalty = torch.clamp(ref_chosen - policy_chosen, min=0.0)
    losses = -F.logsigmoid(beta * (margin - lam * penalty))
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards
