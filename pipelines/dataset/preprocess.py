"""Standard ABC to NotaGen training text, exactly as upstream's `data/2_data_preprocess.py`.

Cleaning: drop blank lines; transliterate to ASCII (unidecode); drop the X T C W w Z
and %%MIDI fields, the `%n` bar-number comments, escaped quotes and quoted
annotations that contain a barline; check that every voice has as many bars as
voice 1; shorten `^`/`_` annotations (runs of one punctuation mark squeezed, over
40 chars dropped) and drop empty ones. Then interleave (one line per bar, every
voice) and, for each of the 15 key spellings, transpose and rest-reduce.
The result equals upstream's output byte for byte; abctoolkit does the musical work
(transposition through `transpose.py`, which reads each voice once for all keys).
"""
from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass

from abctoolkit import transpose as abc_transpose
from abctoolkit.check import check_alignment_unrotated
from abctoolkit.rotate import rotate_abc
from abctoolkit.utils import (
    Barlines,
    Quote_re,
    extract_global_and_local_metadata,
    extract_metadata_and_parts,
    remove_bar_no_annotations,
    remove_information_field,
)
from unidecode import unidecode

from pipelines.abc.rests import rest_reduce, split_voice_bars
from pipelines.dataset.convert import StageError
from pipelines.dataset.transpose import transpose_all
from pipelines.errors import AbcError

KEYS = ("Cb", "C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B")
DROPPED_FIELDS = ("X:", "T:", "C:", "W:", "w:", "Z:", "%%MIDI")
MAX_ANNOTATION = 40
_FIELD_LINE = re.compile(r"^[A-Za-z]:")
_ANY_QUOTE = re.compile(r'"[^"]*"')
_REPEATED_MARK = re.compile(r"([^a-zA-Z0-9])\1+")


@dataclass
class Preprocessed:
    key: str  # the original key or mode, as upstream records it ('F#min'; 'C' for K:none)
    key_signature: str  # its major-key name, one of KEYS: the augmented folder of the original key
    voices: int
    bars: int
    interleaved: str
    augmented: dict[str, str]  # KEY -> rest-reduced text in that key, without the header lines


def _quiet(function, *args):
    """Call an abctoolkit function that prints diagnostics to stdout; the reasons we report are our own."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def clean_abc(text: str) -> list[str]:
    """The cleaned lines of an xml2abc output, up to (not including) the bar-count check."""
    lines = [line + "\n" for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines[-1] = lines[-1][:-1]
    lines = [unidecode(line) for line in lines if line.strip() != ""]
    lines = remove_information_field(abc_lines=lines, info_fields=list(DROPPED_FIELDS))
    try:
        lines = remove_bar_no_annotations(lines)
    except Exception:  # abctoolkit raises bare Exception when there is no 'V:1' line
        raise StageError("clean", "the ABC has no voice V:1 (no notes?)") from None
    for i, line in enumerate(lines):
        if not (_FIELD_LINE.search(line) or line.startswith("%")) and r"\"" in line:
            lines[i] = line.replace(r"\"", "")
    for i, line in enumerate(lines):
        for quoted in re.findall(Quote_re, line):
            if any(barline in quoted for barline in Barlines):
                line = line.replace(quoted, "")
                lines[i] = line
    return lines


def check_bar_counts(lines: list[str]) -> tuple[int, int]:
    """(voices, bars per voice) when every voice has as many bars as voice 1, else StageError naming one that differs."""
    try:
        _, _, _, bars, _ = split_voice_bars(lines)
    except AbcError as e:
        raise StageError("check", str(e)) from None
    reference = len(bars["V:1"])
    if reference == 0:
        raise StageError("check", "the score has no bars")
    try:  # upstream's check; it also reads every bar's duration and fails on bars it cannot read
        _quiet(check_alignment_unrotated, lines)
    except Exception as e:  # abctoolkit raises bare Exception ('Illegal symbol in [] ...')
        raise StageError("check", f"cannot read the bars: {e}") from None
    return len(bars), reference


def tidy_annotations(lines: list[str]) -> list[str]:
    """Drop empty quotes; squeeze and length-limit `^`/`_` text annotations."""
    tidied = []
    for line in lines:
        for quoted in _ANY_QUOTE.findall(line):
            if quoted == '""':
                line = line.replace(quoted, "")
            if quoted[1] in ("^", "_"):
                squeezed = _REPEATED_MARK.sub(r"\1", quoted)
                line = line.replace(quoted, squeezed if len(squeezed) <= MAX_ANNOTATION else "")
        tidied.append(line)
    return tidied


def original_key(lines: list[str]) -> str:
    metadata, _ = extract_metadata_and_parts(lines)
    global_fields, _ = extract_global_and_local_metadata(metadata)
    if "K" not in global_fields:
        raise StageError("key", "the ABC has no K: key field")
    key = global_fields["K"][0]
    return "C" if key == "none" else key


def preprocess_abc(text: str) -> Preprocessed:
    """Clean, check, interleave and augment one xml2abc output; StageError names what failed."""
    lines = clean_abc(text)
    voices, bars = check_bar_counts(lines)
    lines = tidy_annotations(lines)
    key = original_key(lines)
    try:
        signature = abc_transpose.Mode2Key[key] if key not in abc_transpose.Key2index else key
    except KeyError:
        raise StageError("key", f"key {key!r} is not one abctoolkit can transpose") from None
    try:
        interleaved = "".join(rotate_abc(lines))
    except Exception as e:  # abctoolkit raises bare Exception / IndexError on odd layouts
        raise StageError("interleave", f"{type(e).__name__}: {e}") from None
    try:
        transposed = transpose_all(lines, KEYS)
    except Exception as e:  # abctoolkit raises bare Exception ('Cannot find proper notename', ...), KeyError, ...
        raise StageError("transpose", f"{type(e).__name__}: {e}") from None
    augmented = {}
    for target, text in transposed.items():
        try:
            augmented[target] = "".join(rest_reduce([line + "\n" for line in text.split("\n") if line]))
        except AbcError as e:
            raise StageError("rest-reduce", f"in {target}: {e}") from None
    return Preprocessed(key=key, key_signature=signature, voices=voices, bars=bars,
                        interleaved=interleaved, augmented=augmented)
