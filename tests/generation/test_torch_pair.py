"""Two chars a pass in PyTorch ops (pipelines.generation.torch_pair), the path where Triton is missing:
its pass gives the modules' logits, its pick draws what two one-char picks draw, and the engine
writes the pieces of one char a step (CPU, fp32; Triton reported missing as PyTorch's Windows wheels
ship)."""
import pytest
import torch

from pipelines.abc.prompts import Prompt
from pipelines.generation.decoder import encode_rules
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.header import HeaderControls
from pipelines.generation.options import GenerationLimits
from pipelines.generation.plan import TORCH_PAIR
from pipelines.generation.sampling import exponential_noise
from pipelines.generation.steps import pick_char, pick_pair_rows
from pipelines.generation.torch_pair import ROWS, TorchPairStack
from pipelines.model.config import VOCAB_SIZE, preset
from pipelines.model.lora import load_model
from pipelines.model.network import NotaGen
from pipelines.model.runtime import pick_runtime
from tests.paths import DEMO_MODEL

CPU = pick_runtime("cpu", "fp32")
# A demo-model piece's header, written out, so its first patch begins the tune body (`[r:0/`).
CHORALE_HEADER = ("%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n%%score [ 1 | 2 | 3 | 4 ]\nL:1/8\nM:4/4\n"
                  'K:Emin\nV:1 treble nm="Soprano" snm="S."\nV:2 treble nm="Alto" snm="A."\n'
                  'V:3 bass nm="Tenor" snm="T."\nV:4 bass nm="Bass" snm="B."\n')


@pytest.fixture
def no_triton(monkeypatch):
    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: False)


@torch.no_grad()
def test_a_pass_gives_the_modules_logits_at_p_and_every_branchs_at_p_plus_1():
    torch.manual_seed(0)
    model = NotaGen(preset("tiny")).eval()
    head, decoder = model.char_level_decoder.base, model.char_level_decoder
    B, P = 2, model.config.patch_size
    enc, chars = torch.randn(B, model.config.hidden_size), torch.randint(3, 128, (B, P))
    stack = TorchPairStack(head, B)
    stack.kv.fill_(1e4)  # slots are written before they are read: stale values must not leak in
    for p in range(0, P, 2):
        x0 = (enc if p == 0 else head.transformer.wte(chars[:, p - 1])) + head.transformer.wpe(torch.tensor(p))
        got = stack(x0, p, chars).view(B, ROWS, VOCAB_SIZE)
        for b in range(B):
            want = decoder(enc[b:b + 1], chars[b:b + 1, :p])[:, -1]  # (1, V): the char at p
            branches = chars[b:b + 1, :p + 1].repeat(VOCAB_SIZE, 1)
            branches[:, p] = torch.arange(VOCAB_SIZE)
            want_next = decoder(enc[b:b + 1].expand(VOCAB_SIZE, -1), branches)[:, -1]  # (V, V): at p + 1
            assert (got[b, :1] - want).abs().max() < 1e-5, (p, b)
            assert (got[b, 1:] - want_next).abs().max() < 1e-5, (p, b)


