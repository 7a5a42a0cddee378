"""A score to continue, in the form the model writes: header lines, metadata, `[r:i/j]` bar lines."""
from __future__ import annotations

from pipelines.abc.prompts import Prompt
from pipelines.abc.rests import rest_reduce
from pipelines.abc.tokenizer import STREAM_PREFIX, stream_prefix
from pipelines.dataset.preprocess import check_bar_counts, clean_abc, tidy_annotations
from pipelines.errors import AbcError


def continuation_prefix(source: str, prompt: Prompt, keep_lines: int = 0, add_lines: int = 8) -> str:
    """A piece to continue, in the training format: header lines, metadata, `[r:i/j]` bar lines.

    `source` is standard ABC (one block per voice, e.g. xml2abc's output) or an
    interleaved piece in the training format (e.g. a dataset's augmented file).
    `keep_lines` tune-body lines are kept (0: all) and the `[r:i/j]` prefixes count
    toward `add_lines` more, the length the model is asked to aim for.
    """
    lines = [line + "\n" for line in source.replace("\r\n", "\n").split("\n") if line.strip()]
    lines = [line for line in lines if not (line.startswith("%") and not line.startswith("%%"))]
    lines = [STREAM_PREFIX.sub("", line) for line in lines]
    if not any(line.startswith("[V:") for line in lines):
        lines = clean_abc("".join(lines))
        check_bar_counts(lines)
        lines = rest_reduce(tidy_annotations(lines))
    lines = [line for line in lines if line.strip() and not line.startswith("X:")]
    start = next((i for i, line in enumerate(lines) if line.startswith("[V:")), None)
    if start is None:
        raise AbcError("the piece to continue has no bars")
    metadata, body = lines[:start], lines[start:]
    if keep_lines:
        body = body[:keep_lines]
    body = stream_prefix(body, total=len(body) + max(add_lines, 1))
    header = "".join(line + "\n" for line in prompt.header_lines(with_end=True))
    return header + "".join(metadata) + "".join(body)
