"""Score, MIDI, timemap and PDF of a piece, from its ABC text.

The route is ABC -> MusicXML with abctoolkit's `abc2xml` (in-process) -> Verovio, which
engraves SVG pages and writes the MIDI and a timemap from that MusicXML. Verovio's own ABC
reader keeps only the first voice, hence the MusicXML step.

Each part gets its own MIDI channel and a General MIDI program chosen from its instrument
name (instruments.py); pdf.py turns the pages into a PDF and export.py writes the files.

The work runs in a worker process (worker.py) under a time limit, so a long or malformed
piece cannot hang the caller: engraving (abc2xml, Verovio, MIDI, timemap) gets
`RenderConfig.time_limit_s`, the PDF that plus 5 s a page; a piece over
`RenderConfig.max_chars` is refused before any of it. abc2xml keeps its parser state in
module globals and reports on stderr, so calls are serialised by a lock, and its messages
are taken by rebinding its own `info` function for the length of one call (never by
swapping sys.stderr, which would leak across threads).
"""
from __future__ import annotations

import base64
import io
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mido
import verovio
from abctoolkit import abc2xml

from pipelines.abc.report import PieceReport, clean_part_name, report_piece
from pipelines.errors import AbcError, RenderError
from pipelines.files import without_bom
from pipelines.render.follow import score_follow
from pipelines.render.instruments import DEFAULT_PROGRAM, GM_NAMES, Instrument, assign_instruments
from pipelines.render.pdf import score_pdf
from pipelines.render.worker import run_limited

_ABC2XML_LOCK = threading.Lock()
_BENIGN_ABC2XML = ("skipped header: (field X,",)  # abc2xml ignores X: in the header, rightly
_HAS_NOTES = re.compile(r"[A-Ga-g]")


@dataclass
class RenderConfig:
    page_width: int = 2100  # Verovio units (tenths of a mm): A4 portrait, engraved at normal staff size
    page_height: int = 2970
    scale: int = 40  # SVG size in percent of the page units: 840 x 1188 px for A4
    svg: bool = True
    pdf: bool = True
    time_limit_s: float = 60.0  # for engraving (abc2xml, Verovio); the PDF gets this and 5 s more a page
    fit_height: bool = False  # pages only as tall as their music (a few bars being written), not A4
    # Longer ABC is refused at once: about 100 pages, minutes of abc2xml and Verovio on a small CPU.
    max_chars: int = 100_000
    follow: bool = True  # where notes and bars sit and when they sound, for a score that follows playback




@dataclass
class PartInfo:
    name: str
    channel: int  # 1-16
    program: int  # General MIDI 0-127
    instrument: str  # General MIDI name of the program
    notes: int  # sounding notes in this part's MIDI track (tied notes count once)
    measures: int


@dataclass
class RenderResult:
    abc: str  # the ABC as given
    musicxml: str
    svg_pages: list[str]
    midi: bytes
    timemap: list[dict]  # Verovio's: {tstamp (ms), qstamp, on: [svg note ids], off: [...], measureOn, tempo}
    pdf: bytes | None
    parts: list[PartInfo]
    notes: int  # sounding notes in the MIDI (a tie joins notes into one)
    written_notes: int  # note heads engraved in the SVG (tied notes count separately)
    pages: int
    seconds: float  # length of the MIDI; Verovio plays repeats, so this can exceed report.seconds
    report: PieceReport
    follow: dict | None = None  # note and bar boxes with their times (follow.py); None without SVG pages
    warnings: list[str] = field(default_factory=list)  # what the converters said
    partial: bool = False  # True when some of the input was dropped or does not line up
    problems: list[str] = field(default_factory=list)  # why it is partial

    def summary(self) -> dict:
        return {
            "parts": [p.__dict__ for p in self.parts], "voices": len(self.report.voices), "notes": self.notes,
            "written_notes": self.written_notes, "pages": self.pages, "seconds": round(self.seconds, 3),
            "bars": self.report.bars, "time_signature": self.report.time_signature, "key": self.report.key,
            "alignment": {"aligned": self.report.aligned, "findings": self.report.findings},
            "partial": self.partial, "problems": self.problems, "warnings": self.warnings,
        }



