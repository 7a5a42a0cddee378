"""One bar in the middle of a piece written again: candidates for bar k, ranked by the model's own
likelihood of the bars that follow.

NotaGen writes left to right, so a new bar k cannot see the bars after it. `rewrite_bar` keeps bars
1..k-1, draws candidates for bar k in one batch (one seed each: a continuation of the first k-1 bars,
cut after its first new line), puts each in the piece in place of bar k with every later bar as it
was, and ranks them by the log-likelihood (nats) the model gives the later bars after the new one.
A piece's log-probability is the sum over its patches, each given those before it, so that is the
log-probability of the whole piece minus that of the piece up to and with the new bar: two
teacher-forced passes, batched over the candidates. Bars past the model's context (its patch length)
are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.abc.postprocess import postprocess
from pipelines.abc.prompts import Prompt
from pipelines.abc.tokenizer import STREAM_PREFIX, Patchilizer, stream_prefix
from pipelines.errors import AbcError, NotaGenError
from pipelines.generation.continuation import continuation_prefix, score_lines, training_format
from pipelines.generation.engine import Engine
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.piece import GeneratedPiece, GenerationRequest
from pipelines.model.likelihood import measure_logprobs

PATCHES_PER_BAR = 3  # a candidate may take this many times the patches of the bar it replaces (then 4 more)


@dataclass
class BarCandidate:
    """One new bar k and the whole piece with it."""

    seed: int
    line: str  # bar k as written, without its [r:i/j] prefix
    text: str  # the whole piece in the training format, bar k replaced
    following_logprob: float  # nats the model gives the bars after k, after this bar
    abc: str | None  # the piece post-processed (None where that fails)
    piece: GeneratedPiece  # the generation the bar was cut from


def piece_with_bar(source: str, prompt: Prompt, bar: int, line: str) -> tuple[str, str]:
    """(the piece up to and with `line` as bar `bar`, the whole piece with it), both in the training format,
    numbered as the model expects ([r:i/j] over the score's own length)."""
    metadata, body = score_lines(source)
    lines = [*body[:bar - 1], line.rstrip("\n") + "\n", *body[bar:]]
    numbered = stream_prefix(lines)
    return training_format(prompt, metadata, numbered[:bar]), training_format(prompt, metadata, numbered)


def following_logprobs(model, heads: list[str], wholes: list[str]) -> list[float]:
    """Log-probability (nats) of each whole piece's text after its head: the whole piece (its end
    included) minus the head (no end), each within the model's context."""
    config = model.config
    as_written = Patchilizer(config.patch_size, stream=False)
    length = config.patch_length
    whole = [as_written.encode_train(t, length, cut=False)[:length] for t in wholes]
    head = [as_written.encode_train(t, length, cut=False)[:-1][:length] for t in heads]
    with torch.inference_mode():
        scores = measure_logprobs(model, whole + head)
    n = len(wholes)
    return [float(scores[i] - scores[n + i]) for i in range(n)]


def bar_prefix(source: str, prompt: Prompt, bar: int) -> str:
    """The piece up to bar `bar` (its bars 1..bar-1, numbered over the score's own length) in the training
    format: what the candidates for bar `bar` continue. NotaGenError unless `bar` is 2 .. the score's bars - 1."""
    _, body = score_lines(source)
    if not 2 <= bar <= len(body) - 1:
        raise NotaGenError(f"the bar to write again must be 2 to {len(body) - 1} (the score has {len(body)} bars; "
                           "the first and last have no bars before or after them)")
    return continuation_prefix(source, prompt, keep_lines=bar - 1, add_lines=len(body) - bar + 1)


def rewrite_bar(engine: Engine, source: str, prompt: Prompt, bar: int, candidates: int, seed: int = 0,
                sampling: SamplingConfig = SamplingConfig(), bar_retries: int | None = None,
                on_patch=None, should_stop=None) -> list[BarCandidate]:
    """Candidates for bar `bar` (2 .. the score's bars - 1) of `source` (read by `score_lines`), best first
    (by `following_logprob`). A candidate whose generation wrote no whole line is left out; NotaGenError
    where none did. `on_patch(row, text)` and `should_stop()` are the engine's."""
    prefix = bar_prefix(source, prompt, bar)
    if candidates < 1:
        raise NotaGenError("ask for at least 1 candidate")
    _, body = score_lines(source)
    budget = PATCHES_PER_BAR * -(-len(body[bar - 1]) // engine.config.patch_size) + 4
    limits = GenerationLimits(max_patches=budget, **({} if bar_retries is None else {"bar_retries": bar_retries}))
    requests = [GenerationRequest(prompt, seed=seed + i, prefix=prefix) for i in range(candidates)]
    found = []
    for piece in engine.generate(requests, sampling, limits, on_patch=on_patch, should_stop=should_stop):
        written = piece.raw[len(prefix):] if piece.raw.startswith(prefix) else ""
        if "\n" not in written:
            continue  # no whole new line within the budget
        line = STREAM_PREFIX.sub("", written.split("\n", 1)[0])
        head, whole = piece_with_bar(source, prompt, bar, line)
        found.append((piece, line, head, whole))
    if not found:
        raise NotaGenError(f"none of the {candidates} candidates wrote a whole bar {bar} within {budget} patches")
    scores = following_logprobs(engine.model, [f[2] for f in found], [f[3] for f in found])
    out = []
    for (piece, line, _, whole), score in zip(found, scores):
        try:
            abc = postprocess(whole)
        except AbcError:
            abc = None
        out.append(BarCandidate(piece.request.seed, line, whole, score, abc, piece))
    return sorted(out, key=lambda c: -c.following_logprob)
