"""Whole-piece log-probabilities under a NotaGen model: the one place DPO gets them from.

A piece is scored in the training format (the four header lines, metadata, rest-reduced
`[V:n]` bar lines; the tokenizer adds the `[r:i/j]` prefixes), so a generated piece,
a post-processed one from the library and a dataset file are all measured the same
way. Log-probs are `-model.char_losses(...)`: the summed cross-entropy of every
predicted char, exactly the quantity training minimises. A piece longer than the
model's context is cut as in training, with a cut fixed by the piece's text, so the
policy and the reference always see the same patches.
"""
from __future__ import annotations

import hashlib
import random
import re

from pipelines.abc.prompts import Prompt
from pipelines.abc.rests import has_notes
from pipelines.abc.tokenizer import STREAM_PREFIX, Patchilizer
from pipelines.errors import DPOError
from pipelines.model.likelihood import measure_logprobs, sequence_logprobs  # noqa: F401 (DPO's names)

_VOICE_SEGMENT = re.compile(r"(\[V:[^\]]*\])")


def _rest_reduce_line(line: str) -> str:
    """`[V:1]abc|[V:2]z4|` -> `[V:1]abc|`: a post-processed bar line without its resting voices."""
    parts = _VOICE_SEGMENT.split(line.rstrip("\n"))
    kept = [parts[i] + parts[i + 1] for i in range(1, len(parts) - 1, 2) if has_notes(parts[i + 1])]
    return "".join(kept)


def training_text(abc: str, prompt: Prompt | None = None) -> str:
    """A piece in the training format, from generated text, post-processed ABC or a dataset file.

    Generated text keeps its header lines and loses its `[r:i/j]` prefixes (the tokenizer
    writes them back, counted exactly). Post-processed ABC (every voice in every bar,
    `X:` first, no header) gets `prompt`'s four header lines and its resting voices taken
    out of each bar, as the dataset's files are written.
    """
    lines = [line for line in abc.replace("\r\n", "\n").split("\n") if line.strip()]
    if not any("[V:" in line for line in lines):
        raise DPOError("the piece has no interleaved [V:n] bar lines")
    generated = any(STREAM_PREFIX.match(line) for line in lines)
    header = []
    while lines and lines[0].startswith("%") and not lines[0].startswith("%%"):
        header.append(lines.pop(0))
    if not header:
        if prompt is None:
            raise DPOError("the piece has no %Period / %Composer / %Instrumentation header and no prompt was given")
        header = prompt.header_lines(with_end=True)
    elif header[-1] != "%end":
        header.append("%end")
    body = []
    for line in lines:
        if line.startswith("X:") or (line.startswith("%") and not line.startswith("%%")):
            continue
        line = STREAM_PREFIX.sub("", line)
        if line.startswith("[V:") and not generated:
            line = _rest_reduce_line(line)
        if line:
            body.append(line)
    return "".join(line + "\n" for line in header + body)


def piece_rng(text: str) -> random.Random:
    """The cut of a long piece depends on its text only (same patches in every call)."""
    return random.Random(hashlib.sha256(text.encode("utf-8")).hexdigest())


def unfinished_text(raw: str) -> str:
    """A generated piece that did not end, as the model wrote it: prompt, metadata and its complete tune-body
    lines with their own `[r:i/j]` prefixes; the last line, cut off by the limit, is dropped."""
    text = raw.replace("\r\n", "\n")
    return text if text.endswith("\n") else text[:text.rfind("\n") + 1]


def encode_pieces(texts: list[str], patchilizer: Patchilizer, patch_length: int,
                  ended: list[bool] | None = None) -> list[list[list[int]]]:
    """Texts -> patch id lists, cut to the model's context.

    A piece that ended (`ended` True, the default) is a training-format text, encoded as in training (its
    end patch included). One that did not is an `unfinished_text`, encoded as written: the `[r:i/j]`
    counts the model wrote and no end patch (it wrote none, and a rejected piece must not teach the
    model not to end), the head kept where it is longer than the context.
    """
    as_written = Patchilizer(patchilizer.patch_size, stream=False)
    out = []
    for text, done in zip(texts, ended if ended is not None else [True] * len(texts)):
        if done:
            out.append(patchilizer.encode_train(text, patch_length, rng=piece_rng(text)))
        else:
            out.append(as_written.encode_train(text, patch_length, cut=False)[:-1][:patch_length])
    return out


