"""The decode plan: which path runs a batch, decided in one place from independent options."""
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from pipelines.abc.prompts import Prompt
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.options import GenerationLimits
from pipelines.generation.plan import FUSED_MAX_BATCH, PAIR_MAX_BATCH, TORCH_PAIR_MAX_BATCH, DecodeOptions, plan_decode
from pipelines.model.config import NotaGenConfig, preset
from pipelines.model.network import NotaGen
from pipelines.model.runtime import pick_runtime

CUDA = SimpleNamespace(device=torch.device("cuda"))  # planning reads only the device: no GPU needed
CONFIG = preset("tiny")


@pytest.fixture
def triton(monkeypatch):
    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: True)


def paths(config, runtime, options=DecodeOptions(), batches=(1, 2, 3, 4, 5)):
    return [(p.graph, p.compile, p.fused, p.pair) for p in (plan_decode(config, runtime, b, options) for b in batches)]


def test_cuda_with_triton_runs_kernels_up_to_their_batch_limits(triton):
    assert (FUSED_MAX_BATCH, PAIR_MAX_BATCH) == (2, 4)
    assert paths(CONFIG, CUDA) == [(True, False, True, True), (True, False, True, True), (True, False, False, True),
                                   (True, False, False, True), (True, False, False, False)]
    # Compiled steps only when asked: a compile per batch size takes longer than a piece
    assert "compiled steps off by default" in str(plan_decode(CONFIG, CUDA, 1))
    assert paths(CONFIG, CUDA, DecodeOptions(compile=True), batches=(1, 5)) == [(True, True, True, True),
                                                                                (True, True, False, False)]
    assert "batch 3 is over FUSED_MAX_BATCH (2)" in str(plan_decode(CONFIG, CUDA, 3))


def test_options_are_independent(triton):
    """Turning compilation off leaves the kernels on; the kernels off leave pairs on, and so on."""
    uncompiled = paths(CONFIG, CUDA, DecodeOptions(compile=False), batches=(1,))
    assert uncompiled == [(True, False, True, True)]
    on = DecodeOptions(compile=True, fused=False)
    assert paths(CONFIG, CUDA, on, batches=(1, 3)) == [(True, True, False, True)] * 2
    on = DecodeOptions(compile=True, pair=False)
    assert paths(CONFIG, CUDA, on, batches=(2, 3)) == [(True, True, True, False), (True, True, False, False)]
    assert "two chars a pass turned off" in str(plan_decode(CONFIG, CUDA, 1, DecodeOptions(pair=False)))


def test_the_kernels_refuse_what_they_cannot_run(triton, monkeypatch):
    odd_heads = NotaGenConfig(16, 32, 1, 1, 48, num_heads=2)  # head size 24
    plan = plan_decode(odd_heads, CUDA, 1, DecodeOptions(fused=True, pair=True))
    assert not plan.fused and not plan.pair and "do not tile head size 24" in str(plan)
    odd_patch = replace(CONFIG, patch_size=15)
    assert paths(odd_patch, CUDA, batches=(1,)) == [(True, False, True, False)]
    assert "patch size 15 is odd" in str(plan_decode(odd_patch, CUDA, 1))
    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: False)
    plan = plan_decode(CONFIG, CUDA, 1, DecodeOptions(compile=True, fused=True))
    assert (plan.compile, plan.fused, plan.pair_torch) == (False, False, True)
    assert "fused kernels asked for, but off: Triton is not installed" in str(plan)
    assert "compiled steps asked for, but off: Triton is not installed" in str(plan)


def test_without_triton_cuda_draws_two_chars_a_pass_in_pytorch_up_to_its_batch_limit(monkeypatch):
    """PyTorch's Windows wheels ship without Triton: no compiled steps or kernels, but two chars a pass."""
    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: False)
    assert TORCH_PAIR_MAX_BATCH == 4
    assert paths(CONFIG, CUDA) == [(True, False, False, True)] * 4 + [(True, False, False, False)]
    plans = [plan_decode(CONFIG, CUDA, b) for b in (1, 4, 5)]
    assert [p.pair_torch for p in plans] == [True, True, False]
    assert plans[0].describe() == "CUDA graph, uncompiled; patch step: modules; char step: two chars a pass in PyTorch"
    assert "in PyTorch ops (Triton is not installed)" in str(plans[0])
    assert "batch 5 is over TORCH_PAIR_MAX_BATCH (4)" in str(plans[2])
    assert plans[2].char_step == "modules" and not plans[2].checked and plans[0].checked
    assert not plan_decode(CONFIG, CUDA, 1, DecodeOptions(pair=False)).pair
    assert "patch size 15 is odd" in str(plan_decode(replace(CONFIG, patch_size=15), CUDA, 1))
    cpu = pick_runtime("cpu")
    assert paths(CONFIG, cpu, batches=(1,)) == [(False, False, False, False)]  # eagerly 129 rows cost arithmetic
    asked = plan_decode(CONFIG, cpu, 2, DecodeOptions(pair=True))
    assert (asked.graph, asked.pair, asked.pair_torch) == (False, True, True)


def test_the_cpu_runs_the_modules_eagerly_unless_the_kernels_are_asked_for(triton):
    cpu = pick_runtime("cpu")
    assert paths(CONFIG, cpu, batches=(1, 4)) == [(False, False, False, False)] * 2
    asked = plan_decode(CONFIG, cpu, 2, DecodeOptions(fused=True, pair=True))
    assert (asked.graph, asked.fused, asked.pair) == (False, True, True)  # Triton's interpreter runs them


def test_pieces_say_which_path_wrote_them():
    torch.manual_seed(0)
    engine = Engine(NotaGen(preset("tiny")).eval(), pick_runtime("cpu"))
    plan = engine.plan(2)
    pieces = engine.generate([GenerationRequest(Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), seed=i)
                              for i in range(2)], limits=GenerationLimits(max_patches=2, bar_retries=0))
    assert plan.describe() == "eager, uncompiled; patch step: modules; char step: one char a step (modules)"
    assert [p.decode_path for p in pieces] == [plan.describe()] * 2
    assert engine.decoder(2).describe() == plan.describe()
