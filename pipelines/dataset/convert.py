"""Scores in, standard ABC out: read a score file as MusicXML and run abctoolkit's xml2abc on it in-process.

MusicXML (.xml, .musicxml, .mxl) is read as is. Other formats music21 reads
(Humdrum .krn, MEI, ABC, MIDI, ...) are parsed by music21 and written as MusicXML
first; that is lossy (MIDI has no spelling, voices or layout; Humdrum and ABC lose
some notation), so such files are marked `lossy` in the build report.
xml2abc runs with upstream NotaGen's options: unit length L:1/8 (`-d 8`), credit
text filter 6 (`-c 6`), no line breaks (`-x`).
"""
from __future__ import annotations

import contextlib
import io
import posixpath
import re
import types
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import DatasetError
from pipelines.files import read_text

MUSICXML_SUFFIXES = (".xml", ".musicxml", ".mxl")
# Other formats music21 reads; they go through music21 to MusicXML first (lossy).
MUSIC21_SUFFIXES = (".krn", ".mei", ".abc", ".mid", ".midi")
SCORE_SUFFIXES = MUSICXML_SUFFIXES + MUSIC21_SUFFIXES


class StageError(DatasetError):
    """One stage of one file failed; `stage` and `reason` go into the build report."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class ScoreXml:
    data: bytes  # MusicXML document bytes
    lossy: bool  # converted through music21 from another format


def _mxl_root(archive: zipfile.ZipFile, path: Path) -> str:
    """The MusicXML file inside a compressed .mxl: the container's rootfile, else the first .xml/.musicxml."""
    names = archive.namelist()
    if "META-INF/container.xml" in names:
        container = ET.fromstring(archive.read("META-INF/container.xml"))
        for element in container.iter():
            if element.tag.rsplit("}", 1)[-1] == "rootfile" and element.get("full-path"):
                full = posixpath.normpath(element.get("full-path"))
                if full in names:
                    return full
    for name in names:
        if not name.startswith("META") and name.lower().endswith((".xml", ".musicxml")):
            return name
    raise StageError("read", f"{path.name} is a zip without a MusicXML file inside")


def read_musicxml(path: Path) -> ScoreXml:
    """The score at `path` as MusicXML bytes."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".mxl":
            try:
                with zipfile.ZipFile(path) as archive:
                    return ScoreXml(archive.read(_mxl_root(archive, path)), lossy=False)
            except (zipfile.BadZipFile, ET.ParseError) as e:
                raise StageError("read", f"{path.name} is not a readable .mxl archive ({e})") from None
        if suffix in (".xml", ".musicxml"):
            return ScoreXml(path.read_bytes(), lossy=False)
    except OSError as e:
        raise StageError("read", f"cannot read {path.name}: {e.strerror or e}") from None
    return ScoreXml(_music21_to_musicxml(path), lossy=True)


FORMAT_NAMES = {".abc": "ABC notation", ".krn": "Humdrum (**kern)", ".mei": "MEI", ".mid": "MIDI", ".midi": "MIDI"}


def unreadable(path: Path, error: Exception) -> str:
    """Why music21 could not read a score file, in a short sentence naming the file (not music21's internals)."""
    what = FORMAT_NAMES.get(path.suffix.lower(), "a score")
    if path.suffix.lower() == ".abc":
        try:
            text = read_text(path, errors="replace")
        except OSError as e:
            return f"cannot read {path.name}: {e.strerror or e}"
        if not re.search(r"^K:", text, re.MULTILINE):
            return f"{path.name} is not ABC notation: it has no K: (key) line, so it holds no tune"
    detail = re.sub(r"<music21[^>]*>", "", str(error).splitlines()[0] if str(error).strip() else "")
    detail = re.sub(r"\s+", " ", detail).strip(" .:,")
    if len(detail) > 80:
        detail = detail[:77].rstrip() + "..."
    return f"{path.name} is not readable {what}" + (f" ({detail})" if detail else "")


def _music21_to_musicxml(path: Path) -> bytes:
    import music21  # slow to import; only needed for non-MusicXML input
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        parsed = music21.converter.parse(str(path))
    except Exception as e:  # music21 raises many types for unreadable input
        raise StageError("import", unreadable(path, e)) from None
    if isinstance(parsed, music21.stream.Opus):
        scores = list(parsed.scores)
        if len(scores) != 1:
            raise StageError("import", f"{path.name} holds {len(scores)} tunes; split it into one file per tune")
        parsed = scores[0]
    try:
        return GeneralObjectExporter(parsed).parse()
    except Exception as e:
        raise StageError("import", f"music21 cannot write {path.name} as MusicXML: {type(e).__name__}: {e}") from None


def _xml2abc_options():
    """The option set xml2abc's command line would build for `-d 8 -c 6 -x`."""
    return types.SimpleNamespace(u=False, m=0, c=6, d=8, n=0, b=0, o="", v=0, x=True, p=[], j=False, t=False,
                                 s=False, v1=False, ped=True, stm=False, i=False)


def xml_to_abc(xml: bytes, name: str = "score") -> str:
    """Standard ABC of a MusicXML document, exactly as `xml2abc.py -d 8 -c 6 -x` prints it.

    xml2abc keeps its output object in a module global, so calls must not overlap
    within one process (the build runs one file at a time per worker process).
    """
    from abctoolkit import xml2abc

    options = _xml2abc_options()
    output = xml2abc.ABCoutput(name + ".abc", "", 0, options)
    buffer = io.StringIO()
    output.outfile = buffer
    xml2abc.abcOut = output
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            xml2abc.Parser(options).parse(io.BytesIO(xml))
    except ET.ParseError as e:
        raise StageError("xml2abc", f"not well-formed MusicXML ({e})") from None
    except Exception as e:  # xml2abc raises anything from deep inside its parser
        raise StageError("xml2abc", f"xml2abc failed: {type(e).__name__}: {e}") from None
    finally:
        xml2abc.abcOut = None
    text = buffer.getvalue()
    if not text.strip():
        said = " ".join(line.strip("- ") for line in messages.getvalue().splitlines() if line.strip())
        raise StageError("xml2abc", "xml2abc produced nothing" + (f" ({said})" if said else ""))
    return text
