"""A vector PDF of Verovio's SVG pages (svglib + reportlab, pip-only)."""
from __future__ import annotations

import io
import re

from reportlab.graphics import renderPDF
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas
from svglib.svglib import svg2rlg

from pipelines.errors import RenderError


def score_pdf(svg_pages: list[str]) -> bytes:
    """A vector PDF of Verovio's SVG pages, one A4 page each (svglib + reportlab, pip-only)."""
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
