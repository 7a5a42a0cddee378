"""Scorers: one feature vector per piece, compared by cosine similarity.

`Scorer.features(abc_texts) -> (N, D)` is the one interface. A generated piece's score
is the cosine similarity of its features to the mean features of the reference pieces
(NotaGen's CLaMP 2 score), and its plagiarism measure the highest similarity to any
single reference piece.

`BuiltinScorer` (the default, no download) reads the ABC text itself and describes a
piece with jSymbolic-style histograms: pitch classes relative to the key, melodic
intervals, pitch-class transitions, note lengths, register and texture (voices,
chords, rests, notes per bar). Each histogram is normalised and square-rooted, so the
cosine of two pieces is a weighted mean of the Bhattacharyya coefficients of their
histograms. `Clamp2Scorer` (clamp2.py) uses the official CLaMP 2 music encoder.
"""
from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from fractions import Fraction

import torch
import torch.nn.functional as F

from pipelines.abc.tokenizer import STREAM_PREFIX
from pipelines.errors import TrainingError
from pipelines.training.data import PITCH_CLASS, major_key

_QUOTED = re.compile(r'"[^"]*"')
_DECORATION = re.compile(r"![^!\n]*!|\+[^+\s]*\+")
_GRACE = re.compile(r"\{[^}]*\}")
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:[^\]]*\]")
_VOICE_SEGMENT = re.compile(r"\[V:\s*([^\]\s]+)[^\]]*\]")
_TOKEN = re.compile(
    r"(?P<open>\[)|(?P<close>\])|"
    r"(?P<note>(?P<acc>\^\^|\^|__|_|=)?(?P<letter>[A-Ga-g])(?P<oct>[,']*)(?P<len>\d*/*\d*))|"
    r"(?P<rest>[zx](?P<rlen>\d*/*\d*))|(?P<bar>\|)")
_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARP_ORDER, _FLAT_ORDER = "FCGDAEB", "BEADGCF"
_SIGNATURES = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
               "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5, "Gb": -6, "Cb": -7}
_ACCIDENTALS = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}

# (block name, bins, weight in the cosine)
BLOCKS = (("pitch_class", 12, 1.0), ("interval", 25, 1.0), ("transition", 144, 1.0),
          ("duration", 13, 1.0), ("register", 15, 0.5), ("texture", 12, 0.5))


class Scorer(ABC):
    """Feature vectors of ABC pieces (interleaved, post-processed or dataset files)."""

    name: str = ""
    plagiarism_threshold: float = 0.95  # similarity to one reference piece above which a piece is a copy

    @abstractmethod
    def features(self, abc_texts: list[str]) -> torch.Tensor:
        """(N, D) float32 on the CPU."""


def scoring_text(abc: str) -> str:
    """What a scorer reads: no `X:` line, no single-% comment or header lines, no `[r:i/j]` prefixes."""
    lines = [STREAM_PREFIX.sub("", line) for line in abc.replace("\r\n", "\n").split("\n")]
    return "".join(line + "\n" for line in lines
                   if line.strip() and not line.startswith("X:")
                   and not (line.startswith("%") and not line.startswith("%%")))


