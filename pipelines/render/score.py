"""Score, MIDI, timemap and PDF of a piece, from its ABC text; and the export of a piece's files.

The route is ABC -> MusicXML with abctoolkit's `abc2xml` (in-process) -> Verovio, which
engraves SVG pages and writes the MIDI and a timemap from that MusicXML. Verovio's own ABC
reader keeps only the first voice, hence the MusicXML step.

Each part gets its own MIDI channel and a General MIDI program chosen from its instrument
name: `%%MIDI channel` / `%%MIDI program` lines go after each voice's `V:` line, abc2xml
turns them into `<midi-instrument>` (so MuseScore, Sibelius, Dorico and DAWs see them
too), and Verovio's MIDI follows them. Without them every part is piano on channel 1.

abc2xml keeps its parser state in module globals and reports on stderr, so calls are
serialised by a lock, and its messages are taken by rebinding its own `info` function
for the length of one call (never by swapping sys.stderr, which would leak across
threads). Each library call runs under a time limit so a pathological input cannot hang
the caller.
"""
from __future__ import annotations

import base64
import io
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mido
import verovio
from abctoolkit import abc2xml

from pipelines.abc.report import PieceReport, clean_part_name, clean_voice_names, report_piece, voice_definition
from pipelines.errors import AbcError, NotaGenError, RenderError
from pipelines.files import atomic_write_bytes, atomic_write_text

# (pattern searched in the lower-cased part name, General MIDI program 0-127); the first
# match wins, so compound names come before the words they contain ("bassoon" before
# "bass", "alto saxophone" before "alto", "english horn" before "horn").
GM_PROGRAMS: tuple[tuple[str, int], ...] = (
    (r"contrabass|double ?bass|kontrabass|contrebasse|violone", 43),
    (r"violoncell|cello", 42),
    (r"viola(?! da)", 41),
    (r"violin|violino|violon\b|fiddle|vln", 40),
    (r"bassoon|fagott|basson", 70),
    (r"english horn|cor anglais|corno inglese|englischhorn", 69),
    (r"sax", 65),
    (r"piccolo", 72),
    (r"recorder|blockfl", 74),
    (r"flute|flauto|fl[öo]te|traverso", 73),
    (r"oboe|hautbois", 68),
    (r"clarinet|clarinetto|klarinette", 71),
    (r"trombone|posaune", 57),
    (r"tuba", 58),
    (r"trumpet|tromba|trompete|cornet", 56),
    (r"horn|corno|\bcor\b", 60),
    (r"timpani|timpano|pauken", 47),
    (r"harpsichord|cembalo|clavecin", 6),
    (r"organ|orgel|organo", 19),
    (r"harp|arpa|harfe", 46),
    (r"guitar|gitarre|chitarra|lute|mandolin", 24),
    (r"celesta", 8),
    (r"glockenspiel", 9),
    (r"vibraphone", 11),
    (r"marimba", 12),
    (r"xylophone", 13),
    (r"piano|klavier|keyboard|clavier", 0),
    (r"string|viola da gamba", 48),
    (r"choir|chorus|coro\b|chor\b|soprano|mezzo|alto|contralto|tenor|baritone|bass", 52),
    (r"voice|vocal|voce|singstimme|canto|stimme", 53),
)
DEFAULT_PROGRAM = 0  # an unknown or missing instrument name plays as piano

# A second named violin part plays General MIDI's other solo violin sound (Fiddle), so a
# quartet's four parts have four programs: told apart by ear and in a DAW's track list.
# Other repeated instruments (a choir's voices, two horns) keep one program each.
SECOND_CHAIR: dict[int, int] = {40: 110}

GM_NAMES = {
    0: "Acoustic Grand Piano", 6: "Harpsichord", 8: "Celesta", 9: "Glockenspiel", 11: "Vibraphone",
    12: "Marimba", 13: "Xylophone", 19: "Church Organ", 24: "Acoustic Guitar (nylon)", 40: "Violin",
    41: "Viola", 42: "Cello", 43: "Contrabass", 46: "Orchestral Harp", 47: "Timpani", 48: "String Ensemble 1",
    52: "Choir Aahs", 53: "Voice Oohs", 56: "Trumpet", 57: "Trombone", 58: "Tuba", 60: "French Horn",
    65: "Alto Sax", 68: "Oboe", 69: "English Horn", 70: "Bassoon", 71: "Clarinet", 72: "Piccolo",
    73: "Flute", 74: "Recorder", 110: "Fiddle",
}
# MIDI channels 1-16 as ABC numbers them; 10 is General MIDI percussion.
MELODIC_CHANNELS = tuple(c for c in range(1, 17) if c != 10)

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
    time_limit_s: float = 60.0  # per library call (abc2xml, Verovio); the PDF gets 5 s more a page


