"""A piece at a glance: voices, bars, metre, key, length, and whether the voices line up bar by bar.

`report_piece(abc_text)` reads post-processed ABC (interleaved `[V:n]` lines, as the
generation engine returns it) or standard ABC (one `V:n` block per voice). It never
raises on musical faults: a voice missing from a bar, bars of unequal length or a bar
abctoolkit cannot time are findings in the report, so generation, DPO filters and the
UI can all call it on whatever a model wrote.

The alignment verdict is abctoolkit's (`abctoolkit.check`): equal barlines, equal bar
counts and equal bar durations in every voice. We run its building blocks
(`extract_barline_and_bartext_dict[_rotated]`, `calculate_bartext_duration`) ourselves
rather than `check_alignment_*`, because the latter stops at the first odd bar, raises
when a voice is missing and prints to stdout; here each odd bar is named instead.
"""
from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field
from fractions import Fraction

from abctoolkit import duration as abc_duration
from abctoolkit import utils as abc_utils

from pipelines.abc.tokenizer import STREAM_PREFIX
from pipelines.errors import AbcError

DEFAULT_QPM = 120  # what Verovio's MIDI plays when the ABC has no Q: field

_INLINE_VOICE = re.compile(r"\[V:\s*([^\]\s]+)\s*\]")
_VOICE_DEF = re.compile(r"^V:\s*(\S+)(.*)$")
_VOICE_NAME = re.compile(r'\bnm\s*=\s*"([^"]*)"')
_FRACTION = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

# abctoolkit prints (to stdout) the bars it cannot time or split. We take those lines by
# rebinding `print` in its modules only, for the length of one call, under a lock;
# sys.stdout itself is never swapped, so other threads' output is untouched.
_QUIET_LOCK = threading.RLock()

_FINDING_BAR = re.compile(r"bar (\d+):")


@contextlib.contextmanager
def _quiet_abctoolkit():
    with _QUIET_LOCK:
        for module in (abc_duration, abc_utils):
            module.print = lambda *args, **kwargs: None
        try:
            yield
        finally:
            for module in (abc_duration, abc_utils):
                del module.print


@dataclass
class PieceReport:
    voices: list[str]  # voice ids in order of definition: "1", "2", ...
    voice_names: list[str]  # the nm="..." of each voice, cleaned ("" when none)
    bars: int  # bars of the longest voice (a pickup counts as a bar)
    bars_per_voice: list[int]
    time_signature: str | None  # the header's M:, e.g. "4/4"
    key: str | None  # the header's K:, e.g. "F#min"
    unit_length: str  # the header's L: (1/8 when absent, as ABC says)
    tempo: str | None  # the header's Q:, e.g. "1/4=96"
    seconds: float | None  # one pass at the header's tempo, repeats not taken; None if a bar cannot be timed
    aligned: bool  # every voice has the same barlines, bar count and bar durations
    findings: list[str] = field(default_factory=list)  # each fault, naming bar and voice
    layout: str = "interleaved"  # "interleaved" ([V:n] bar lines) or "standard" (V:n blocks)

    @property
    def faulty_share(self) -> float:
        """Share of the bars that a finding names (1.0 when a finding is about the whole piece)."""
        matches = [_FINDING_BAR.match(f) for f in self.findings]
        if not self.bars or not all(matches):
            return 1.0
        return len({m.group(1) for m in matches}) / self.bars

    def to_dict(self) -> dict:
        return {
            "voices": len(self.voices), "voice_names": self.voice_names, "bars": self.bars,
            "bars_per_voice": self.bars_per_voice, "time_signature": self.time_signature, "key": self.key,
            "unit_length": self.unit_length, "tempo": self.tempo, "seconds": self.seconds,
            "aligned": self.aligned, "findings": self.findings, "layout": self.layout,
        }