def abc_to_musicxml(abc_text: str, time_limit_s: float = 60.0) -> tuple[str, list[str]]:
    """MusicXML of the first tune in `abc_text`, and abc2xml's messages about it (in a worker process).

    Raises AbcError when abc2xml cannot read the tune (its syntax error is in the message),
    RenderError when it takes longer than `time_limit_s` (the conversion is then stopped).
    """
    return run_limited(convert_abc, (abc_text,), time_limit_s, "converting the ABC to MusicXML")


def convert_abc(abc_text: str) -> tuple[str, list[str]]:
    """`abc_to_musicxml` in this process, with no time limit."""
    if not abc_text.strip():
        raise AbcError("the ABC text is empty")
    messages: list[str] = []
    with _ABC2XML_LOCK:
        own_info = abc2xml.info
        abc2xml.info = lambda text, warn=1: messages.append(str(text))
        try:
            docs = abc2xml.getXmlDocs(abc_text)
        finally:
            abc2xml.info = own_info
    messages = [m for m in messages if not m.startswith(_BENIGN_ABC2XML)]
    if not docs:
        detail = "; ".join(m.strip() for m in messages[-3:]) or "no tune found"
        raise AbcError(f"abc2xml cannot read this ABC: {detail}")
    return abc2xml.fixDoctype(docs[0]), messages


def new_toolkit(config: RenderConfig) -> verovio.toolkit:
    """A Verovio toolkit that finds its fonts in any thread (Gradio runs handlers in workers)."""
    tk = verovio.toolkit(False)
    tk.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    tk.setOptions({
        "inputFrom": "musicxml",
        "pageWidth": config.page_width, "pageHeight": config.page_height, "scale": config.scale,
        "footer": "none", "header": "auto", "breaks": "auto", "adjustPageHeight": config.fit_height,
    })
    return tk


