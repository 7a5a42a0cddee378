"""The warm-up / decay schedule, and that it drives the optimizer that actually steps."""
from __future__ import annotations

import math

import pytest
import torch

from pipelines.model.config import preset
from pipelines.model.network import NotaGen
from pipelines.training.config import TrainConfig
from pipelines.training.recipe import Amp, build_optimizer, optimizer_step
from pipelines.training.schedule import WarmupDecay, build_scheduler
from tests.training_data import single_thread_torch  # noqa: F401 (autouse)


def test_warmup_then_cosine_to_floor():
    f = WarmupDecay(warmup_steps=4, total_steps=14, schedule="cosine", min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


def test_linear_and_constant():
    assert [WarmupDecay(2, 6, "linear", 0.0)(s) for s in range(7)] == pytest.approx([0.5, 1, 1, 0.75, 0.5, 0.25, 0])
    assert [WarmupDecay(0, 6, "constant")(s) for s in range(3)] == [1.0, 1.0, 1.0]


def test_first_update_is_sized_by_the_warmup_rate(tmp_path):
    """Adam's first update moves each weight by about the lr in use: 1/10 of the peak during warm-up."""
    torch.manual_seed(0)
    model = NotaGen(preset("micro"))
    config = TrainConfig(data_dir=tmp_path, out_dir=tmp_path, preset="micro", lr=1e-2, weight_decay=0.0,
                         grad_clip=0.0)
    optimizer = build_optimizer(model, config, torch.device("cpu"))
    scheduler = build_scheduler(optimizer, WarmupDecay(10, 100))
    patches = torch.randint(3, 127, (1, 8, 16))
    masks = torch.ones(1, 8, dtype=torch.long)
    bias = model.char_level_decoder.base.transformer.h[0].mlp.c_fc.bias
    before = bias.detach().clone()
    model(patches, masks).backward()
    optimizer_step(model, optimizer, Amp.create(torch.device("cpu"), "fp32"), grad_clip=0.0)
    scheduler.step()
    moved = (bias.detach() - before).abs().max().item()
    assert moved == pytest.approx(1e-3, rel=1e-3)  # 1e-2 * 1/10, not 1e-2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)