def report_piece(abc_text: str) -> PieceReport:
    """Read `abc_text` and describe it; raises AbcError only when there is no tune at all."""
    if not abc_text or not abc_text.strip():
        raise AbcError("the ABC text is empty")
    lines = [STREAM_PREFIX.sub("", line.rstrip("\r")) for line in abc_text.split("\n")]
    interleaved = any(line.startswith("[V:") for line in lines)
    header = _header_lines(lines, interleaved)
    fields = _header_fields(header)
    voices, names = _voice_definitions(header if interleaved else lines)
    unit = fields.get("L", "1/8")

    if interleaved:
        bars = _interleaved_bars(lines, header, voices)
    else:
        bars = _standard_bars(lines, voices)

    findings = list(bars.findings)
    unit_fraction = _parse_fraction(unit) or Fraction(1, 8)
    if unit != "1/8" and _parse_fraction(unit) is None:
        findings.append(f"L:{unit} is not a note length; timing bars as 1/8")
    findings += _duration_findings(bars, unit_fraction)
    durations_known = all(d is not None for row in bars.durations for d in row.values())
    bar_whole_notes = [max(timed) * unit_fraction for row in bars.durations
                       if (timed := [d for d in row.values() if d is not None])]

    per_voice = [bars.counts.get(v, 0) for v in voices]
    if len(set(per_voice)) > 1:
        findings.append("voices have different bar counts: "
                        + ", ".join(f"voice {v} has {n}" for v, n in zip(voices, per_voice)))
    if not voices:
        findings.append("no voice (V:) found")
    if not bars.durations:
        findings.append("no bars found")

    aligned = not findings
    seconds = None
    if durations_known and bar_whole_notes:
        seconds = round(float(sum(bar_whole_notes)) * _seconds_per_whole_note(fields.get("Q")), 3)
    return PieceReport(
        voices=voices, voice_names=names, bars=max(per_voice, default=0), bars_per_voice=per_voice,
        time_signature=fields.get("M"), key=fields.get("K"), unit_length=unit, tempo=fields.get("Q"),
        seconds=seconds, aligned=aligned, findings=findings,
        layout="interleaved" if interleaved else "standard",
    )


def _duration_findings(bars: "_Bars", unit_fraction: Fraction) -> list[str]:
    """Bars with a voice that cannot be timed or voices of different lengths."""
    findings = []
    for index, row in enumerate(bars.durations):
        untimed = [v for v, d in row.items() if d is None]
        if untimed:
            findings.append(f"bar {index + 1}: cannot time voice {', '.join(untimed)} "
                            f"({bars.texts[index][untimed[0]].strip()[:40]!r})")
        if len({d for d in row.values() if d is not None}) > 1:
            parts = ", ".join(f"voice {v} lasts {_whole_notes(d * unit_fraction)}"
                              for v, d in row.items() if d is not None)
            findings.append(f"bar {index + 1}: voices differ in length ({parts})")
    return findings


@dataclass
class _Bars:
    durations: list[dict[str, Fraction | None]]  # per bar: voice id -> duration in L units
    texts: list[dict[str, str]]  # per bar: voice id -> bar text
    counts: dict[str, int]  # bars per voice
    findings: list[str]


def _header_lines(lines: list[str], interleaved: bool) -> list[str]:
    for i, line in enumerate(lines):
        if interleaved and line.startswith("[V:"):
            return lines[:i]
        if not interleaved and re.match(r"^V:\s*\S+\s*$", line):  # a bare V:n opens the body
            return lines[:i]
    return lines


def _header_fields(header: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in header:
        m = re.match(r"^([A-Za-z]):(.*)$", line)
        if m and m.group(1) in "MKLQ" and m.group(1) not in fields:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def _voice_definitions(lines: list[str]) -> tuple[list[str], list[str]]:
    voices, names = [], []
    for line in lines:
        found = voice_definition(line)
        if found and found[0] not in voices:
            voices.append(found[0])
            names.append(found[1])
    return voices, names


def header_problem(metadata: str) -> str | None:
    """Why a piece's text before its tune body cannot make a readable score, or None.

    xml2abc, which made the training data, numbers the voices 1..n and lists each once in
    `%%score`. A voice defined twice makes abctoolkit read its bars once per definition; a gap in
    the numbers or a `%%score` that names other voices than the definitions leaves some voice
    that no tune-body line can both use and line up.
    """
    ids: list[str] = []
    score = None
    for line in metadata.split("\n"):
        found = voice_definition(line)
        if found and found[0] in ids:
            return f"voice {found[0]} is defined twice in the header"
        if found:
            ids.append(found[0])
        elif line.startswith("%%score") and score is None:
            score = re.findall(r"[^\s()\[\]{}|]+", line[len("%%score"):])
    if not ids:
        return None
    if not all(v.isdigit() for v in ids):
        return f"voice {next(v for v in ids if not v.isdigit())} is not numbered (xml2abc numbers voices 1, 2, ...)"
    gaps = sorted(set(range(1, len(ids) + 1)) - {int(v) for v in ids})
    if gaps:
        return (f"the header's voices are numbered {', '.join(sorted(ids, key=int))}: "
                f"voice {', '.join(map(str, gaps))} is missing")
    if score is not None and set(score) != set(ids):
        other = sorted(set(score) ^ set(ids), key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))
        return f"%%score and the voice definitions differ in voice {', '.join(other)}"
    return None