@dataclass
class Instrument:
    voice: str  # ABC voice id
    name: str  # the voice's nm="..." (cleaned); "" when it has none
    channel: int  # 1-16, as ABC and MusicXML number them
    program: int  # General MIDI 0-127

    @property
    def gm_name(self) -> str:
        return GM_NAMES.get(self.program, f"program {self.program}")


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
    timemap: list[dict]  # Verovio's: {tstamp (ms), qstamp, on: [svg note ids], off: [...], tempo}
    pdf: bytes | None
    parts: list[PartInfo]
    notes: int  # sounding notes in the MIDI (a tie joins notes into one)
    written_notes: int  # note heads engraved in the SVG (tied notes count separately)
    pages: int
    seconds: float  # length of the MIDI; Verovio plays repeats, so this can exceed report.seconds
    report: PieceReport
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


def choose_program(name: str) -> int:
    """The General MIDI program for a part called `name` (Violin -> 40, Soprano -> 52, ...)."""
    lowered = clean_part_name(name).lower()
    for pattern, program in GM_PROGRAMS:
        if re.search(pattern, lowered):
            return program
    return DEFAULT_PROGRAM


def assign_instruments(abc_text: str) -> tuple[str, list[Instrument]]:
    """`abc_text` with a MIDI channel and program after each voice definition (and its part
    names cleaned), and what was chosen.

    A voice without a name (the second voice of a piano staff, say) continues the instrument
    of the voice before it, on the same channel. Instruments beyond fifteen share a channel,
    preferably with one of the same program. A voice that already has `%%MIDI program` is kept.
    """
    lines = abc_text.split("\n")
    out: list[str] = []
    instruments: list[Instrument] = []
    seen: set[str] = set()
    for i, line in enumerate(lines):
        found = voice_definition(line)
        if found:  # names like "\\n\t\t:Violin 1" (left by some MusicXML exports) would be engraved as they are
            line = clean_voice_names(line)
        out.append(line)
        if not found or found[0] in seen:
            continue
        voice, name = found
        seen.add(voice)
        if not name and instruments:
            channel, program = instruments[-1].channel, instruments[-1].program
        else:
            program = choose_program(name)
            if program in SECOND_CHAIR and any(inst.program == program for inst in instruments if inst.name):
                program = SECOND_CHAIR[program]
            channel = _free_channel(instruments, program)
        own = _own_midi_program(lines[i + 1:])
        if own is not None:
            instruments.append(Instrument(voice, name, channel, own))
            continue
        out.append(f"%%MIDI channel {channel}")
        out.append(f"%%MIDI program {program}")
        instruments.append(Instrument(voice, name, channel, program))
    return "\n".join(out), instruments


def _own_midi_program(following: list[str]) -> int | None:
    """The program of a `%%MIDI program P` among the directive lines right after a voice definition."""
    for line in following:
        if not line.startswith("%"):
            return None
        m = re.match(r"%%MIDI\s+program\s+(?:\d+\s+)?(\d+)", line)
        if m:
            return int(m.group(1))
    return None


def _free_channel(instruments: list[Instrument], program: int) -> int:
    used = [inst.channel for inst in instruments]
    for channel in MELODIC_CHANNELS:
        if channel not in used:
            return channel
    same = [inst.channel for inst in instruments if inst.program == program]
    if same:
        return same[0]
    return MELODIC_CHANNELS[len(set(used)) % len(MELODIC_CHANNELS)]


def abc_to_musicxml(abc_text: str, time_limit_s: float = 60.0) -> tuple[str, list[str]]:
    """MusicXML of the first tune in `abc_text`, and abc2xml's messages about it.

    Raises AbcError when abc2xml cannot read the tune (its syntax error is in the message),
    RenderError when it takes longer than `time_limit_s`.
    """
    if not abc_text.strip():
        raise AbcError("the ABC text is empty")
    deadline = time.monotonic() + time_limit_s

    def convert() -> tuple[list, list[str]]:
        if not _ABC2XML_LOCK.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RenderError(f"the ABC converter is still busy after {time_limit_s:g} s "
                              "(an earlier piece that timed out may still hold it)")
        messages: list[str] = []
        try:
            own_info = abc2xml.info
            abc2xml.info = lambda text, warn=1: messages.append(str(text))
            try:
                docs = abc2xml.getXmlDocs(abc_text)
            finally:
                abc2xml.info = own_info
        finally:
            _ABC2XML_LOCK.release()
        return docs, messages

    docs, messages = call_with_time_limit(convert, time_limit_s, "converting the ABC to MusicXML")
    messages = [m for m in messages if not m.startswith(_BENIGN_ABC2XML)]
    if not docs:
        detail = "; ".join(m.strip() for m in messages[-3:]) or "no tune found"
        raise AbcError(f"abc2xml cannot read this ABC: {detail}")
    return abc2xml.fixDoctype(docs[0]), messages