def test_the_pick_draws_what_two_one_char_picks_draw():
    """Row 0 of the first piece writes `[r:` (forced), so its branch of ':' is forced to '0' at 3 and its
    row 0 to '/' at 4; the second is forced `[r` and draws on, with a forced char at 5 (a branch
    position); the third writes `[r:` in its tune body (no rule); the fourth begins a header line `M`
    under a chosen meter, so the rule writes `:3/4` after it. Per-row sampling settings."""
    torch.manual_seed(1)
    B, P, V = 4, 16, VOCAB_SIZE
    forced = torch.full((B, P), -1)
    forced[0, :3] = forced[2, :3] = torch.tensor([ord(c) for c in "[r:"])
    forced[1, :2] = torch.tensor([ord(c) for c in "[r"])
    forced[1, 5] = ord("x")
    forced[3, 0] = ord("M")
    in_body = torch.tensor([False, False, True, False])
    seeds, counters = torch.tensor([5, 6, 7, 8]), torch.tensor([0, 3, 7, 2])
    settings = (torch.tensor([[9], [0], [3], [0]]), torch.tensor([[0.9], [1.0], [0.5], [1.0]]),
                torch.tensor([[1.2], [1.0], [0.7], [1.0]]))
    encoded = [encode_rules(HeaderControls(meter="3/4" if b == 3 else "").rules(), P) for b in range(B)]
    text, drawn, before = (torch.stack([e[k] for e in encoded]) for k in range(3))
    rules = (torch.ones(B, dtype=torch.bool), text, drawn, before, torch.zeros(drawn.shape, dtype=torch.bool))
    noise = exponential_noise(seeds[:, None].expand(B, P).reshape(-1), (counters[:, None] * P + torch.arange(P))
                              .reshape(-1), V).view(B, P, V)
    chars = torch.zeros(B, P, dtype=torch.long)
    for p in range(0, P, 2):
        logits = torch.randn(B * ROWS, V) * 3
        first, second = pick_pair_rows(logits, chars, p, torch.tensor(p), noise, forced, in_body, *settings, rules)
        picking = (forced, in_body, seeds, counters, *settings, rules)
        want_first = pick_char(logits.view(B, ROWS, V)[:, 0], chars, torch.tensor(p), *picking)
        chars[:, p] = want_first
        branch = logits.view(B, ROWS, V)[torch.arange(B), want_first + 1]
        want_second = pick_char(branch, chars, torch.tensor(p + 1), *picking)
        chars[:, p + 1] = want_second
        assert first.tolist() == want_first.tolist() and second.tolist() == want_second.tolist(), p
    assert chars[0, :5].tolist() == [ord(c) for c in "[r:0/"]
    assert chars[1, 5] == ord("x") and chars[2, 3:5].tolist() != [ord("0"), ord("/")]
    assert chars[3, :5].tolist() == [ord(c) for c in "M:3/4"]


@pytest.fixture(scope="module")
def tiny_pieces():
    """Four tiny-model pieces written one char a step through the modules, and their requests."""
    torch.manual_seed(0)
    model = NotaGen(preset("tiny")).eval()
    prompts = [Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), Prompt("Classical", "Mozart, Wolfgang Amadeus",
                                                                             "Chamber")]
    requests = [GenerationRequest(prompts[i % 2], seed=i) for i in range(4)]
    plain = Engine(model, CPU, compile=False, fused=False, pair=False).generate(requests, limits=LIMITS)
    return model, requests, plain


LIMITS = GenerationLimits(max_patches=6, bar_retries=0)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_the_engine_writes_the_pieces_of_one_char_a_step(no_triton, tiny_pieces, batch):
    model, requests, plain = tiny_pieces
    engine = Engine(model, CPU, pair=True)
    plan = engine.plan(batch)
    assert plan.char_step == TORCH_PAIR and plan.pair_torch and not plan.fused, plan
    pieces = engine.generate(requests[:batch], limits=LIMITS)
    assert [p.decode_path for p in pieces] == [plan.describe()] * batch and not engine.fallback
    assert all(p.patches == 6 for p in pieces)
    assert [p.raw for p in pieces] == [p.raw for p in plain[:batch]]


def test_the_demo_model_writes_the_same_chorales(no_triton):
    """A real model, its tune body begun at once (the `[r:0/` rule), bars redrawn as the studio does."""
    model = load_model(DEMO_MODEL, device="cpu").model
    requests = [GenerationRequest(prefix=CHORALE_HEADER, seed=seed) for seed in (1, 2)]
    limits = GenerationLimits(max_patches=8)
    plain = Engine(model, CPU).generate(requests, limits=limits)
    engine = Engine(model, CPU, pair=True)
    pieces = engine.generate(requests, limits=limits)
    assert all(p.decode_path == engine.plan(2).describe() for p in pieces) and engine.plan(2).pair_torch
    assert all(p.raw[len(CHORALE_HEADER):].startswith("[r:0/") for p in pieces)
    assert [p.raw for p in pieces] == [p.raw for p in plain]


def test_the_demo_model_writes_the_chosen_header_the_same_way(no_triton):
    """A chosen meter, key and length written by the pair pass's picks as one char a step writes them."""
    model = load_model(DEMO_MODEL, device="cpu").model
    header = HeaderControls(meter="3/4", key="G", bars=8)
    requests = [GenerationRequest(Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), seed=seed, header=header)
                for seed in (3, 4)]
    limits = GenerationLimits(max_patches=24, bar_retries=0)
    plain = Engine(model, CPU).generate(requests, limits=limits)
    pieces = Engine(model, CPU, pair=True).generate(requests, limits=limits)
    assert [p.raw for p in pieces] == [p.raw for p in plain]
    for piece in pieces:
        assert "\nM:3/4\n" in piece.raw and "\nK:G\n" in piece.raw and "[r:0/7]" in piece.raw, piece.raw
