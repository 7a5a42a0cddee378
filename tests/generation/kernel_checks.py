"""Checks of the Triton decode kernels (pipelines.generation.kernels) that test_kernels runs in a
subprocess with TRITON_INTERPRET=1 (Triton reads it when the kernels are defined), so Triton's
interpreter runs the real kernels on CPU tensors. Each check prints one line and fails by raising.
The engine checks ask the engine for a decode path (`Engine.plan`) and check that its pieces say
they ran it (`GeneratedPiece.decode_path`, read off the decoder that ran)."""
import sys

import torch

from pipelines.model.config import preset
from pipelines.model.network import NotaGen


def _model(batch: int, name: str = "tiny") -> NotaGen:
    torch.manual_seed(0)
    model = NotaGen(preset(name)).eval()
    model.setup_caches(batch)
    return model


@torch.no_grad()
def stacks_equal_the_modules():
    """One decode position through each stack, rows at different positions, equals the modules'
    cached forward: outputs, logits and every cache slot written. The patch stack's 64 cache
    slots are split over four programs per head and merged."""
    from pipelines.generation.kernels.decode import FusedStack

    B = 3
    model = _model(B)
    patch = model.patch_level_decoder
    patch(torch.randint(0, 128, (B, 45, 16)), torch.arange(45).expand(B, -1))  # prefill 45 patches per row
    positions = torch.tensor([45, 3, 33])
    new = torch.randint(0, 128, (B, 1, 16))
    blocks = list(patch.base.h)
    before = [(b.attn.cache.k.clone(), b.attn.cache.v.clone()) for b in blocks]
    want = patch(new, positions[:, None])[:, -1]
    want_caches = [(b.attn.cache.k.clone(), b.attn.cache.v.clone()) for b in blocks]
    for b, (k, v) in zip(blocks, before):
        b.attn.cache.k.copy_(k), b.attn.cache.v.copy_(v)
    got = FusedStack(patch.base, B, slots_per_program=16)(patch.embed(new)[:, 0] + patch.base.wpe(positions), positions)
    cache_diff = max(max((b.attn.cache.k - k).abs().max().item(), (b.attn.cache.v - v).abs().max().item())
                     for b, (k, v) in zip(blocks, want_caches))
    assert (got - want).abs().max() < 1e-5 and cache_diff < 1e-5, ((got - want).abs().max(), cache_diff)

    head = model.char_level_decoder.base
    enc, chars = torch.randn(B, 128), torch.randint(3, 128, (B, 5))
    want = model.char_level_decoder(enc, chars[:, :4])  # (B, 5, 128), no cache
    stack = FusedStack(head.transformer, B, head=head.lm_head.weight)
    got = []
    for i in range(5):
        x = (enc if i == 0 else head.transformer.wte(chars[:, i - 1])) + head.transformer.wpe(torch.tensor(i))
        got.append(stack(x, torch.tensor(i).expand(B)).clone())
    diff = (torch.stack(got, 1) - want).abs().max()
    assert diff < 1e-5, diff
    print("stacks equal the modules")


def engine_pieces_equal():
    """The engine with the fused kernels, one char a step, writes the same pieces as through the modules."""
    from pipelines.abc.prompts import Prompt
    from pipelines.generation.engine import Engine, GenerationRequest
    from pipelines.generation.options import GenerationLimits
    from pipelines.model.runtime import pick_runtime

    model = _model(1, "micro")
    prompts = [Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), Prompt("Classical", "Mozart, Wolfgang Amadeus",
                                                                            "Chamber")]
    requests = [GenerationRequest(p, seed=i) for i, p in enumerate(prompts)]
    limits = GenerationLimits(max_patches=2, bar_retries=0)
    runtime = pick_runtime("cpu", "fp32")
    plain = Engine(model, runtime, compile=False, fused=False, pair=False).generate(requests, limits=limits)
    engine = Engine(model, runtime, compile=False, fused=True, pair=False)
    plan = engine.plan(2)
    assert plan.fused and plan.char_step == "fused kernels", plan  # one char a step through the kernels
    fused = engine.generate(requests, limits=limits)
    assert all(a.decode_path == plan.describe() for a in fused), [a.decode_path for a in fused]
    assert all(a.patches == 2 for a in fused), [a.patches for a in fused]
    assert [a.raw for a in plain] == [b.raw for b in fused]
    print("engine pieces equal")


