"""dpo_loss against numbers worked by hand: -logsigmoid(beta * (margin - lambda * max(0, ref_c - pi_c)))."""
import pytest
import torch

from pipelines.dpo.loss import dpo_loss


def test_margin_without_penalty():
    # pi_c - pi_r = 2, ref_c - ref_r = 0, pi_c above ref_c: no penalty.
    # loss = -log sigmoid(0.1 * 2) = log(1 + e^-0.2) = 0.598138869
    losses, chosen, rejected = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]),
                                        torch.tensor([-11.0]))
    assert losses.item() == pytest.approx(0.5981388694, abs=1e-6)
    assert chosen.item() == pytest.approx(0.1)  # 0.1 * (-10 - -11)
    assert rejected.item() == pytest.approx(-0.1)  # 0.1 * (-12 - -11)


def test_penalty_when_chosen_falls_below_the_reference():
    # margin = (-12 - -15) - (-11 - -13) = 1; penalty = max(0, -11 - -12) = 1
    # loss = -log sigmoid(0.1 * (1 - 10 * 1)) = log(1 + e^0.9) = 1.241153875
    losses, _, _ = dpo_loss(torch.tensor([-12.0]), torch.tensor([-15.0]), torch.tensor([-11.0]), torch.tensor([-13.0]))
    assert losses.item() == pytest.approx(1.2411538747, abs=1e-6)


def test_batch_beta_lambda_and_plain_dpo():
    pc, pr = torch.tensor([-10.0, -12.0]), torch.tensor([-12.0, -15.0])
    rc, rr = torch.tensor([-11.0, -11.0]), torch.tensor([-11.0, -13.0])
    losses, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, lam=0.0)  # plain DPO: margins 2 and 1
    assert losses.tolist() == pytest.approx([0.5981388694, 0.6443966601], abs=1e-6)  # log(1 + e^-0.1) second
    losses, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.05, lam=10.0)
    # second pair: 0.05 * (1 - 10) = -0.45 -> log(1 + e^0.45) = 0.943249
    assert losses[1].item() == pytest.approx(0.9432489, abs=1e-6)


def test_gradient_raises_chosen_and_lowers_rejected():
    pc = torch.tensor([-12.0], requires_grad=True)
    pr = torch.tensor([-15.0], requires_grad=True)
    losses, chosen, _ = dpo_loss(pc, pr, torch.tensor([-11.0]), torch.tensor([-13.0]))
    losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descending the loss raises pi_c, lowers pi_r
    # with the penalty active, d/dpi_c = -(1 - sigmoid(z)) * beta * (1 + lambda): 11x the rejected side's pull
    assert pc.grad.item() == pytest.approx(-11 * pr.grad.item(), rel=1e-6)
    assert not chosen.requires_grad
