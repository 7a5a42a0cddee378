"""Period / composer / instrumentation of each piece: suggested from the score, checked against NotaGen-X.

The suggestion reads the MusicXML: the composer from `<creator type="composer">`
(written "Last, First", matched to NotaGen-X's spelling where the surname and
initial agree), the period from the composer where NotaGen-X knows them, and the
instrumentation from the part names (one keyboard part -> Keyboard, SATB voices ->
Choral, a string quartet or other small ensemble -> Chamber, ten or more
instruments or winds with strings -> Orchestral, a voice with piano -> Art Song,
voices with instruments -> Vocal-Orchestral). Values given by the user win; what
is still unknown becomes "Unknown" with a warning, to be fixed by re-annotating.
"""
from __future__ import annotations

import csv
import functools
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from unidecode import unidecode

from pipelines.abc.prompts import Prompt, read_prompts
from pipelines.errors import DatasetError
from pipelines.files import read_text
from pipelines.model.registry import NOTAGENX_PROMPTS

UNKNOWN = "Unknown"

_KEYBOARD = ("piano", "pianoforte", "fortepiano", "klavier", "clavier", "harpsichord", "cembalo", "clavichord",
             "organ", "orgel", "organo", "keyboard", "celesta", "pno")
_VOICE = ("soprano", "sopran", "mezzo", "alto", "contralto", "tenor", "tenore", "baritone", "bariton", "voice",
          "vocal", "voce", "vox", "canto", "cantus", "altus", "bassus", "basso", "choir", "chorus", "coro", "chor",
          "singstimme", "gesang", "stimme", "quinto", "triplum", "motetus", "contratenor", "sop", "ten", "bar")
_WIND = ("flute", "flauto", "piccolo", "oboe", "clarinet", "klarinette", "bassoon", "fagott", "horn", "corno",
         "trumpet", "tromba", "trombone", "tuba", "cornet", "saxophone", "recorder", "timpani", "percussion", "drum")
_AMBIGUOUS_BASS = ("bass", "b")  # a singer in a choir, a double bass in an orchestra


@dataclass(frozen=True)
class Labels:
    """Values a user gave; None where the score's suggestion (or Unknown) should be used."""
    period: str | None = None
    composer: str | None = None
    instrumentation: str | None = None

    def over(self, other: "Labels") -> "Labels":
        """These labels, falling back to `other` where unset."""
        return Labels(self.period or other.period, self.composer or other.composer,
                      self.instrumentation or other.instrumentation)


@dataclass
class ScoreInfo:
    """What the MusicXML says about itself, for suggestions."""
    title: str = ""
    composer: str = ""
    parts: list[str] = field(default_factory=list)  # part names (instrument names where a part has none)


@dataclass
class Annotation:
    prompt: Prompt
    suggested: Labels
    warnings: list[str]


@dataclass(frozen=True)
class Vocabulary:
    prompts: frozenset[Prompt]

    @property
    def periods(self) -> set[str]:
        return {p.period for p in self.prompts}

    @property
    def composers(self) -> set[str]:
        return {p.composer for p in self.prompts}

    @property
    def instrumentations(self) -> set[str]:
        return {p.instrumentation for p in self.prompts}

    def period_of(self, composer: str) -> str | None:
        periods = {p.period for p in self.prompts if p.composer == composer}
        return periods.pop() if len(periods) == 1 else None


@functools.cache
def notagenx_vocabulary() -> Vocabulary:
    """NotaGen-X's 112 official prompts (the repository's prompts.txt)."""
    if not NOTAGENX_PROMPTS.is_file():
        raise DatasetError(f"{NOTAGENX_PROMPTS}: NotaGen-X's prompt list is missing from the installation")
    return Vocabulary(frozenset(read_prompts(NOTAGENX_PROMPTS)))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_score_info(xml: bytes) -> ScoreInfo:
    """Title, composer and part names from a MusicXML document's header (its notes are not read)."""
    info = ScoreInfo()
    names: dict[str, str] = {}
    try:
        for _, element in ET.iterparse(io.BytesIO(xml), events=("end",)):
            tag = _local(element.tag)
            if tag == "creator" and element.get("type") == "composer" and not info.composer:
                info.composer = " ".join((element.text or "").split())
            elif tag in ("work-title", "movement-title") and not info.title:
                info.title = " ".join((element.text or "").split())
            elif tag == "score-part":
                name = " ".join((element.findtext("part-name") or "").split())
                if not name or name.lower() == "musicxml part":
                    name = " ".join((element.findtext("score-instrument/instrument-name") or "").split())
                names[element.get("id", str(len(names)))] = name
            elif tag == "part-list":
                break
    except ET.ParseError:
        pass  # the converter reports malformed MusicXML with its position; a suggestion is only a suggestion
    info.parts = list(names.values())
    return info