def _ended_patch(ends: list[int], pair: bool = False, name: str = "micro"):
    """Each row's patch decoded with every char step run (as the CUDA graph runs them) and
    its eos forced at `ends`, through the modules and through the kernels (`pair`: two chars a
    pass): the chars, the next patch states and the cache slots up to the last eos are the
    modules', and the kernels write no char cache slot after `written` of them."""
    from pipelines.abc.tokenizer import EOS_ID
    from pipelines.generation.decoder import PatchDecoder
    from pipelines.generation.plan import DecodeOptions, plan_decode
    from pipelines.model.runtime import pick_runtime

    B = len(ends)
    model = _model(B, name)
    caches = [b.attn.cache for b in model.char_level_decoder.base.transformer.h]
    runs = {}
    for fused in (False, True):
        options = DecodeOptions(compile=False, fused=fused, pair=pair and fused)
        plan = plan_decode(model.config, pick_runtime("cpu", "fp32"), B, options)
        assert (plan.fused, plan.pair, plan.graph) == (fused, fused and pair, False), plan
        dec = PatchDecoder(model, plan, torch.device("cpu"), torch.float32)
        assert dec.describe() == plan.describe() and (dec.pair_stack is not None) == (fused and pair)
        dec.enc.copy_(torch.randn(B, model.config.hidden_size, generator=torch.Generator().manual_seed(1)))
        dec.seeds.copy_(torch.arange(3, 3 + B))
        dec.top_k.fill_(9), dec.top_p.fill_(0.9), dec.temperature.fill_(1.2)
        for row, end in enumerate(ends):
            dec.forced[row, end] = EOS_ID
        for cache in caches:  # the modules' attention reads every slot (masked): NaN only for the kernels
            cache.k.fill_(float("nan") if fused else 0.0), cache.v.fill_(float("nan") if fused else 0.0)
        dec.decode_patch(early_exit=False)
        runs[fused] = (dec.out_chars.clone(), dec.enc.clone(), [(c.k.clone(), c.v.clone()) for c in caches],
                       int(dec.skip.item()))
    (chars, enc, plain_caches, _), (f_chars, f_enc, f_caches, skip) = runs[False], runs[True]
    assert torch.equal(chars, f_chars) and all(chars[r, e] == EOS_ID for r, e in enumerate(ends)), (chars, f_chars)
    assert (enc - f_enc).abs().max() < 1e-5
    assert skip == 1
    return plain_caches, f_caches


@torch.no_grad()
def ended_patch_is_skipped():
    """Rows ending at chars 3 and 5: no char cache slot after the last eos is written."""
    for (k, v), (fk, fv) in zip(*_ended_patch([3, 5])):
        assert (k[:, :, :6] - fk[:, :, :6]).abs().max() < 1e-5 and (v[:, :, :6] - fv[:, :, :6]).abs().max() < 1e-5
        assert fk[:, :, 6:].isnan().all() and fv[:, :, 6:].isnan().all(), "slots after the eos were written"
    print("ended patch skipped")


@torch.no_grad()
def ended_pair_patch_is_skipped():
    """Two chars a pass, rows ending at chars 7 (the second of the pass at 6) and 4: the pass
    at 8 and after compute nothing. Slot 7 is the chosen branch's, which no later pass copies in."""
    for (k, v), (fk, fv) in zip(*_ended_patch([7, 4], pair=True, name="tiny")):
        assert (k[:, :, :7] - fk[:, :, :7]).abs().max() < 1e-5 and (v[:, :, :7] - fv[:, :, :7]).abs().max() < 1e-5
        assert fk[:, :, 7:].isnan().all() and fv[:, :, 7:].isnan().all(), "slots after the eos were written"
    print("ended pair patch skipped")


def engine_pair_pieces_equal():
    """The engine drawing two chars a pass writes the same pieces as through the modules, one,
    two and three pieces at once (three: the patch level through the modules)."""
    from pipelines.abc.prompts import Prompt
    from pipelines.generation.engine import Engine, GenerationRequest
    from pipelines.generation.options import GenerationLimits
    from pipelines.model.runtime import pick_runtime

    model = _model(1)
    requests = [GenerationRequest(Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), seed=5),
                GenerationRequest(Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber"), seed=6),
                GenerationRequest(Prompt("Romantic", "Chopin, Frederic", "Keyboard"), seed=7)]
    limits = GenerationLimits(max_patches=2, bar_retries=0)
    runtime = pick_runtime("cpu", "fp32")
    plain = Engine(model, runtime, compile=False, fused=False, pair=False).generate(requests, limits=limits)
    engine = Engine(model, runtime, compile=False, fused=True, pair=True)
    for batch in (requests[:1], requests[:2], requests):
        plan = engine.plan(len(batch))
        assert plan.pair and plan.fused == (len(batch) <= 2), plan
        pair = engine.generate(batch, limits=limits)
        assert all(p.decode_path == plan.describe() for p in pair), [p.decode_path for p in pair]
        assert all(p.patches == 2 for p in pair), [p.patches for p in pair]
        assert [p.raw for p in plain[:len(batch)]] == [p.raw for p in pair], (plain, pair)
    print("engine pair pieces equal")


