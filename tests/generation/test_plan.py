"""The decode plan: which path runs a batch, decided in one place from independent options."""
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from pipelines.abc.prompts import Prompt
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.options import GenerationLimits
from pipelines.generation.plan import FUSED_MAX_BATCH, PAIR_MAX_BATCH, DecodeOptions, plan_decode
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
    assert paths(CONFIG, CUDA) == [(True, True, True, True), (True, True, True, True), (True, True, False, True),
                                   (True, True, False, True), (True, True, False, False)]
    assert "batch 3 is over FUSED_MAX_BATCH (2)" in str(plan_decode(CONFIG, CUDA, 3))


def test_options_are_independent(triton):
    """Turning compilation off leaves the kernels on; the kernels off leave pairs on, and so on."""
    uncompiled = paths(CONFIG, CUDA, DecodeOptions(compile=False), batches=(1,))
    assert uncompiled == [(True, False, True, True)]
    assert paths(CONFIG, CUDA, DecodeOptions(fused=False), batches=(1, 3)) == [(True, True, False, True)] * 2
    assert paths(CONFIG, CUDA, DecodeOptions(pair=False), batches=(2, 3)) == [(True, True, True, False),
                                                                               (True, True, False, False)]
    assert "two chars a pass turned off" in str(plan_decode(CONFIG, CUDA, 1, DecodeOptions(pair=False)))


def test_the_kernels_refuse_what_they_cannot_run(triton, monkeypatch):
    odd_heads = NotaGenConfig(16, 32, 1, 1, 48, num_heads=2)  # head size 24
    plan = plan_decode(odd_heads, CUDA, 1, DecodeOptions(fused=True, pair=True))
    assert not plan.fused and not plan.pair and "do not tile head size 24" in str(plan)
    odd_patch = replace(CONFIG, patch_size=15)
    assert paths(odd_patch, CUDA, batches=(1,)) == [(True, True, True, False)]
    assert "patch size 15 is odd" in str(plan_decode(odd_patch, CUDA, 1))
    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: False)
    plan = plan_decode(CONFIG, CUDA, 1, DecodeOptions(fused=True))
    assert (plan.compile, plan.fused, plan.pair) == (False, False, False) and "Triton is not installed" in str(plan)


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