def voice_definition(line: str) -> tuple[str, str] | None:
    """(voice id, cleaned nm="..." name or "") of a `V:` line; None for any other line."""
    m = _VOICE_DEF.match(line)
    if not m:
        return None
    name = _VOICE_NAME.search(m.group(2))
    return m.group(1), clean_part_name(name.group(1)) if name else ""


def clean_part_name(name: str) -> str:
    """A part name without the layout junk some MusicXML exports leave in it (`\\n\\t\\t:Violin 1`)."""
    name = name.replace("\\n", " ").replace("\\t", " ")
    return " ".join(name.split()).lstrip(": ").strip()


_NAME_FIELD = re.compile(r'\b(s?nm\s*=\s*)"([^"]*)"')


def clean_voice_names(line: str) -> str:
    """A `V:` line with its `nm="..."` / `snm="..."` names cleaned (see `clean_part_name`)."""
    return _NAME_FIELD.sub(lambda f: f'{f.group(1)}"{clean_part_name(f.group(2))}"', line)


def _interleaved_bars(lines: list[str], header: list[str], voices: list[str], whole_piece: bool = True) -> _Bars:
    """Bars of an interleaved piece; `whole_piece` also says when its last line looks cut off."""
    findings: list[str] = []
    body = [line for line in lines[len(header):] if line.startswith("[V:")]
    complete, complete_index = [], []
    counts = {v: 0 for v in voices}
    for index, line in enumerate(body):
        present = _INLINE_VOICE.findall(line)
        for v in present:
            if v in counts:
                counts[v] += 1
        unknown = [v for v in present if v not in counts]
        missing = [v for v in voices if v not in present]
        twice = list(dict.fromkeys(v for v in present if present.count(v) > 1))
        if twice:  # rest restoration would keep one of its bars and drop the other
            findings.append(f"bar {index + 1}: voice {', '.join(twice)} appears more than once in the line")
        if unknown:
            findings.append(f"bar {index + 1}: voice {', '.join(unknown)} is not defined in the header")
        if missing:
            findings.append(f"bar {index + 1}: voice {', '.join(missing)} is missing")
        if not missing and not unknown and not twice:
            complete.append(line)
            complete_index.append(index)

    if body and whole_piece:
        last = body[-1]
        segments = re.split(r"\[V:\s*[^\]\s]+\s*\]", last)[1:]
        cut = [v for v, seg in zip(_INLINE_VOICE.findall(last), segments) if not seg.rstrip().endswith(("|", "]", ":"))]
        if cut:
            findings.append(f"bar {len(body)}: voice {', '.join(cut)} has no closing barline (the piece looks cut off)")

    durations: list[dict[str, Fraction | None]] = [{} for _ in body]
    texts: list[dict[str, str]] = [{} for _ in body]
    if complete and all(v.isdigit() for v in voices):
        try:
            with _quiet_abctoolkit():
                _, _, left, bar_texts, right = abc_utils.extract_barline_and_bartext_dict_rotated(header + complete)
        except Exception as e:  # abctoolkit raises bare Exceptions on bars it cannot split
            findings.append(f"abctoolkit cannot split the bars into voices ({e})")
        else:
            findings += _barline_findings(left, right, complete_index)
            for k, index in enumerate(complete_index):
                for symbol, voice_bars in bar_texts.items():
                    texts[index][symbol[2:]] = voice_bars[k]
                    durations[index][symbol[2:]] = bar_duration(voice_bars[k])
    elif complete:
        findings.append("voice ids are not numbers; bar lengths were not checked")
    return _Bars([d for d in durations if d], [t for t in texts if t], counts, findings)