@torch.no_grad()
def pair_stack_equals_the_modules():
    """Passes at positions 0, 2, 4 and 6 of two pieces: each piece's row 0 logits equal the
    modules' at the position, and every branch row's equal the modules' at the next position
    with that branch's char drawn; the caches' slots equal the modules' up to the last known
    position."""
    from pipelines.generation.kernels.pair import ROWS, PairStack

    B = 2
    model = _model(B)
    head, decoder = model.char_level_decoder.base, model.char_level_decoder
    enc = torch.randn(B, model.config.hidden_size)
    chars = torch.randint(3, 128, (B, model.config.patch_size))
    stack = PairStack(head, B)
    caches = [b.attn.cache for b in head.transformer.h]
    for cache in caches:  # slots are written before they are read: stale values must not leak in
        cache.k.fill_(float("nan")), cache.v.fill_(float("nan"))
    for p in (0, 2, 4, 6):
        x0 = (enc if p == 0 else head.transformer.wte(chars[:, p - 1])) + head.transformer.wpe(torch.tensor(p))
        got = stack(x0, p, chars).clone().view(B, ROWS, -1)
        for b in range(B):
            want = decoder(enc[b:b + 1], chars[b:b + 1, :p])[:, -1]  # (1, V): the char at p
            branches = chars[b:b + 1, :p + 1].repeat(ROWS - 1, 1)
            branches[:, p] = torch.arange(ROWS - 1)
            want_next = decoder(enc[b:b + 1].expand(ROWS - 1, -1), branches)[:, -1]  # (V, V): at p + 1, per branch
            diff = max((got[b, :1] - want).abs().max().item(), (got[b, 1:] - want_next).abs().max().item())
            assert diff < 1e-5, (p, b, diff)
    for block in head.transformer.h:  # slots 0..6 (6: row 0 of the last pass) against the modules'
        block.attn.cache = None
    full = torch.cat([enc[:, None], head.transformer.wte(chars[:, :6])], 1) + head.transformer.wpe(torch.arange(7))
    for block, cache in zip(head.transformer.h, caches):
        T, C = full.shape[1:]
        _, k, v = block.attn.c_attn(block.ln_1(full)).split(C, dim=-1)
        k = k.view(B, T, block.attn.heads, -1).transpose(1, 2)
        v = v.view(B, T, block.attn.heads, -1).transpose(1, 2)
        assert (cache.k[:, :, :7] - k).abs().max() < 1e-5 and (cache.v[:, :, :7] - v).abs().max() < 1e-5
        full = block(full, torch.arange(7).expand(B, -1))
        block.attn.cache = cache
    print("pair stack equals the modules")


def other_head_sizes_run_the_modules():
    """A model whose head size the kernels cannot tile (24) decodes through the modules, even
    with the kernels asked for, and writes the pieces it writes without them."""
    from pipelines.abc.prompts import Prompt
    from pipelines.generation.engine import Engine, GenerationRequest
    from pipelines.generation.options import GenerationLimits
    from pipelines.model.config import NotaGenConfig
    from pipelines.model.runtime import pick_runtime

    torch.manual_seed(0)
    model = NotaGen(NotaGenConfig(16, 32, 1, 1, 48, num_heads=2)).eval()
    requests = [GenerationRequest(Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), seed=2)]
    limits = GenerationLimits(max_patches=2, bar_retries=0)
    runtime = pick_runtime("cpu", "fp32")
    plain = Engine(model, runtime, compile=False, fused=False, pair=False).generate(requests, limits=limits)
    engine = Engine(model, runtime, compile=False, fused=True, pair=True)
    plan = engine.plan(1)
    assert not plan.fused and not plan.pair and "head size 24" in str(plan), plan
    asked = engine.generate(requests, limits=limits)
    assert asked[0].decode_path == plan.describe() and plan.char_step == "modules", asked[0].decode_path
    assert plain[0].raw == asked[0].raw and asked[0].patches == 2
    print("other head sizes run the modules")


if __name__ == "__main__":
    globals()[sys.argv[1]]()
