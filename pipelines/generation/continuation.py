"""A score to continue: read from a file (ABC or MusicXML), checked to be music, and put in the form the
model writes (header lines, metadata, `[r:i/j]` bar lines); and what a continuation came back as.

The studio's upload and `notagen generate --prefix` both read scores here, so they accept the
same files and refuse the same ones with the same words.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from pipelines.abc.prompts import Prompt
from pipelines.abc.rests import rest_reduce
from pipelines.abc.tokenizer import STREAM_PREFIX, stream_prefix
from pipelines.dataset.annotate import Labels, read_score_info, suggest_labels
from pipelines.dataset.convert import StageError, read_musicxml, xml_to_abc
from pipelines.dataset.preprocess import check_bar_counts, clean_abc, tidy_annotations
from pipelines.errors import AbcError
from pipelines.files import read_text
from pipelines.generation.piece import GeneratedPiece

SCORE_SUFFIXES = (".abc", ".xml", ".musicxml", ".mxl")
MAX_ABC_BYTES = 2 * 2**20  # of ABC text; a MusicXML file may be 4 times this
UNCHANGED = "unchanged"  # the status of a continuation the model ended without adding a line
_KEY_LINE = re.compile(r"^K:", re.MULTILINE)
_VOICE_LINE = re.compile(r"^V:", re.MULTILINE)
# A final barline closing a voice's segment (`|]` before the next `[V:` or the line's end).
_FINAL_BARLINE = re.compile(r"\|\](?=\s*(?:\[V:|$))")


def read_score(path: str | Path, name: str = "") -> str:
    """A score file (.abc, or MusicXML: .xml, .musicxml, .mxl) as ABC text, refused unless it holds bars of
    music that can be continued. `name` is how the file is called in messages (an upload's own name)."""
    path = Path(path)
    name = name or path.name
    suffix = Path(name).suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise AbcError(f"{name}: continue an .abc, .musicxml, .xml or .mxl file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise AbcError(f"{name}: cannot be read ({e.strerror or e})") from None
    if size > MAX_ABC_BYTES * (4 if suffix != ".abc" else 1):
        raise AbcError(f"{name}: too large to continue")
    if suffix == ".abc":
        try:
            abc = read_text(path)
        except UnicodeDecodeError as e:
            raise AbcError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    else:
        try:
            abc = xml_to_abc(read_musicxml(path).data, Path(name).stem)
        except StageError as e:
            raise AbcError(f"{name}: {e}") from None
    try:
        score_lines(abc)
    except AbcError as e:
        raise AbcError(f"{name}: {e}") from None
    return abc


def score_prompt(path: str | Path, source: str, given: Labels) -> tuple[Prompt, str]:
    """The prompt to continue a score with: the labels `given`, else the score's own, and where they come
    from in words. A training-format file carries its own four header lines; a MusicXML score's composer
    and parts give the Annotate tab's suggestions. AbcError naming what is still missing."""
    lines = source.replace("\r\n", "\n").split("\n")
    own = Labels()
    if len(lines) > 3 and lines[3] == "%end" and all(line.startswith("%") and not line.startswith("%%")
                                                      for line in lines[:3]):
        own, said = Labels(*(line[1:].strip() for line in lines[:3])), "its header"
    elif Path(path).suffix.lower() != ".abc":
        own, said = suggest_labels(read_score_info(read_musicxml(Path(path)).data)), "its MusicXML"
        if not own.period:  # a composer NotaGen-X does not know (music21 writes "Music21" into its exports)
            own = Labels(instrumentation=own.instrumentation)
    chosen = given.over(own)
    missing = [name for name in ("period", "composer", "instrumentation") if not getattr(chosen, name)]
    if missing:
        raise AbcError(f"{Path(path).name}: the score does not say its {' or '.join(missing)}; "
                       f"give {' and '.join('--' + m for m in missing)}")
    taken = [name for name in ("period", "composer", "instrumentation") if not getattr(given, name)]
    return (Prompt(chosen.period, chosen.composer, chosen.instrumentation),
            f"{', '.join(taken)} from {said}" if taken else "")


def score_lines(source: str) -> tuple[list[str], list[str]]:
    """(metadata lines, tune-body lines) of a score in the training format, or AbcError saying why it is
    not music that can be continued.

    `source` is standard ABC (a `K:` line, then one block per voice, e.g. xml2abc's output;
    with `V:` lines) or an interleaved piece in the training format
    (e.g. a dataset's augmented file).
    """
    lines = [line + "\n" for line in source.replace("\r\n", "\n").split("\n") if line.strip()]
    lines = [line for line in lines if not (line.startswith("%") and not line.startswith("%%"))]
    lines = [STREAM_PREFIX.sub("", line) for line in lines]
    if not any(line.startswith("[V:") for line in lines):
        text = "".join(lines)
        if not _KEY_LINE.search(text):  # ABC's header ends with the key: without it, it is not a tune
            raise AbcError("not an ABC tune: it has no K: (key) line, so there are no notes to read")
        if not _VOICE_LINE.search(text):
            raise AbcError("it has no voices: write V:1 (V:2, ...) lines before each voice's notes")
        try:
            lines = clean_abc(text)
            check_bar_counts(lines)
        except StageError as e:
            raise AbcError(f"not a score that can be continued ({e.reason})") from None
        lines = rest_reduce(tidy_annotations(lines))
    lines = [line for line in lines if line.strip() and not line.startswith("X:")]
    start = next((i for i, line in enumerate(lines) if line.startswith("[V:")), None)
    if start is None:
        raise AbcError("it has no bars of music")
    return lines[:start], lines[start:]


def continuation_prefix(source: str, prompt: Prompt, keep_lines: int = 0, add_lines: int = 8) -> str:
    """A piece to continue, in the training format: header lines, metadata, `[r:i/j]` bar lines.

    `source` is read by `score_lines`. `keep_lines` tune-body lines are kept (0: all) and
    the `[r:i/j]` prefixes count toward `add_lines` more, the length the model is asked to
    aim for. A final barline (`|]`) on the last kept line is made a plain one: the model
    reads it as the piece's end and would stop there.
    """
    metadata, body = score_lines(source)
    if keep_lines:
        body = body[:keep_lines]
    body[-1] = _FINAL_BARLINE.sub("|", body[-1])
    return training_format(prompt, metadata, stream_prefix(body, total=len(body) + max(add_lines, 1)))


def training_format(prompt: Prompt, metadata: list[str], numbered: list[str]) -> str:
    """A piece in the training format: the prompt's four header lines, its metadata lines and its
    `[r:i/j]`-prefixed tune-body lines (each line ending in a newline)."""
    header = "".join(line + "\n" for line in prompt.header_lines(with_end=True))
    return header + "".join(metadata) + "".join(numbered)


def added_lines(piece: GeneratedPiece) -> int:
    """Tune-body lines the model wrote after the piece it was given to continue."""
    if not piece.request.prefix or not piece.raw.startswith(piece.request.prefix):
        return 0
    return sum(1 for line in piece.raw[len(piece.request.prefix):].splitlines() if line.startswith(("[r:", "[V:")))


def judge_continuation(piece: GeneratedPiece) -> GeneratedPiece:
    """A continued piece that the model ended at once, adding no line, comes back `unchanged` (not `ok`)
    with the reason; any other piece is returned as it is."""
    if not piece.request.prefix or piece.status != "ok" or added_lines(piece):
        return piece
    return replace(piece, abc=None, status=UNCHANGED,
                   reason="not continued: the model ended the piece where the score ends, adding no bars")
