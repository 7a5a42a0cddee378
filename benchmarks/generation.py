"""Generation speed: the engine against a loop that does what upstream's demo does, same weights, same run.

The reference (upstream's gradio/inference.py): per patch, the whole context is
re-encoded by the patch-level decoder; per char, the char-level decoder re-runs
over the patch so far, and the probabilities go to the host for numpy top-k /
top-p / temperature sampling. As upstream, it runs transformers' GPT2Model and
GPT2LMHeadModel (holding the same weights) with eager attention: upstream pins transformers
4.40, whose GPT-2 has no other (SDPA came in 4.42). The ratio basis runs it as upstream's demo
does: fp32 weights, no autocast, autograd recording (the demo calls the model outside no_grad).
A second ratio is to the same loop under inference_mode and autocast to the run's dtype. The
loop with today's default (SDPA) attention, and on the studio's leaner modules, is timed as
well. The engine: KV caches, sampling on the device, compiled CUDA-graph steps, at batches of
up to 2 the fused decode kernels, and up to 4 two chars a pass (pipelines/generation/kernels/pair.py; rows
on the same weights drawing one char a step compare). Each engine row names the decode path it ran
(`Engine.plan`; the run stops where its pieces say another ran). Prints chars/s of the references, the
engine at batch 1 and at larger batches, the ratios to both references, and peak GPU memory.

    python benchmarks/generation.py                      # random NotaGen-X-shaped weights, fp16
    python benchmarks/generation.py --model CKPT --dtype bf16 --batches 1 8 32
    python benchmarks/generation.py --without-triton --no-reference --batches 1 2 4 8   # as on Windows

Without Triton (--without-triton) there are no compiled steps and no decode kernels: the CUDA graph
runs the modules, and up to TORCH_PAIR_MAX_BATCH the char decoder draws two chars a pass in PyTorch
ops (pipelines/generation/torch_pair.py), beside rows that draw one char a step. Each engine row
prints its check at load (its logits and patch state against the modules', and the bounds).

The reference under upstream's own pin of transformers (the engine needs none of it), from a side folder:

    pip install --no-deps --target /tmp/tf440 transformers==4.40.0 tokenizers==0.19.1 huggingface_hub==0.23.5
    PYTHONPATH=/tmp/tf440 python benchmarks/generation.py

The host drifts (a reference run moved 25% between runs), so each reference runs
--reference-repeats times in turn and its figure is the median; the ratios are to medians.

Random weights seldom write an eos, so nearly every patch above is 16 chars. Real bars are
shorter: music21-corpus pieces through the dataset pipeline make patches of about 12 chars on
average (over half end early). Upstream's loop still runs all 16 char steps of such a patch;
the engine's fused kernels skip what is left once every row has its eos. So the last rows run
the as-shipped reference and the engine at batch 1 with the eos forced where the patches of
real scores end (--real-scores; by default one corpus piece of each kind), every other char
sampled, in the same run.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers

from pipelines.abc.prompts import Prompt
from pipelines.abc.tokenizer import BOS_ID, EOS_ID, Patchilizer
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.plan import FUSED_MAX_BATCH, PAIR_MAX_BATCH, TORCH_PAIR_MAX_BATCH
from pipelines.model.config import VOCAB_SIZE, preset
from pipelines.model.lora import load_model
from pipelines.model.network import NotaGen
from pipelines.model.runtime import configure_cuda, pick_runtime, triton_available

PROMPT = Prompt("Romantic", "Chopin, Frederic", "Keyboard")


def host_sample(probs: np.ndarray, s: SamplingConfig, rng: np.random.Generator) -> int:
    """Upstream's per-char host sampling: top-k, top-p, temperature in numpy. Leaner than the
    `samplings` package upstream calls (36 against 95 us a char on one CPU core), so the
    reference is, if anything, a little faster than upstream's."""
    probs = probs / probs.sum()
    if s.top_k > 0:
        cut = np.argsort(probs)[::-1][s.top_k:]
        probs[cut] = 0
        probs /= probs.sum()
    order = np.argsort(probs)[::-1]
    cum = np.cumsum(probs[order])
    remove = np.concatenate([[False], cum[:-1] > s.top_p])
    probs[order[remove]] = 0
    probs /= probs.sum()
    probs = probs ** (1 / s.temperature)
    probs /= probs.sum()
    return int(rng.choice(len(probs), p=probs))


