"""Rest reduction for training data, and its inverse for generated music.

NotaGen is trained on interleaved ABC in which a voice that only rests in a bar is
left out of that bar's line (`rest_reduce`, as upstream's data preprocessing). A
generation therefore comes back with voices missing from some bars;
`rest_unreduce` puts every voice back into every bar with a rest of the bar's
duration and turns the model's output into a plain tune, as upstream's
post-processing does (byte for byte).
"""
from __future__ import annotations

import re
from collections import Counter

from abctoolkit.utils import Barline_regexPattern, extract_barline_and_bartext_dict

from pipelines.abc.report import bar_duration
from pipelines.errors import AbcError

_REST_LETTERS = frozenset("ZzXx")
_STREAM_PREFIX = re.compile(r"^\[r:[^\]]*\]")
_VOICE_BAR = re.compile(r"\[V:(\d+)\](.*?)(?=\[V:|$)")
_BARLINE_SPLIT = re.compile(Barline_regexPattern)
_SCORE_GROUP = re.compile(r"\((.*?)\)")


def has_notes(bar_text: str) -> bool:
    """Whether a voice's bar holds anything but rests (any letter other than z, x, Z, X)."""
    return any(c.isalpha() and c not in _REST_LETTERS for c in bar_text)


def split_voice_bars(abc_lines: list[str]):
    """abctoolkit's split of standard ABC: (metadata, prefixes, left barlines, bars, right barlines), by `V:n`.

    Raises AbcError unless there is a voice V:1 and every voice has as many bars as it.
    """
    try:
        metadata, prefixes, left_barlines, bars, right_barlines = extract_barline_and_bartext_dict(list(abc_lines))
    except Exception as e:  # abctoolkit raises bare Exception on a missing V:1 block
        raise AbcError(f"cannot split the ABC into voices and bars: {e}") from None
    if "V:1" not in bars:
        raise AbcError("the ABC has no voice V:1")
    count = len(bars["V:1"])
    for voice, voice_bars in bars.items():
        if len(voice_bars) != count:
            raise AbcError(f"voice {voice[2:]} has {len(voice_bars)} bars where voice 1 has {count}")
    return metadata, prefixes, left_barlines, bars, right_barlines


def rest_reduce(abc_lines: list[str]) -> list[str]:
    """Interleave standard ABC (one block per voice) into one line per bar, leaving out resting voices.

    `abc_lines` end with newlines, as read from a file. The result is the metadata
    lines followed by one line per bar: `[V:n]<bar>` for each voice that has notes
    in it (the first bar keeps each voice's prefix and opening barline). A bar in
    which every voice rests becomes an empty line, as upstream writes it. One pass
    over the bars: upstream rewrote the output file once per bar.
    """
    metadata, prefixes, left_barlines, bars, right_barlines = split_voice_bars(abc_lines)
    count = len(bars["V:1"])
    lines = list(metadata)
    for i in range(count):
        parts = []
        for voice in prefixes:
            text = bars[voice][i]
            if not has_notes(text):
                continue
            if i == 0:
                parts.append(f"[{voice}]{prefixes[voice]}{left_barlines[voice][0]}{text}{right_barlines[voice][0]}")
            else:
                parts.append(f"[{voice}]{text}{right_barlines[voice][i]}")
        lines.append("".join(parts) + "\n")
    return lines


def _normalise_lines(abc_lines: list[str]) -> list[str]:
    lines = []
    for item in abc_lines:
        for line in item.replace("\r\n", "\n").split("\n"):
            if line:
                lines.append(line + "\n")
    return lines


def _rest_symbols(metadata: list[str]) -> tuple[list[str], set[str]]:
    """Voices in number order, and those that rest with visible `z` (the first voice of each staff).

    Voices grouped in `( )` in `%%score` share a staff; the others in a group rest with invisible `x`.
    """
    voices, groups, grouped = [], [], set()
    for line in metadata:
        if line.startswith("%%score"):
            for match in _SCORE_GROUP.findall(line):
                groups.append(match.split())
            grouped = {number for group in groups for number in group}
        if line.startswith("V:"):
            symbol = line.split()[0]
            voices.append(symbol)
            if symbol[2:] not in grouped:
                groups.append([symbol[2:]])
    if not voices:
        raise AbcError("no voices declared: the metadata has no V: lines")
    try:
        voices.sort(key=lambda s: int(s[2:]))
    except ValueError:
        raise AbcError(f"voice names must be numbers (V:1, V:2, ...), got {', '.join(voices)}") from None
    visible = {f"V:{group[0]}" for group in groups if group}
    return voices, visible


def rest_unreduce(abc_lines: list[str]) -> list[str]:
    """Turn a generation (header, metadata, `[r:i/j]`-prefixed rest-reduced bars) into a plain tune.

    Returns `X:1`, the metadata without single-`%` lines (the prompt header), and one
    line per bar with every declared voice: a voice missing from a bar gets a rest
    as long as the bar's most common voice duration, `z` for the first voice of a
    staff and invisible `x` for the others (voices grouped in `( )` in `%%score`),
    with the bar's closing barline. `[r:i/j]` prefixes are taken off. Lines may be
    given with or without newlines; returned lines end with one.
    """
    lines = _normalise_lines(abc_lines)
    body_start = next((i for i, line in enumerate(lines) if "[V:" in line), None)
    if body_start is None:
        raise AbcError("no tune body: no line holds a [V:n] voice")
    metadata, body = lines[:body_start], lines[body_start:]
    voices, visible = _rest_symbols(metadata)

    restored = []
    ref_duration = None
    right_barline = None
    for n, raw in enumerate(body):
        line = _STREAM_PREFIX.sub("", raw)
        bar_by_voice = {f"V:{number}": text for number, text in _VOICE_BAR.findall(line)}
        durations = Counter()
        for text in bar_by_voice.values():
            # the closing barline and whatever follows it, as upstream takes it
            right_barline = "".join(_BARLINE_SPLIT.split(text)[-2:])
            duration = bar_duration(text[:-len(right_barline)])  # None where abctoolkit cannot time it, as upstream
            if duration is not None:
                durations[duration] += 1
        if durations:
            ref_duration = durations.most_common(1)[0][0]  # ties go to the first seen, as upstream's max()
        left = line.split("[V:")[0] if n == 0 else ""
        parts = []
        for voice in voices:
            if voice in bar_by_voice:
                parts.append(f"[{voice}]{bar_by_voice[voice]}")
                continue
            if ref_duration is None or right_barline is None:
                raise AbcError(f"bar {n + 1}: cannot tell how long a rest voice {voice[2:]} needs "
                               f"(no voice in this bar or before it has a duration)")
            rest = "z" if voice in visible else "x"
            parts.append(f"[{voice}]{left}{rest}{ref_duration}{right_barline}")
        restored.append("".join(parts) + "\n")

    kept = [line for line in metadata + restored if not (line.startswith("%") and not line.startswith("%%"))]
    return ["X:1\n"] + kept