def _standard_bars(lines: list[str], voices: list[str]) -> _Bars:
    findings: list[str] = []
    # bar-number comments (" %5") at line ends would be read as bar text
    cleaned = [re.sub(r"\s*%\d+\s*$", "", line) + "\n" for line in lines if not line.startswith("%")]
    try:
        with _quiet_abctoolkit():
            _, _, left, bar_texts, right = abc_utils.extract_barline_and_bartext_dict(cleaned)
    except Exception as e:  # abctoolkit raises bare Exceptions on text it cannot split
        return _Bars([], [], {}, [f"abctoolkit cannot split the voices into bars ({e})"])
    counts = {symbol[2:]: len(b) for symbol, b in bar_texts.items()}
    for v in voices:
        if f"V:{v}" not in bar_texts:
            findings.append(f"voice {v} has no music")
    findings += _barline_findings(left, right, None)
    n = max((len(b) for b in bar_texts.values()), default=0)
    durations, texts = [], []
    for i in range(n):
        row_d, row_t = {}, {}
        for symbol, voice_bars in bar_texts.items():
            if i < len(voice_bars):
                row_t[symbol[2:]] = voice_bars[i]
                row_d[symbol[2:]] = bar_duration(voice_bars[i])
        durations.append(row_d)
        texts.append(row_t)
    return _Bars(durations, texts, counts, findings)


def _barline_findings(left: dict, right: dict, bar_numbers: list[int] | None) -> list[str]:
    found = []
    first = next(iter(right), None)
    if first is None:
        return found
    for symbol in right:
        for k, (a, b) in enumerate(zip(right[symbol], right[first])):
            if a != b:
                bar = (bar_numbers[k] if bar_numbers else k) + 1
                found.append(f"bar {bar}: voice {symbol[2:]} ends with {a!r}, voice {first[2:]} with {b!r}")
                break
    return found


def bar_duration(bar_text: str) -> Fraction | None:
    """A bar's duration in L: units, by abctoolkit's `calculate_bartext_duration`; None where it cannot time it."""
    with _quiet_abctoolkit():
        try:
            value = abc_duration.calculate_bartext_duration(bar_text)
        except Exception:  # its parser raises bare Exceptions (IndexError...) on odd text: untimeable
            value = None
    return Fraction(value) if value is not None else None


def _parse_fraction(text: str | None) -> Fraction | None:
    m = _FRACTION.match(text or "")
    if not m or int(m.group(2)) == 0:
        return None
    return Fraction(int(m.group(1)), int(m.group(2)))


def _seconds_per_whole_note(tempo: str | None) -> float:
    """Q:1/4=96 -> 60 / (96 * 1/4); a bare Q:96 counts quarter notes; no Q: plays at 120 quarters."""
    text = re.sub(r'"[^"]*"', "", tempo or "").strip()
    m = re.search(r"(\d+)\s*/\s*(\d+)\s*=\s*(\d+(?:\.\d+)?)", text)
    if m and int(m.group(1)) and int(m.group(2)) and float(m.group(3)) > 0:
        return 60.0 / (float(m.group(3)) * int(m.group(1)) / int(m.group(2)))
    m = re.fullmatch(r"(\d+(?:\.\d+)?)", text)
    qpm = float(m.group(1)) if m and float(m.group(1)) > 0 else DEFAULT_QPM
    return 60.0 / (qpm / 4)


def _whole_notes(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def bar_line_problem(metadata: str, line: str, last: bool = False) -> str | None:
    """Why one interleaved tune-body line (one bar of each voice it names) does not line up, or None.

    `metadata` is the piece's text before its tune body (its `V:` definitions among it). Voices
    the line leaves out (whole-bar rests that preprocessing removed, restored after generation)
    are not counted; the others must be timeable, of one duration and end with one barline.
    The `last` line of a piece must also close every voice (not end on an opened ending, `|1`).
    """
    body = STREAM_PREFIX.sub("", line.rstrip("\r\n"))
    present = list(dict.fromkeys(_INLINE_VOICE.findall(body)))
    if not present:
        return "the line names no voice"
    # abctoolkit splits a line only when its voices are 1..k: number the present ones so.
    number = {v: str(i + 1) for i, v in enumerate(present)}
    original = {n: v for v, n in number.items()}
    header = []
    for text in metadata.split("\n"):
        found = voice_definition(text)
        if not text or text.startswith("%%score") or (found and found[0] not in number):
            continue
        header.append(_VOICE_DEF.sub(lambda m: f"V:{number[m.group(1)]}{m.group(2)}", text) if found else text)
    body = _INLINE_VOICE.sub(lambda m: f"[V:{number.get(m.group(1), m.group(1))}]", body)
    voices, _ = _voice_definitions(header)
    bars = _interleaved_bars(header + [body], header, voices, whole_piece=last)
    unit = _parse_fraction(_header_fields(header).get("L")) or Fraction(1, 8)
    findings = bars.findings + _duration_findings(bars, unit)
    if not findings:
        return None
    return re.sub(r"\bvoice (\d+)\b", lambda m: f"voice {original.get(m.group(1), m.group(1))}", findings[0])