def call_with_time_limit(work: Callable[[], object], seconds: float, what: str):
    """`work()` in a helper thread; RenderError if it has not returned after `seconds`.

    A thread that overruns is left to finish on its own (Python cannot stop it); the caller
    gets its answer on time either way.
    """
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as e:  # handed to the caller below, not swallowed
            outcome["error"] = e

    thread = threading.Thread(target=run, name=f"notagen-render: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise RenderError(f"{what} took longer than {seconds:g} s; the ABC is probably malformed")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def new_toolkit(config: RenderConfig) -> verovio.toolkit:
    """A Verovio toolkit that finds its fonts in any thread (Gradio runs handlers in workers)."""
    tk = verovio.toolkit(False)
    tk.setResourcePath(str(Path(verovio.__file__).parent / "data"))
    tk.setOptions({
        "inputFrom": "musicxml",
        "pageWidth": config.page_width, "pageHeight": config.page_height, "scale": config.scale,
        "footer": "none", "header": "auto", "breaks": "auto",
    })
    return tk


def render_abc(abc_text: str, config: RenderConfig | None = None,
               on_progress: Callable[[int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> RenderResult:
    """Engrave a piece, write its MIDI and timemap, and report on it. Raises AbcError / RenderError; faults that still
    leave a score (a missing voice, bars of unequal length, dropped symbols) give a result
    with `partial=True` and the reasons in `problems`."""
    config = config or RenderConfig()
    abc_text = abc_text.replace("\r\n", "\n").replace("\r", "\n")  # files saved on Windows
    total = 5
    progress = on_progress or (lambda done, total: None)

    def step(done: int) -> None:
        if should_stop and should_stop():
            raise RenderError("rendering was stopped")
        progress(done, total)

    report = report_piece(abc_text)
    if not _HAS_NOTES.search(_body_text(abc_text)):
        raise AbcError("the ABC has no notes: its tune body is empty or only rests")
    abc_midi, instruments = assign_instruments(abc_text)
    step(0)
    musicxml, warnings = abc_to_musicxml(abc_midi, config.time_limit_s)
    step(1)

    def engrave():
        tk = new_toolkit(config)
        if not tk.loadData(musicxml):
            raise RenderError("Verovio cannot read the MusicXML that abc2xml wrote")
        pages = tk.getPageCount()
        svgs = [tk.renderToSVG(p) for p in range(1, pages + 1)] if config.svg else []
        midi = base64.b64decode(tk.renderToMIDI())
        timemap = tk.renderToTimemap()
        return pages, svgs, midi, timemap

    pages, svg_pages, midi, timemap = call_with_time_limit(engrave, config.time_limit_s, "engraving the score")
    step(3)
    tracks = _midi_track_notes(midi)
    parts = _parts(musicxml, tracks)
    notes = sum(tracks)
    if notes == 0:
        raise AbcError("the ABC has no notes that sound: " + ("; ".join(warnings[:3]) or "only rests"))
    pdf = None
    if config.pdf and svg_pages:
        limit = config.time_limit_s + 5.0 * len(svg_pages)  # svglib takes 1-2 s a page
        pdf = call_with_time_limit(lambda: score_pdf(svg_pages), limit, "writing the PDF")
    step(4)

    problems = _problems(report, parts, warnings, instruments)
    result = RenderResult(
        abc=abc_text, musicxml=musicxml, svg_pages=svg_pages, midi=midi, timemap=timemap, pdf=pdf,
        parts=parts, notes=notes, written_notes=count_svg_notes(svg_pages), pages=pages,
        seconds=midi_seconds(midi), report=report, warnings=warnings,
        partial=bool(problems), problems=problems,
    )
    step(5)
    return result


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


def score_pdf(svg_pages: list[str]) -> bytes:
    """A vector PDF of Verovio's SVG pages, one A4 page each (svglib + reportlab, pip-only)."""
    from reportlab.graphics import renderPDF
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas
    from svglib.svglib import svg2rlg

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    for number, svg in enumerate(svg_pages, 1):
        drawing = svg2rlg(io.StringIO(svg_for_pdf(svg)))
        if drawing is None:
            raise RenderError(f"page {number} of the score could not be converted to PDF")
        factor = min(A4[0] / drawing.width, A4[1] / drawing.height)
        drawing.scale(factor, factor)
        renderPDF.draw(drawing, pdf, 0, A4[1] - drawing.height * factor)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def svg_for_pdf(svg: str) -> str:
    """Verovio's page as svglib draws it right.

    svglib shrinks the nested `<svg viewBox>` Verovio wraps the page in (its px -> pt factor is
    applied twice), so the nested svg becomes a scaled group. Music-font text (the note in a
    metronome mark) is dropped: PDF's standard fonts have no such glyphs and would print a box.
    """
    outer = re.search(r'<svg[^>]*?\bwidth="([\d.]+)px"', svg)
    inner = re.search(r'<svg class="definition-scale"([^>]*?) viewBox="0 0 (\d+) (\d+)"', svg)
    if outer and inner:
        factor = float(outer.group(1)) / float(inner.group(2))
        svg = svg[:inner.start()] + f'<g class="definition-scale"{inner.group(1)} transform="scale({factor:.6f})"' \
            + svg[inner.end():]
        close = svg.index("</svg>", inner.start())
        svg = svg[:close] + "</g>" + svg[close + len("</svg>"):]
    return re.sub(r"<text\b[^>]*>(?:(?!</text>).)*font-family=\"Leipzig\"(?:(?!</text>).)*</text>",
                  _text_without_music_font, svg, flags=re.S)


# SMuFL metronome-mark note glyphs, as words for the PDF's standard fonts
_METRONOME_NOTES = {
    "\ueca0": "breve", "\ueca2": "whole", "\ueca3": "half", "\ueca4": "half", "\ueca5": "quarter",
    "\ueca6": "quarter", "\ueca7": "eighth", "\ueca8": "eighth", "\ueca9": "16th", "\uecaa": "16th",
    "\uecab": "32nd", "\uecac": "32nd",
}
_METRONOME_DOT = "\uecb7"


def _text_without_music_font(match: re.Match) -> str:
    """One `<text>` whose music-font glyphs become words ("quarter = 96"), as a single run.

    svglib draws sibling `<tspan>`s without x on top of each other, so the run is flattened too.
    """
    element = match.group(0)
    opening = re.match(r"<text\b[^>]*>", element).group(0)
    words, size = [], None
    for attributes, content in re.findall(r"<tspan\b([^>]*)>([^<]*)</tspan>", element):
        if 'font-family="Leipzig"' in attributes:
            note = next((_METRONOME_NOTES[c] for c in content if c in _METRONOME_NOTES), "")
            if _METRONOME_DOT in content:
                if note:
                    note = "dotted " + note
                elif words:
                    words[-1] = "dotted " + words[-1]
            if note:
                words.append(note)
        else:
            words.append(content)
            found = re.search(r'font-size="([^"]+)"', attributes)
            size = size or (found.group(1) if found else None)
    text = re.sub(r"\s+", " ", "".join(words)).strip()
    size_attribute = f' font-size="{size}"' if size else ""
    return f"{opening}<tspan{size_attribute}>{text}</tspan></text>"


@dataclass
class ExportedPiece:
    folder: Path
    files: dict[str, Path]  # "abc", "musicxml", "mid", "pdf", "wav" -> path written


def export_piece(result: RenderResult, folder: str | Path, stem: str, wav: bytes | None = None) -> ExportedPiece:
    """Write `stem`.abc, .musicxml, .mid, .pdf (and .wav when given) into `folder`, each atomically."""
    if not stem or Path(stem).name != stem or stem in (".", ".."):
        raise NotaGenError(f"{stem!r}: a file name without folders is needed to export a piece")
    folder = Path(folder)
    files = {
        "abc": atomic_write_text(folder / f"{stem}.abc", result.abc if result.abc.endswith("\n") else result.abc + "\n"),
        "musicxml": atomic_write_text(folder / f"{stem}.musicxml", result.musicxml),
        "mid": atomic_write_bytes(folder / f"{stem}.mid", result.midi),
    }
    if result.pdf is not None:
        files["pdf"] = atomic_write_bytes(folder / f"{stem}.pdf", result.pdf)
    if wav is not None:
        files["wav"] = atomic_write_bytes(folder / f"{stem}.wav", wav)
    return ExportedPiece(folder=folder, files=files)
