"""Trust, then verify: a decode path is checked against the modules when its decoder is built, and a path
that fails (a compile that raises, a kernel that computes something else) gives way to the modules with
one warning, which the pieces carry in `decode_path`; the pieces are the modules'."""
import logging

import pytest
import torch

from pipelines.abc.prompts import Prompt
from pipelines.generation.decoder import CHECK_TOLERANCE, PatchDecoder
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.options import GenerationLimits
from pipelines.generation.plan import DecodeOptions, plan_decode
from pipelines.generation.torch_pair import TorchPairStack
from pipelines.model.config import preset
from pipelines.model.network import NotaGen
from pipelines.model.runtime import pick_runtime

CPU = pick_runtime("cpu", "fp32")
LIMITS = GenerationLimits(max_patches=4, bar_retries=0)
REQUESTS = [GenerationRequest(Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), seed=3),
            GenerationRequest(Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber"), seed=4)]


@pytest.fixture(scope="module")
def model_and_plain():
    torch.manual_seed(0)
    model = NotaGen(preset("tiny")).eval()
    return model, Engine(model, CPU, compile=False, fused=False, pair=False).generate(REQUESTS, limits=LIMITS)


def fallback_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "pipelines.generation.decoder"]


def test_a_path_that_agrees_with_the_modules_is_kept_and_its_check_is_recorded(monkeypatch, model_and_plain):
    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: False)
    model, _ = model_and_plain
    model.setup_caches(2)
    decoder = PatchDecoder(model, plan_decode(model.config, CPU, 2, DecodeOptions(pair=True)), CPU.device, CPU.dtype)
    check = decoder.checked
    assert check.passed and check.logits < 1e-5 and check.state < 1e-5, check
    assert check.logits_bound >= CHECK_TOLERANCE[torch.float32] and check.state_bound >= CHECK_TOLERANCE[torch.float32]
    assert decoder.chars.abs().sum() == 0 and decoder.positions.abs().sum() == 0  # left as built


@pytest.mark.parametrize("fault", [0.5, float("nan")])
def test_a_wrong_pair_pass_falls_back_to_the_modules(monkeypatch, caplog, model_and_plain, fault):
    """The torch pair pass made to compute other logits (a fault injected into its result)."""
    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: False)
    right = TorchPairStack.__call__
    monkeypatch.setattr(TorchPairStack, "__call__", lambda self, *a: right(self, *a) + fault)
    model, plain = model_and_plain
    engine = Engine(model, CPU, pair=True)
    assert engine.plan(2).pair_torch
    with caplog.at_level(logging.WARNING):
        pieces = engine.generate(REQUESTS, limits=LIMITS)
        again = engine.generate(REQUESTS[:1], limits=LIMITS)  # another batch size: the modules, no new warning
    assert [p.raw for p in pieces] == [p.raw for p in plain] and again[0].raw == plain[0].raw
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1 and "two chars a pass in PyTorch" in warnings[0] and "failed its check" in warnings[0]
    assert ("logits within nan" if fault != fault else "logits within 0.5") in warnings[0]
    assert engine.fallback == warnings[0]
    for batch, piece in ((2, pieces[0]), (1, again[0])):
        plan = engine.plan(batch)
        assert (plan.graph, plan.compile, plan.fused, plan.pair) == (False, False, False, False)
        assert piece.decode_path == plan.describe()
        assert piece.decode_path.startswith("eager, uncompiled; patch step: modules; char step: one char a step "
                                            "(modules) [fallback: the decode path")


def test_a_compile_that_fails_falls_back_to_the_modules(monkeypatch, caplog, model_and_plain):
    """torch.compile made to fail as a broken backend does, at the compiled step's first call."""
    def failing_compile(fn):
        def compiled(*args, **kwargs):
            raise RuntimeError("backend compiler failed\nwith a long traceback")
        return compiled

    monkeypatch.setattr("pipelines.generation.decoder.compile_step", failing_compile)
    model, plain = model_and_plain
    engine = Engine(model, CPU, compile=True, fused=False, pair=False)
    assert engine.plan(2).compile
    with caplog.at_level(logging.WARNING):
        pieces = engine.generate(REQUESTS, limits=LIMITS)
    assert [p.raw for p in pieces] == [p.raw for p in plain]
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1 and "(RuntimeError: backend compiler failed)" in warnings[0], warnings
    assert all("[fallback: the decode path 'eager, compiled;" in p.decode_path for p in pieces)
    assert not engine.plan(2).compile