def _words(name: str) -> list[str]:
    return re.findall(r"[a-z]+", unidecode(name).lower())


def classify_part(name: str) -> str:
    """'keyboard', 'voice', 'wind', 'string', 'bass' (either a singer or a double bass) or 'unknown'."""
    words = _words(name)
    if not words:
        return "unknown"
    if any(w in _KEYBOARD for w in words):
        return "keyboard"
    if any(w.startswith(("violin", "violino", "viola", "viol", "cello", "violoncell", "contrabass", "kontrabass",
                         "violone", "fiddle", "vln", "vla", "vc", "harp", "guitar", "lute", "mandolin")) for w in words):
        return "string"
    if "double" in words or "contra" in words:
        return "string"
    if any(w in _WIND or w.startswith(("flute", "clarinet", "trumpet", "trombone", "horn", "oboe", "bassoon"))
           for w in words):
        return "wind"
    if any(w in _VOICE for w in words) or words[0] in ("s", "a", "t"):
        return "voice"
    if words[0] in _AMBIGUOUS_BASS:
        return "bass"
    return "unknown"


def suggest_instrumentation(parts: list[str]) -> str | None:
    """NotaGen-X's instrumentation for a list of part names, or None when the names don't tell."""
    kinds = [classify_part(p) for p in parts]
    if not kinds or "unknown" in kinds:
        return None
    voices = kinds.count("voice")
    if kinds.count("bass"):
        if voices:
            voices += kinds.count("bass")
        kinds = ["voice" if k == "bass" and voices else "string" if k == "bass" else k for k in kinds]
    keyboards = kinds.count("keyboard")
    others = len(kinds) - voices - keyboards
    winds = kinds.count("wind")
    if voices == 0:
        if others == 0:
            return "Keyboard"
        if len(kinds) >= 10 or (winds >= 3 and kinds.count("string") >= 3):
            return "Orchestral"
        return "Chamber"
    if others:
        return "Vocal-Orchestral"
    if keyboards:
        return "Art Song" if voices <= 2 else "Choral"
    return "Choral" if voices >= 2 else None


def _initials(names: str) -> list[str]:
    return [w[0] for w in re.findall(r"[A-Za-z]+", names) if w[0].isupper()]


def normalise_composer(raw: str, vocabulary: Vocabulary | None = None) -> str | None:
    """A composer as "Last, First" in ASCII, in NotaGen-X's spelling where surname and first initial agree."""
    name = " ".join(unidecode(raw).replace("_", " ").split())
    name = re.sub(r"\s*\(.*?\)\s*", " ", name).strip()  # "(1291 - 1361)", "(Amy Beach)"
    if not name:
        return None
    vocabulary = vocabulary or notagenx_vocabulary()
    known = sorted(vocabulary.composers)
    if name in known:
        return name
    if "," in name:
        last, _, first = name.partition(",")
        last, first = last.strip(), first.strip()
    else:
        tokens = name.split(" ")
        last, first = tokens[-1], " ".join(tokens[:-1])
    matches = [c for c in known if c.partition(",")[0].lower() == last.lower()]
    given = _initials(first)
    if given:
        matches = [c for c in matches if _initials(c.partition(",")[2])[:1] == given[:1]]
    if len(matches) == 1:
        return matches[0]
    return f"{last}, {first}" if first else last


def clean_label(value: str | None, what: str) -> str | None:
    """A user's label in the header's form: ASCII, one line, no '_', trimmed, a composer as "Last, First"."""
    if value is None:
        return None
    value = " ".join(unidecode(str(value)).replace("_", " ").split())
    if not value:
        return None
    if what == "composer":
        return normalise_composer(value)
    return value


