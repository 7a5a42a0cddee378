"""From generated text to a playable ABC tune.

`rest_unreduce` does what upstream's demo does (restores the voices that rest
reduction left out of each bar, takes off the `[r:i/j]` prefixes, drops the
single-`%` header lines, puts `X:1` first); this adds closing any bracket the
model left open in `%%score`, which abc2xml otherwise rejects. `postprocess_partial`
does the same for a piece still being written, cut to what can be engraved so far.
"""
from __future__ import annotations

from pipelines.abc.report import bar_line_problem
from pipelines.abc.rests import rest_unreduce
from pipelines.errors import AbcError

_PAIRS = {"(": ")", "[": "]", "{": "}"}


def close_score_brackets(line: str) -> str:
    """`%%score { ( 1 2 ) | 3` -> `%%score { ( 1 2 ) | 3 }`; stray closers are dropped."""
    stack, out = [], []
    for ch in line:
        if ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif ch in _PAIRS.values():
            if not stack or stack[-1] != ch:
                continue
            stack.pop()
        out.append(ch)
    closed = "".join(out).rstrip()
    return closed + "".join(" " + c for c in reversed(stack))


def postprocess(generated: str) -> str:
    """Generated text (prompt, metadata, `[r:i/j]` lines) -> ABC with every voice in every bar."""
    lines = [line + "\n" for line in generated.split("\n") if line]
    if not any(line.startswith(("[V:", "[r:")) for line in lines):
        raise AbcError("the piece has no tune body")
    try:
        restored = rest_unreduce(lines)
    except AbcError:
        raise
    except (ValueError, IndexError, KeyError, ZeroDivisionError) as e:
        raise AbcError(f"cannot restore the voices' rests: {e}") from e
    return "".join(close_score_brackets(line.rstrip("\n")) + "\n" if line.startswith("%%score") else line
                   for line in restored)


def postprocess_partial(generated: str) -> str | None:
    """A piece still being written as ABC that can be engraved: its whole lines only, without the
    last ones whose voices do not line up (the engine may be about to draw them again); None
    while it has no such line in its tune body or cannot be read yet."""
    lines = generated[:generated.rfind("\n") + 1].splitlines(keepends=True)
    body = next((i for i, line in enumerate(lines) if line.startswith(("[V:", "[r:"))), None)
    if body is None:
        return None
    metadata, bars = "".join(lines[:body]), lines[body:]
    while bars and bar_line_problem(metadata, bars[-1]) is not None:
        bars.pop()
    if not bars:
        return None
    try:
        return postprocess(metadata + "".join(bars))
    except AbcError:
        return None