class StudioModules:
    """The reference loop's two model calls on the studio's own modules (no caches)."""

    def __init__(self, model: NotaGen):
        self.model = model

    def patch_state(self, context: torch.Tensor) -> torch.Tensor:  # (N, P) -> (1, C), the last patch's
        return self.model.patch_level_decoder(context[None])[:, -1]

    def char_logits(self, state: torch.Tensor, chars: list[int]) -> torch.Tensor:  # -> (128,), the next char's
        return self.model.char_level_decoder(state, torch.tensor([chars], dtype=torch.long, device=state.device))[0, -1]


class TransformersModules:
    """The same calls as upstream's NotaGen makes them: transformers' GPT2Model over the one-hot
    patch embeddings, GPT2LMHeadModel over inputs_embeds (the patch state in place of bos), with
    `model`'s weights (upstream's parameter names are the studio's). `attention`: "eager" as in
    upstream's pinned transformers 4.40, or "sdpa" (the default since 4.42)."""

    def __init__(self, model: NotaGen, attention: str = "eager"):
        from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

        c = model.config

        def config(layers, positions, vocab):
            return GPT2Config(n_embd=c.hidden_size, n_layer=layers, n_head=c.num_heads, n_positions=positions,
                              vocab_size=vocab, layer_norm_epsilon=c.layer_norm_eps, bos_token_id=None,
                              eos_token_id=None, attn_implementation=attention)  # ids are the loop's business

        dev = next(model.parameters()).device
        self.model = model
        self.patch = GPT2Model(config(c.patch_layers, c.patch_length, 1)).to(dev).eval()
        self.char = GPT2LMHeadModel(config(c.char_layers, c.patch_size + 1, VOCAB_SIZE)).to(dev).eval()
        for hf, ours in ((self.patch, model.patch_level_decoder.base), (self.char, model.char_level_decoder.base)):
            missing, unexpected = hf.load_state_dict(ours.state_dict(), strict=False)
            left = [k for k in missing + unexpected if not k.endswith((".attn.bias", ".attn.masked_bias"))]
            if left:
                raise SystemExit(f"transformers' GPT-2 does not take these weights: {left[:4]}")

    def patch_state(self, context: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(context, num_classes=VOCAB_SIZE).to(torch.float32).reshape(1, len(context), -1)
        embeds = self.model.patch_level_decoder.patch_embedding(one_hot)
        return self.patch(inputs_embeds=embeds).last_hidden_state[:, -1]

    def char_logits(self, state: torch.Tensor, chars: list[int]) -> torch.Tensor:
        tokens = self.char.transformer.wte(torch.tensor([[BOS_ID] + chars], device=state.device))
        embeds = torch.cat([state[:, None, :].to(tokens.dtype), tokens[:, 1:]], dim=1)
        return self.char(inputs_embeds=embeds).logits[0, -1]


def prompt_context(model: NotaGen) -> torch.Tensor:
    """PROMPT's patches (N, P) on the model's device: where the reference loop starts."""
    text = "".join(line + "\n" for line in PROMPT.header_lines(with_end=False))
    ids = Patchilizer().encode_generate(text, model.config.patch_length)
    return torch.tensor(ids, device=next(model.parameters()).device)


def reference_loop(modules, patches: int, sampling: SamplingConfig, dtype, seed: int = 0,
                   as_shipped: bool = False, lengths: list[int] | None = None) -> tuple[int, float]:
    """Upstream's loop on `modules`. as_shipped: as upstream's gradio/inference.py runs it, on the
    fp32 weights with no autocast and autograd recording (it calls the model outside no_grad);
    otherwise under inference_mode and autocast to `dtype`, the leaner way to run the same loop.
    lengths: patch i ends (an eos in place of the sampled char) after lengths[i] chars when
    that is under the patch size; upstream's loop runs every char step of a patch regardless."""
    with torch.enable_grad() if as_shipped else torch.inference_mode():
        return _reference_patches(modules, patches, sampling, None if as_shipped else dtype, seed, lengths)


def _reference_patches(modules, patches: int, sampling: SamplingConfig, autocast, seed: int,
                       lengths: list[int] | None) -> tuple[int, float]:
    model = modules.model
    dev = next(model.parameters()).device
    P = model.config.patch_size
    context = prompt_context(model)
    rng = np.random.default_rng(seed)
    chars_out = 0
    synchronize(dev)
    start = time.perf_counter()
    for i in range(patches):
        end = lengths[i % len(lengths)] if lengths else P
        with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None and dev.type == "cuda"):
            state = modules.patch_state(context)  # whole context, every patch
            chars: list[int] = []
            for pos in range(P):  # whole patch so far, every char
                logits = modules.char_logits(state, chars)
                probs = torch.softmax(logits.float(), -1).detach().cpu().numpy().astype(np.float64)
                drawn = host_sample(probs, sampling, rng)
                chars.append(EOS_ID if pos == end else drawn)
        patch = chars[:]
        if EOS_ID in patch:
            cut = patch.index(EOS_ID)
            patch = patch[:cut + 1] + [0] * (P - cut - 1)
        chars_out += len(Patchilizer.decode_patch(patch))
        context = torch.cat([context, torch.tensor([patch], device=dev)])
    synchronize(dev)
    return chars_out, time.perf_counter() - start