def clean_labels(labels: Labels) -> Labels:
    """Labels as the header needs them (see clean_label)."""
    return Labels(clean_label(labels.period, "period"), clean_label(labels.composer, "composer"),
                  clean_label(labels.instrumentation, "instrumentation"))


def suggest_labels(info: ScoreInfo, vocabulary: Vocabulary | None = None) -> Labels:
    vocabulary = vocabulary or notagenx_vocabulary()
    composer = normalise_composer(info.composer, vocabulary) if info.composer else None
    period = vocabulary.period_of(composer) if composer else None
    return Labels(period, composer, suggest_instrumentation(info.parts))


def vocabulary_warnings(prompt: Prompt, vocabulary: Vocabulary | None = None) -> list[str]:
    """What in a prompt NotaGen-X has not seen (fine-tuning can still teach it)."""
    vocabulary = vocabulary or notagenx_vocabulary()
    warnings = []
    for what, value, known in (("period", prompt.period, vocabulary.periods),
                               ("composer", prompt.composer, vocabulary.composers),
                               ("instrumentation", prompt.instrumentation, vocabulary.instrumentations)):
        if value == UNKNOWN:
            warnings.append(f"{what} unknown: set it with `notagen dataset annotate` (or the Annotate tab)")
        elif value not in known:
            shown = ", ".join(sorted(known)) if what != "composer" else f"{len(known)} composers"
            warnings.append(f"{what} {value!r} is outside NotaGen-X's vocabulary ({shown})")
    if not warnings and prompt not in vocabulary.prompts:
        warnings.append(f"{prompt.line!r} is not one of NotaGen-X's {len(vocabulary.prompts)} prompts")
    return warnings


def annotate(info: ScoreInfo, given: Labels, vocabulary: Vocabulary | None = None) -> Annotation:
    """The piece's prompt: the user's labels, else the score's suggestion, else Unknown; with warnings."""
    vocabulary = vocabulary or notagenx_vocabulary()
    suggested = suggest_labels(info, vocabulary)
    chosen = given.over(suggested)
    prompt = Prompt(chosen.period or UNKNOWN, chosen.composer or UNKNOWN, chosen.instrumentation or UNKNOWN)
    return Annotation(prompt, suggested, vocabulary_warnings(prompt, vocabulary))


def header_text(prompt: Prompt) -> str:
    return "".join(line + "\n" for line in prompt.header_lines())


def replace_header(text: str, prompt: Prompt, path: Path) -> str:
    """An augmented file's text with its four header lines replaced."""
    lines = text.split("\n", 4)
    if len(lines) < 5 or lines[3] != "%end" or not all(line.startswith("%") for line in lines[:3]):
        raise DatasetError(f"{path}: does not start with the four %Period / %Composer / %Instrumentation / %end lines")
    return header_text(prompt) + lines[4]


def read_labels_csv(path: Path) -> dict[str, Labels]:
    """Per-piece labels from a CSV with a header row: `file` (or `piece`), `period`, `composer`, `instrumentation`.

    `file` may be a piece name, a file name or a path as given to the build; an
    empty cell leaves that value to the score's suggestion.
    """
    path = Path(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such labels file") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    rows = csv.DictReader(text.splitlines())
    columns = {(c or "").strip().lower() for c in rows.fieldnames or []}
    key_column = "file" if "file" in columns else "piece" if "piece" in columns else None
    if key_column is None or not columns & {"period", "composer", "instrumentation"}:
        raise DatasetError(f"{path}: needs a header row with a 'file' (or 'piece') column and at least one of "
                           f"'period', 'composer', 'instrumentation'")
    labels = {}
    for n, row in enumerate(rows, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        name = row.get(key_column, "")
        if not name:
            raise DatasetError(f"{path}:{n}: the {key_column} cell is empty")
        labels[name] = Labels(clean_label(row.get("period"), "period"),
                              clean_label(row.get("composer"), "composer"),
                              clean_label(row.get("instrumentation"), "instrumentation"))
    return labels


def labels_for(labels: dict[str, Labels], piece: str, source: Path) -> Labels:
    """The CSV row for a piece: by piece name, file name, stem or path."""
    for key in (piece, source.name, source.stem, str(source)):
        if key in labels:
            return labels[key]
    for key, value in labels.items():
        if Path(key).name == source.name and (source.as_posix().endswith(Path(key).as_posix())):
            return value
    return Labels()