def render_abc(abc_text: str, config: RenderConfig | None = None,
               on_progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> RenderResult:
    """Engrave a piece, write its MIDI and timemap, and report on it. Raises AbcError / RenderError; faults that still
    leave a score (a missing voice, bars of unequal length, dropped symbols) give a result
    with `partial=True` and the reasons in `problems`.

    Engraving and the PDF run in a worker process under `config.time_limit_s` (the PDF 5 s
    more a page); `should_stop()` is polled meanwhile and stops them at once."""
    config = config or RenderConfig()
    abc_text = without_bom(abc_text).replace("\r\n", "\n").replace("\r", "\n")  # files saved on Windows
    if len(abc_text) > config.max_chars:
        raise RenderError(f"the piece is {len(abc_text):,} characters of ABC, over the {config.max_chars:,} that "
                          "are engraved (about 100 pages); shorten it or split it into movements")
    total = 5
    progress = on_progress or (lambda done, total: None)

    def step(done: int) -> None:
        if should_stop and should_stop():
            raise RenderError("rendering was stopped")
        progress(done, total)

    step(0)
    result = run_limited(engrave_piece, (abc_text, config), config.time_limit_s, "engraving the score",
                         should_stop)
    step(3)
    if config.pdf and result.svg_pages:
        limit = config.time_limit_s + 5.0 * len(result.svg_pages)  # svglib takes 1-2 s a page
        result.pdf = run_limited(score_pdf, (result.svg_pages,), limit, "writing the PDF", should_stop)
    step(4)
    step(5)
    return result


def engraved_follow(tk: verovio.toolkit, timemap: list[dict]) -> dict:
    """The follow data of the score `tk` has laid out (follow.py): its pages drawn again with a box per element,
    where each note sits, and `timemap` (rendered with `includeMeasures`), when it sounds."""
    tk.setOptions({"svgBoundingBoxes": True})
    return score_follow([tk.renderToSVG(p) for p in range(1, tk.getPageCount() + 1)], timemap)


def engrave_piece(abc_text: str, config: RenderConfig) -> RenderResult:
    """`render_abc` without the PDF, in this process and with no time limit (a render worker runs it)."""
    report = report_piece(abc_text)
    if not _HAS_NOTES.search(_body_text(abc_text)):
        raise AbcError("the ABC has no notes: its tune body is empty or only rests")
    abc_midi, instruments = assign_instruments(abc_text)
    musicxml, warnings = convert_abc(abc_midi)
    tk = new_toolkit(config)
    if not tk.loadData(musicxml):
        raise RenderError("Verovio cannot read the MusicXML that abc2xml wrote")
    pages = tk.getPageCount()
    svg_pages = [tk.renderToSVG(p) for p in range(1, pages + 1)] if config.svg else []
    midi = base64.b64decode(tk.renderToMIDI())
    timemap = tk.renderToTimemap({"includeMeasures": True})
    follow = engraved_follow(tk, timemap) if svg_pages and config.follow else None
    tracks = _midi_track_notes(midi)
    parts = _parts(musicxml, tracks)
    notes = sum(tracks)
    if notes == 0:
        raise AbcError("the ABC has no notes that sound: " + ("; ".join(warnings[:3]) or "only rests"))
    problems = _problems(report, parts, warnings, instruments)
    return RenderResult(
        abc=abc_text, musicxml=musicxml, svg_pages=svg_pages, midi=midi, timemap=timemap, pdf=None, follow=follow,
        parts=parts, notes=notes, written_notes=count_svg_notes(svg_pages), pages=pages,
        seconds=midi_seconds(midi), report=report, warnings=warnings,
        partial=bool(problems), problems=problems,
    )


def _body_text(abc_text: str) -> str:
    """The tune body without fields, comments, voice tags, decorations and quoted text."""
    body = []
    for line in abc_text.split("\n"):
        if re.match(r"^([A-Za-z]:|%)", line):
            continue
        line = re.sub(r"\[[A-Za-z]:[^\]]*\]|![^!]*!|\"[^\"]*\"|%.*$", "", line)
        body.append(line)
    return "\n".join(body)


def _problems(report: PieceReport, parts: list[PartInfo], warnings: list[str],
              instruments: list[Instrument]) -> list[str]:
    problems = list(report.findings)
    measures = {p.measures for p in parts}
    if len(measures) > 1:
        problems.append("parts have different numbers of measures in the score: "
                        + ", ".join(f"{p.name or 'part'} {p.measures}" for p in parts))
    dropped = [w.strip() for w in warnings if w.lstrip("-* ").startswith(("misplaced symbol", "skipped"))]
    if dropped:
        problems.append(f"abc2xml dropped {len(dropped)} thing(s) it could not read: " + "; ".join(dropped[:5]))
    if len({i.channel for i in instruments}) < len({(i.channel, i.program) for i in instruments}):
        problems.append("more than 15 instruments: some share a MIDI channel with a different program")
    return problems


def _parts(musicxml: str, tracks: list[int]) -> list[PartInfo]:
    """Each score part, with its sounding notes from `tracks` (per MIDI track, see _midi_track_notes)."""
    try:
        root = ET.fromstring(musicxml)
    except ET.ParseError as e:
        raise RenderError(f"abc2xml wrote MusicXML that does not parse ({e})") from None
    parts = []
    track = 0
    for score_part in root.iter("score-part"):
        part_id = score_part.get("id")
        part = root.find(f"part[@id='{part_id}']")
        staves = int(part.findtext("measure/attributes/staves") or 1) if part is not None else 1
        notes = sum(tracks[track:track + staves])  # Verovio writes one track per staff
        track += staves
        channel = score_part.findtext("midi-instrument/midi-channel")
        program = score_part.findtext("midi-instrument/midi-program")
        program_number = int(program) - 1 if program else DEFAULT_PROGRAM  # MusicXML counts from 1
        parts.append(PartInfo(
            name=clean_part_name(score_part.findtext("part-name") or ""),
            channel=int(channel) if channel else 1,
            program=program_number,
            instrument=GM_NAMES.get(program_number, f"program {program_number}"),
            notes=notes,
            measures=len(part.findall("measure")) if part is not None else 0,
        ))
    return parts


def _midi_track_notes(midi: bytes) -> list[int]:
    """Sounding notes per track, without the leading tempo track Verovio writes."""
    mf = mido.MidiFile(file=io.BytesIO(midi))
    counts = [sum(1 for m in t if m.type == "note_on" and m.velocity > 0) for t in mf.tracks]
    return counts[1:] if len(counts) > 1 else counts


def midi_seconds(midi: bytes) -> float:
    return float(mido.MidiFile(file=io.BytesIO(midi)).length)


def count_svg_notes(svg_pages: list[str]) -> int:
    """Engraved note heads: Verovio's `<g class="note">` elements."""
    return sum(len(re.findall(r'class="note[ "]', page)) for page in svg_pages)
