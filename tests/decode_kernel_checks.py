"""Checks of pipelines.decode_kernels that test_decode_kernels runs in a subprocess with
TRITON_INTERPRET=1 (Triton reads it when the kernels are defined), so Triton's interpreter
runs the real kernels on CPU tensors. Each check prints one line and fails by raising."""
import sys

import torch

from pipelines.model import NotaGen, preset


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
    from pipelines.decode_kernels import FusedStack

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
    """The engine with the fused kernels writes the same pieces as through the modules."""
    from pipelines.generation import Engine, GenerationLimits, GenerationRequest
    from pipelines.prompts import Prompt
    from pipelines.runtime import pick_runtime

    model = _model(1, "micro")
    prompts = [Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), Prompt("Classical", "Mozart, Wolfgang Amadeus",
                                                                            "Chamber")]
    requests = [GenerationRequest(p, seed=i) for i, p in enumerate(prompts)]
    limits = GenerationLimits(max_patches=2)
    runtime = pick_runtime("cpu", "fp32")
    plain = Engine(model, runtime, compile=False, fused=False).generate(requests, limits=limits)
    fused = Engine(model, runtime, compile=False, fused=True).generate(requests, limits=limits)
    assert all(a.patches == 2 for a in fused), [a.patches for a in fused]
    assert [a.raw for a in plain] == [b.raw for b in fused]
    print("engine pieces equal")


@torch.no_grad()
def ended_patch_is_skipped():
    """With every char step run (as the CUDA graph runs them), the fused char stack stops
    computing once every row has its eos: the chars, the next patch states and the cache slots
    up to there equal the modules', and the char cache slots after it are never written."""
    from pipelines.generation import PatchDecoder
    from pipelines.tokenizer import EOS_ID

    model = _model(2, "micro")
    caches = [b.attn.cache for b in model.char_level_decoder.base.transformer.h]
    runs = {}
    for fused in (False, True):
        dec = PatchDecoder(model, 2, torch.device("cpu"), torch.float32, use_graph=False, fused=fused)
        dec.enc.copy_(torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(1)))
        dec.seeds.copy_(torch.tensor([3, 4]))
        dec.top_k.fill_(9), dec.top_p.fill_(0.9), dec.temperature.fill_(1.2)
        dec.forced[0, 3] = EOS_ID  # row 0 ends at char 3, row 1 at char 5
        dec.forced[1, 5] = EOS_ID
        for cache in caches:  # the modules' attention reads every slot (masked): NaN only for the kernels
            cache.k.fill_(float("nan") if fused else 0.0), cache.v.fill_(float("nan") if fused else 0.0)
        dec._body(early_exit=False)
        runs[fused] = (dec.out_chars.clone(), dec.enc.clone(), [(c.k.clone(), c.v.clone()) for c in caches],
                       int(dec.skip.item()))
    (chars, enc, plain_caches, _), (f_chars, f_enc, f_caches, skip) = runs[False], runs[True]
    assert torch.equal(chars, f_chars) and chars[0, 3] == EOS_ID and chars[1, 5] == EOS_ID, (chars, f_chars)
    assert (enc - f_enc).abs().max() < 1e-5
    assert skip == 1
    for (k, v), (fk, fv) in zip(plain_caches, f_caches):
        assert (k[:, :, :6] - fk[:, :, :6]).abs().max() < 1e-5 and (v[:, :, :6] - fv[:, :, :6]).abs().max() < 1e-5
        assert fk[:, :, 6:].isnan().all() and fv[:, :, 6:].isnan().all(), "slots after the eos were written"
    print("ended patch skipped")


if __name__ == "__main__":
    globals()[sys.argv[1]]()
