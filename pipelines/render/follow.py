"""What a score needs to follow its playback: where each note and bar sits on the engraved pages, and when
each note sounds.

Positions come from the same engraving drawn once more with Verovio's `svgBoundingBoxes` (a transparent
`<rect>` per element, in the page's own units, inside `g.page-margin`); times from Verovio's timemap,
which is in the milliseconds of the MIDI Verovio writes, and so of the WAV synthesised from it. A note
box is the note head; a bar box spans the staves of its system and the notes above and below them. The
result is plain JSON (see docs/render.md, "Following the score"):

    {"version": 1, "pages": 2,
     "notes": {"<svg id>": [page, x, y, w, h], ...},
     "bars":  [{"id": "<svg id>", "page": 0, "box": [x, y, w, h], "ms": 0}, ...],
     "spans": [[on_ms, off_ms, "<svg id>"], ...]}

Pages count from 0, boxes are fractions of the page's width and height, spans are sorted by onset; a
note played again by a repeat has a span per time it sounds, and a bar starts at its first playing.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from pipelines.errors import RenderError

FOLLOW_VERSION = 1
_SVG = "{http://www.w3.org/2000/svg}"
_TRANSLATE = re.compile(r"translate\(\s*([-\d.]+)[\s,]+([-\d.]+)\s*\)")
_RENDITION = re.compile(r"-rend\d+$")
Box = tuple[float, float, float, float]  # x, y, width, height in page units


def score_follow(layout_pages: list[str], timemap: list[dict]) -> dict:
    """The follow data of a piece from its pages drawn with `svgBoundingBoxes` and Verovio's timemap (rendered
    with `includeMeasures`); RenderError when a page is not Verovio's SVG."""
    notes: dict[str, list] = {}
    bars: list[dict] = []
    bar_ms = _bar_starts(timemap)
    for page, svg in enumerate(layout_pages):
        note_boxes, bar_boxes, size = _page_boxes(svg, page + 1)
        for note_id, box in note_boxes.items():
            notes[note_id] = [page, *_fraction(box, size)]
        for bar_id, box in bar_boxes.items():
            if bar_id in bar_ms:  # a bar no note starts in (all tied over or rests) is not a place to start from
                bars.append({"id": bar_id, "page": page, "box": _fraction(box, size), "ms": bar_ms[bar_id]})
    spans = [span for span in _note_spans(timemap) if span[2] in notes]
    return {"version": FOLLOW_VERSION, "pages": len(layout_pages), "notes": notes, "bars": bars, "spans": spans}


def _page_boxes(svg: str, number: int) -> tuple[dict[str, Box], dict[str, Box], Box]:
    """(note id -> box, bar id -> box, the page's viewBox) of one page, boxes in viewBox units."""
    try:
        root = ET.fromstring(svg)
    except ET.ParseError as e:
        raise RenderError(f"page {number} of the score is not SVG that parses ({e})") from None
    scale = next((g for g in root.iter(f"{_SVG}svg") if "definition-scale" in g.get("class", "")), None)
    margin = next((g for g in root.iter(f"{_SVG}g") if g.get("class") == "page-margin"), None)
    if scale is None or margin is None:
        raise RenderError(f"page {number} of the score has no Verovio page (definition-scale, page-margin)")
    view = tuple(float(v) for v in scale.get("viewBox", "").split())
    offset = _TRANSLATE.search(margin.get("transform", ""))
    if len(view) != 4 or view[2] <= 0 or view[3] <= 0 or offset is None:
        raise RenderError(f"page {number} of the score has no usable viewBox or page margin")
    dx, dy = float(offset.group(1)) - view[0], float(offset.group(2)) - view[1]
    boxes = {}  # element id -> its bounding box on the page
    for g in margin.iter(f"{_SVG}g"):
        rect = g.find(f"{_SVG}rect")
        if "bounding-box" in g.get("class", "") and g.get("id", "").startswith("bbox-") and rect is not None:
            x, y, w, h = (float(rect.get(k, 0)) for k in ("x", "y", "width", "height"))
            boxes[g.get("id")[5:]] = (x + dx, y + dy, w, h)
    notes = {}
    bars = {}
    for g in margin.iter(f"{_SVG}g"):
        kind, element_id = g.get("class", "").split(" ")[0], g.get("id")
        if kind == "note" and element_id in boxes:
            notes[element_id] = boxes[element_id]
        elif kind == "measure" and element_id:  # its staves, and its notes above or below them
            inner = [boxes[e.get("id")] for e in g.iter(f"{_SVG}g") if e.get("class", "").split(" ")[0]
                     in ("staff", "note") and e.get("id") in boxes]
            if inner:
                bars[element_id] = _union(inner)
    return notes, bars, (0.0, 0.0, view[2], view[3])


def _union(boxes: list[Box]) -> Box:
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return left, top, right - left, bottom - top


def _fraction(box: Box, size: Box) -> list[float]:
    """`box` in fractions of the page, 4 decimals (a tenth of a pixel where the page is shown 1000 pixels wide)."""
    x, y, w, h = box
    return [round(x / size[2], 4), round(y / size[3], 4), round(w / size[2], 4), round(h / size[3], 4)]


def engraved_id(timemap_id: str) -> str:
    """The id on the page of an element the timemap names: a repeat played again is `<id>-rend2`, -rend3..."""
    return _RENDITION.sub("", timemap_id)


def _bar_starts(timemap: list[dict]) -> dict[str, int]:
    """Bar id -> when it first starts to play (ms)."""
    starts: dict[str, int] = {}
    for entry in timemap:
        if "measureOn" in entry:
            starts.setdefault(engraved_id(entry["measureOn"]), int(round(entry["tstamp"])))
    return starts


def _note_spans(timemap: list[dict]) -> list[list]:
    """[on ms, off ms, note id] of every time a note sounds, by onset; a note never turned off ends with the
    piece."""
    sounding: dict[str, int] = {}
    spans = []
    end = 0
    for entry in timemap:
        at = int(round(entry["tstamp"]))
        end = max(end, at)
        for note_id in entry.get("off", []):
            if note_id in sounding:
                spans.append([sounding.pop(note_id), at, engraved_id(note_id)])
        for note_id in entry.get("on", []):
            sounding.setdefault(note_id, at)
    spans += [[on, end, engraved_id(note_id)] for note_id, on in sounding.items()]
    return sorted(spans, key=lambda span: (span[0], span[1]))