def cosine_to_mean(features: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(N,) cosine similarity of each row to the mean reference feature."""
    return F.cosine_similarity(features, references.mean(dim=0, keepdim=True), dim=1)


def nearest_reference(features: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(highest similarity to one reference piece, its index), each (N,)."""
    sims = F.normalize(features, dim=1) @ F.normalize(references, dim=1).T  # (N, R)
    return sims.max(dim=1)


# ---------------------------------------------------------------- the built-in scorer

def _length(text: str) -> Fraction:
    """ABC note-length suffix -> multiple of L: '' 1, '2' 2, '/' 1/2, '//' 1/4, '3/2', '/4'."""
    if not text:
        return Fraction(1)
    m = re.fullmatch(r"(\d*)(/*)(\d*)", text)
    num = int(m.group(1)) if m.group(1) else 1
    slashes = len(m.group(2))
    if not slashes:
        return Fraction(num)
    den = int(m.group(3)) if m.group(3) else 2 ** slashes
    return Fraction(num, den) if den else Fraction(num)


def _header_field(lines: list[str], name: str) -> str | None:
    for line in lines:
        if line.startswith(name + ":"):
            return line[2:].strip()
    return None


def _key_signature(key_field: str | None) -> tuple[int, dict[str, int]]:
    """(tonic pitch class of the key signature's major key, letter -> alteration)."""
    token = (key_field or "C").split()[0] if (key_field or "").strip() else "C"
    try:
        major = major_key(token)
    except TrainingError:
        major = "C"  # K:none, K:HP and the like: read as no signature
    count = _SIGNATURES[major]
    order = _SHARP_ORDER if count > 0 else _FLAT_ORDER
    alter = {letter: (1 if count > 0 else -1) for letter in order[:abs(count)]}
    return PITCH_CLASS[major], alter


def _voices(lines: list[str]) -> dict[str, str]:
    """Voice id -> its music, from interleaved `[V:n]` lines (or V:n blocks of standard ABC)."""
    music: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if re.match(r"^[A-Za-z]:", line) or line.startswith("%"):
            m = re.match(r"^V:\s*(\S+)", line)
            if m:
                current = m.group(1)
            continue
        segments = _VOICE_SEGMENT.split(line)
        if len(segments) > 1:
            for i in range(1, len(segments) - 1, 2):
                music.setdefault(segments[i], []).append(segments[i + 1])
        elif current is not None:
            music.setdefault(current, []).append(line)
    return {v: " ".join(parts) for v, parts in music.items()}


def abc_features(abc: str) -> torch.Tensor:
    """The built-in scorer's feature vector of one piece (see BLOCKS)."""
    lines = [line for line in scoring_text(abc).split("\n") if line]
    unit = Fraction(_header_field(lines, "L") or "1/8") if re.fullmatch(r"\d+/\d+", _header_field(lines, "L") or "1/8") \
        else Fraction(1, 8)
    tonic, signature = _key_signature(_header_field(lines, "K"))
    blocks = {name: torch.zeros(bins) for name, bins, _ in BLOCKS}
    voices = _voices(lines)
    events = chords = rests = bars = 0
    for music in voices.values():
        music = _INLINE_FIELD.sub(" ", _GRACE.sub(" ", _DECORATION.sub(" ", _QUOTED.sub(" ", music))))
        accidentals: dict[tuple[str, int], int] = {}
        in_chord, chord, last_top = False, [], None
        voice_bars = 0
        for m in _TOKEN.finditer(music):
            if m.group("bar"):
                accidentals.clear()
                voice_bars += 1
            elif m.group("rest"):
                rests += 1
                events += 1
            elif m.group("open"):
                in_chord, chord = True, []
            elif m.group("close") and in_chord:
                in_chord = False
                if chord:
                    chords += len(chord) > 1
                    events += 1
                    last_top = _melodic(blocks, last_top, max(p for p, _ in chord), chord[0][1], unit, tonic)
            elif m.group("note"):
                letter, octave = m.group("letter"), m.group("oct")
                step = letter.upper()
                height = 60 + (12 if letter.islower() else 0) + 12 * octave.count("'") - 12 * octave.count(",")
                slot = (step, height)
                if m.group("acc"):
                    accidentals[slot] = _ACCIDENTALS[m.group("acc")]
                alter = accidentals.get(slot, signature.get(step, 0))
                pitch = height + _STEPS[step] + alter
                blocks["pitch_class"][(pitch - tonic) % 12] += 1
                blocks["register"][min(max((pitch - 24) // 6, 0), 14)] += 1
                length = _length(m.group("len"))
                if in_chord:
                    chord.append((pitch, length))
                else:
                    events += 1
                    last_top = _melodic(blocks, last_top, pitch, length, unit, tonic)
        bars = max(bars, voice_bars)
    n_voices = len(voices)
    texture = blocks["texture"]
    if n_voices:
        texture[min(n_voices, 8) - 1] = 1.0
        texture[8] = chords / max(events, 1)
        texture[9] = rests / max(events, 1)
        texture[10] = min(events / max(bars * n_voices, 1) / 16.0, 1.0)
        texture[11] = 1.0 - texture[8] - texture[9] if events else 0.0
    parts = []
    for name, _bins, weight in BLOCKS:
        block = blocks[name].clamp(min=0)
        total = block.sum()
        block = (block / total).sqrt() if total > 0 else block
        parts.append(block * math.sqrt(weight))
    return torch.cat(parts)


def _melodic(blocks: dict, last: int | None, pitch: int, length: Fraction, unit: Fraction, tonic: int) -> int:
    """Record one melodic event (its length, the interval and pitch-class step from the last); returns pitch."""
    whole = float(length * unit)
    if whole > 0:
        blocks["duration"][min(max(round(2 * math.log2(whole)) + 10, 0), 12)] += 1
    if last is not None:
        blocks["interval"][min(max(pitch - last, -12), 12) + 12] += 1
        blocks["transition"][((last - tonic) % 12) * 12 + (pitch - tonic) % 12] += 1
    return pitch


class BuiltinScorer(Scorer):
    """Histogram features read straight from the ABC text; fast, no download."""

    name = "builtin"
    # Different pieces of one style (two Bach chorales, two Classical quartets) measure
    # 0.84-0.97 on music21's corpus; a copy in another key measures 0.99-1.0.
    plagiarism_threshold = 0.985

    def features(self, abc_texts: list[str]) -> torch.Tensor:
        if not abc_texts:
            return torch.zeros(0, sum(bins for _, bins, _ in BLOCKS))
        return torch.stack([abc_features(t) for t in abc_texts])