@torch.inference_mode()
def same_logits(a, b) -> float:
    """Max |difference| of the first char's logits from the prompt through two module sets (fp32)."""
    context = prompt_context(a.model)
    return (a.char_logits(a.patch_state(context), [1]) - b.char_logits(b.patch_state(context), [1])).abs().max().item()


def corpus_scores() -> list[Path]:
    """The first MusicXML score of each kind (period, instrumentation) in music21's labelled corpus."""
    from pipelines.dataset.convert import MUSICXML_SUFFIXES
    from pipelines.dataset.corpus import corpus_sources

    first = {}
    for path, _, labels in corpus_sources():
        if path.suffix in MUSICXML_SUFFIXES:
            first.setdefault((labels.period, labels.instrumentation), path)
    return list(first.values())


def real_patch_lengths(scores: list[Path], count: int) -> list[int]:
    """Chars per patch (under 16: the patch then ends with an eos) of MusicXML `scores` as the
    dataset pipeline and the tokenizer make them for training; `count` of them in a fixed
    shuffled order, so any prefix has about their mean."""
    from pipelines.dataset.convert import StageError, read_musicxml, xml_to_abc
    from pipelines.dataset.preprocess import preprocess_abc

    patchilizer, lengths = Patchilizer(), []
    for path in scores:
        try:
            text = preprocess_abc(xml_to_abc(read_musicxml(path).data, path.stem)).interleaved
        except StageError as e:
            print(f"{path.name}: left out ({e})")
            continue
        ids = patchilizer.encode_train(text, 10 ** 6, add_special_patches=False, cut=False, as_array=True)
        lengths += np.count_nonzero(ids, axis=1).tolist()
    random.Random(0).shuffle(lengths)
    return (lengths * (count // max(1, len(lengths)) + 1))[:count]


@torch.inference_mode()
def engine_lengths_run(engine: Engine, lengths: list[int], sampling: SamplingConfig) -> tuple[int, float]:
    """The engine at batch 1 from the prompt through len(lengths) patches, patch i ending (an eos
    in place of its draw) after lengths[i] chars: the patch loop of `Engine.generate` without its
    host-side bookkeeping, which writes no eos of its own choosing."""
    planned = engine.plan(1).describe()
    dec = engine.decoder(1)
    ran_as_planned(planned, 1, {dec.describe()})
    context = prompt_context(engine.model).tolist()
    P = engine.config.patch_size
    lengths = lengths[:engine.config.patch_length - len(context) - 1]
    dec.reset(engine.prefill([0], [context]), seeds=[0], in_body=[True], sampling=sampling)
    dec.start_row(0, len(context), [])
    chars = 0
    synchronize(engine.runtime.device)
    start = time.perf_counter()
    for length in lengths:
        if length < P:
            dec.forced[0, length] = EOS_ID
        chars += len(Patchilizer.decode_patch(dec.run()[0]))
    synchronize(engine.runtime.device)
    return chars, time.perf_counter() - start


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# --in-body: each piece starts inside its tune body (a header and one bar given), as most of a real piece is
# written; random weights left to themselves never begin one, so the header's line rules would act throughout.
IN_BODY = "".join(line + "\n" for line in PROMPT.header_lines()) + (
    "L:1/8\nM:4/4\nK:C\nV:1 treble\nV:2 bass\n[r:0/99][V:1]c8|[V:2]C,8|\n")
START = {"prefix": ""}  # set by --in-body


def engine_run(engine: Engine, batch: int, patches: int, sampling: SamplingConfig) -> tuple[int, float, list]:
    requests = [GenerationRequest(PROMPT, seed=i, prefix=START["prefix"]) for i in range(batch)]
    engine.generate(requests, sampling, GenerationLimits(max_patches=4, bar_retries=0))  # compile + capture
    synchronize(engine.runtime.device)
    if engine.runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pieces = engine.generate(requests, sampling, GenerationLimits(max_patches=patches, bar_retries=0))
    synchronize(engine.runtime.device)
    return sum(p.chars for p in pieces), time.perf_counter() - start, pieces


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint; default: random weights of --preset")
    ap.add_argument("--preset", default="notagen-x")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--patches", type=int, default=256, help="patches per piece for the engine")
    ap.add_argument("--reference-patches", type=int, default=48, help="patches per reference run")
    ap.add_argument("--reference-repeats", type=int, default=3,
                    help="runs of each reference, in turn; its figure is their median, the faster middle one for "
                         "an even count (the host drifts)")
    ap.add_argument("--real-scores", type=Path, nargs="+",
                    help="MusicXML scores whose patch lengths the last rows force; default: the first of each "
                         "kind (period, instrumentation) in music21's corpus")
    ap.add_argument("--no-real-bars", action="store_true", help="leave out the rows with real patch lengths")
    ap.add_argument("--no-compile", action="store_true", help="uncompiled steps (the kernels still run where planned)")
    ap.add_argument("--no-fused", action="store_true",
                    help="no decode kernels, one char a step or two: every batch through the modules")
    ap.add_argument("--no-pair", action="store_true",
                    help="every batch draws one char a step (default: two a pass up to PAIR_MAX_BATCH, and "
                         "one-char rows to compare)")
    ap.add_argument("--unfused-too", action="store_true",
                    help="first run the batches of up to FUSED_MAX_BATCH through the modules (not the fused "
                         "kernels) as well")
    ap.add_argument("--in-body", action="store_true",
                    help="engine rows start each piece inside its tune body (random weights never begin one)")
    ap.add_argument("--without-triton", action="store_true",
                    help="run as if Triton were not installed (PyTorch's Windows wheels): the process cannot import "
                         "it, so two chars a pass run in PyTorch ops up to TORCH_PAIR_MAX_BATCH, beside one char a "
                         "step on the graph of the modules")
    ap.add_argument("--no-reference", action="store_true",
                    help="leave out upstream's loop (and the rows with real patch lengths): engine rows only, "
                         "no ratios")
    args = ap.parse_args()
    if args.in_body:
        START["prefix"] = IN_BODY
    if args.without_triton:
        sys.modules["triton"] = None  # importing it now fails, and find_spec says it is not installed

    runtime = pick_runtime(args.device, args.dtype)
    torch.manual_seed(0)
    if args.model:
        model = load_model(args.model).model
    else:
        model = NotaGen(preset(args.preset)).eval()
    sampling = SamplingConfig()
    cuda = runtime.device.type == "cuda"
    name = torch.cuda.get_device_name(runtime.device) if cuda else "cpu"
    print(f"device {name}, dtype {runtime.dtype_name}, model {args.model or args.preset} "
          f"({model.num_parameters():,} parameters), sampling {sampling}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")

    if args.no_reference:
        rows, real_rows, lengths, ref_lengths, scores = [], [], None, None, []
    else:
        rows, real_rows, lengths, ref_lengths, scores = time_references(args, model, runtime, sampling)
    if cuda:
        configure_cuda()
    ref_rates = (rows[0][3], rows[1][3]) if rows else None
    lean = f"inference_mode, autocast to {runtime.dtype_name}"

    runs = []
    compile_steps = False if args.no_compile else None  # None: the engine's default (compiled on CUDA with Triton)
    if args.unfused_too:
        runs.append((Engine(model, runtime, compile=compile_steps, fused=False, pair=False),
                     [b for b in args.batches if b <= FUSED_MAX_BATCH]))
    fused = False if args.no_fused else None
    one_char = [b for b in args.batches if b <= (PAIR_MAX_BATCH if triton_available() else TORCH_PAIR_MAX_BATCH)]
    if one_char and not args.no_fused and not args.no_pair and cuda:  # the same weights, one char a step
        runs.append((Engine(model, runtime, compile=compile_steps, fused=fused, pair=False), one_char))
    pair = False if args.no_pair or args.no_fused else None
    runs.append((Engine(model, runtime, compile=compile_steps, fused=fused, pair=pair), args.batches))
    for engine, batches in runs:
        rows += engine_rows(engine, batches, args.patches, sampling, ref_rates)
        if engine is not runs[-1][0]:
            engine.unload()
    if lengths:
        engine = runs[-1][0]
        engine_lengths_run(engine, [engine.config.patch_size] * 8, sampling)  # warm-up (batch 1 again)
        path = engine_path(engine, 1)
        for label, ends in ((f"engine, batch 1{path}, eos at the same real bar ends", lengths),
                            (f"engine, batch 1{path}, the same loop, every patch full", None)):
            chars, secs = engine_lengths_run(engine, ends or [engine.config.patch_size] * args.patches, sampling)
            real_rows.append((label, chars, secs, chars / secs, args.patches, "", ends is not None))
            print(f"{label}: {chars} chars in {secs:.2f} s = {chars / secs:.0f} chars/s, "
                  f"{1000 * secs / args.patches:.2f} ms per patch", flush=True)

    print(f"\n| run | chars | seconds | chars/s (median; range) | x reference as shipped | x reference, {lean} "
          f"| peak GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, chars, secs, rate, peak, spread in rows:
        print(f"| {label} | {chars} | {secs:.2f} | {rate:.0f}{f' ({spread})' if spread else ''} | "
              f"{ratio(rate, ref_rates, 0)} | {ratio(rate, ref_rates, 1)} | "
              f"{'' if peak is None else f'{peak:.2f}'} |")
    if real_rows:
        full = sum(n == model.config.patch_size for n in lengths) / len(lengths)
        print(f"\nPatches ending where the bars of {', '.join(p.name for p in scores)} end: {np.mean(lengths):.1f} "
              f"chars per patch on average, {100 * full:.0f}% full (the reference's {args.reference_patches} "
              f"patches: {np.mean(ref_lengths):.1f})")
        print("\n| run | chars | seconds | ms per patch | chars/s (median; range) | x the reference with the same "
              "bar ends |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, chars, secs, rate, patches, spread, comparable in real_rows:
            times = f"{rate / real_rows[0][3]:.1f}" if comparable else "(full patches)"
            print(f"| {label} | {chars} | {secs:.2f} | {1000 * secs / patches:.2f} | "
                  f"{rate:.0f}{f' ({spread})' if spread else ''} | {times} |")


def time_references(args, model: NotaGen, runtime, sampling: SamplingConfig) -> tuple:
    """The reference rows (median of --reference-repeats runs each) and, unless --no-real-bars, the
    real-bar-lengths reference row; returns (rows, real_rows, lengths, ref_lengths, scores)."""
    cuda = runtime.device.type == "cuda"
    ref_lengths = None
    # The reference runs transformers' GPT-2 modules (eager attention, as upstream's transformers
    # 4.40) on the fp32 weights, first as upstream's demo runs them (no autocast, autograd
    # recording: the ratio basis), then under inference_mode and autocast to the run's dtype (the
    # second ratio). SDPA is timed too, with PyTorch's defaults (cuDNN attention included) and with
    # cuDNN attention off as the studio sets it (runtime.configure_cuda); and the same loop on the
    # studio's own modules.
    ref_model = model.to(runtime.device)
    upstream, studio = TransformersModules(ref_model), StudioModules(ref_model)
    try:
        sdpa = TransformersModules(ref_model, attention="sdpa")
    except ValueError as e:  # transformers before 4.42, as upstream pins: GPT-2 has eager attention only
        sdpa = None
        print(f"no SDPA rows: {e}".splitlines()[0])
    print(f"first char's logits, transformers' GPT-2 (eager, SDPA) against the studio's modules: max |diff| "
          f"{same_logits(upstream, studio):.2e}, {same_logits(sdpa, studio) if sdpa else float('nan'):.2e}")
    rows = []
    lean = f"inference_mode, autocast to {runtime.dtype_name}"
    references = (
        (upstream, True, True, "as upstream ships it: transformers' GPT-2, eager attention, fp32, autograd recording"),
        (upstream, True, False, f"transformers' GPT-2, eager attention, {lean}"),
        (sdpa, True, False, f"transformers' GPT-2, SDPA attention (transformers 4.42+), {lean}, PyTorch defaults"),
        (sdpa, False, False, f"transformers' GPT-2, SDPA attention, {lean}, cuDNN attention off"),
        (studio, True, False, f"the studio's modules, {lean}"))
    references = [r + (None,) for r in references if r[0] is not None and (cuda or r[1])]
    scores = [] if args.no_real_bars else args.real_scores or corpus_scores()
    lengths = real_patch_lengths(scores, args.patches) if scores else None
    if lengths:  # the reference's fewer patches: an even spread of the same lengths (about the same mean)
        ordered, m = sorted(lengths), args.reference_patches
        ref_lengths = [ordered[int((i + 0.5) * len(ordered) / m)] for i in range(m)]
        random.Random(0).shuffle(ref_lengths)
        references.append((upstream, True, True, references[0][3] + ", eos at real bar ends", ref_lengths))
    samples: list[list[tuple[int, float]]] = [[] for _ in references]
    for modules, cudnn, as_shipped, how, ends in references:
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        # Warm-up: a first timed run right after 2 patches measured 25% slow (H100, 120 against 160 chars/s).
        reference_loop(modules, min(8, args.reference_patches), sampling, runtime.dtype, as_shipped=as_shipped,
                       lengths=ends)
    for repeat in range(args.reference_repeats):  # round robin: the host's drift spreads over every row
        for (modules, cudnn, as_shipped, how, ends), timed in zip(references, samples):
            torch.backends.cuda.enable_cudnn_sdp(cudnn)
            chars, secs = reference_loop(modules, args.reference_patches, sampling, runtime.dtype,
                                         as_shipped=as_shipped, seed=repeat, lengths=ends)
            timed.append((chars, secs))
            print(f"reference, {how}: {chars} chars in {secs:.2f} s = {chars / secs:.0f} chars/s "
                  f"({1000 * secs / args.reference_patches:.1f} ms per patch)", flush=True)
    for reference, timed in zip(references, samples):
        how = reference[3]
        timed.sort(key=lambda r: r[0] / r[1])
        chars, secs = timed[len(timed) // 2]
        spread = f"{timed[0][0] / timed[0][1]:.0f}-{timed[-1][0] / timed[-1][1]:.0f}" if len(timed) > 1 else ""
        rows.append((f"reference (upstream loop), batch 1, {how}", chars, secs, chars / secs, None, spread))
    real_rows = []  # (label, chars, seconds, chars/s, patches, spread, x the real-bars reference)
    if lengths:
        label, chars, secs, rate, _peak, spread = rows.pop()
        real_rows.append((label, chars, secs, rate, args.reference_patches, spread, True))
    del upstream, sdpa, studio, references, reference, modules  # the transformers copies of the weights
    return rows, real_rows, lengths, ref_lengths, scores


def ratio(rate: float, ref_rates: tuple[float, float] | None, which: int) -> str:
    """rate over reference `which` (0: as shipped, 1: the lean loop), or "-" without references."""
    return f"{rate / ref_rates[which]:.1f}" if ref_rates else "-"


def engine_path(engine: Engine, batch: int) -> str:
    """How the engine plans to decode `batch` rows, for a row's label."""
    return f" ({engine.plan(batch).describe()})"


def ran_as_planned(planned: str, batch: int, ran: set[str]):
    """Stop the benchmark where pieces of `batch` rows say they ran another path than the engine planned
    before it ran (a path that fails its check at load falls back to the modules and says so)."""
    if ran != {planned}:
        raise SystemExit(f"engine, batch {batch}: planned {planned!r}, but ran {sorted(ran)}")


def engine_rows(engine: Engine, batches: list[int], patches: int, sampling: SamplingConfig,
                ref_rates: tuple[float, float] | None) -> list[tuple]:
    rows = []
    cuda = engine.runtime.device.type == "cuda"
    for batch in batches:
        planned = engine.plan(batch).describe()
        path = f" ({planned})"
        t0 = time.perf_counter()
        chars, secs, pieces = engine_run(engine, batch, patches, sampling)
        ran_as_planned(planned, batch, {p.decode_path for p in pieces})
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        rate = chars / secs
        statuses = {p.status for p in pieces}
        rows.append((f"engine, batch {batch}{path}", chars, secs, rate, peak, ""))
        versus = f"x{ratio(rate, ref_rates, 0)} / x{ratio(rate, ref_rates, 1)} the references, " if ref_rates else ""
        print(f"engine batch {batch}{path}: {chars} chars in {secs:.2f} s = {rate:.0f} chars/s, "
              f"{1000 * secs / patches:.2f} ms per patch step, {versus}"
              f"peak {peak or 0:.2f} GiB, statuses {statuses} (setup+warm-up {time.perf_counter() - t0 - secs:.0f} s); "
              f"check at load: {engine.decoder(batch).checked or 'none (the modules as they are)'}", flush=True)
    return rows


if __name__ == "__main__":
    main()
