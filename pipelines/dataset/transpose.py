"""Transpose a piece to all 15 key spellings at once, with exactly abctoolkit's result.

abctoolkit's `transpose_an_abc_text` reads a whole voice character by character
for every target key, and each note looks back through its bar; for the 15 keys
of the augmentation that is most of a build's time. The reading of a voice does
not depend on the target key: where its notes, chord symbols, key changes and
barlines are, and which pitch each note really has (key signature, earlier
accidentals in the bar). `VoiceReading` does that once; `VoiceReading.render`
then spells the voice in one target key with abctoolkit's own per-note functions
(`transpose_a_note`, `transpose_a_chordnote`, the key tables), in one pass.
The output equals abctoolkit's byte for byte (the fixture tests check all 15
keys of every fixture piece; benchmarks/dataset.py compares whole corpora), and
it fails where abctoolkit fails.
"""
from __future__ import annotations

import functools
import re

from abctoolkit import transpose as T
from abctoolkit.utils import extract_global_and_local_metadata, extract_metadata_and_parts

_SQUARE = re.compile(r"\[[^\]]+\]")
_QUOTE = re.compile(r'"[^"]+"')
_EXCLAIM = re.compile(r"![^!]+!")
_BARLINE = re.compile("|".join(re.escape(s) for s in ["|:", "::", ":|", "[|", "||", "|]", "|"]))
_CHORD_NOTE = re.compile(r"[A-G][b#]?")
_NOTE = re.compile(r"[=^_]*[A-Ga-g](?:\'*,*)")
_NOTE_PARTS = re.compile(r"([^A-Ga-g]*)([A-Ga-g])([^A-Ga-g]*)")
_LEADING_ACCIDENTALS = re.compile(r"^[=^_]*")
_NOTE_CHARS = frozenset(T.Note_list + T.Pitch_sign_list)

BARLINE, KEY, CHORD, NOTE = 4, 3, 2, 1

# abctoolkit's lookups are pure functions of strings; cached, each question is answered once per process.
_keymode_key = functools.lru_cache(maxsize=None)(T.lookup_key_according_to_keymode)
_new_keymode = functools.lru_cache(maxsize=None)(T.lookup_new_keymode_to_transpose)
_transpose_note = functools.lru_cache(maxsize=None)(T.transpose_a_note)
_transpose_chord_note = functools.lru_cache(maxsize=None)(T.transpose_a_chordnote)


@functools.lru_cache(maxsize=None)
def _note_parts(note: str) -> tuple[str, str, str]:
    return _NOTE_PARTS.findall(note)[0]


@functools.lru_cache(maxsize=None)
def _strip_accidentals(note: str) -> str:
    return _LEADING_ACCIDENTALS.sub("", note)


class VoiceReading:
    """A voice's elements in text order: (kind, start, end, text, key mode there, original key, actual note)."""

    def __init__(self, text: str, ori_keymode: str):
        self.text = text
        self.ori_keymode = ori_keymode
        n = len(text)
        kind = [-1] * n
        # key changes [K:...]: from the key's first char on, the key mode is the new one
        key_changes = []  # (key start, key end, keymode)
        for match in _SQUARE.finditer(text):
            start, end, string = match.start(), match.end(), match.group()
            if string[1:3] == "K:" and string[3] in T.Key_list:
                key_changes.append((start + 3, end - 1, string[3:-1]))
                for i in range(start, start + 3):
                    kind[i] = 0
                for i in range(start + 3, end - 1):
                    kind[i] = KEY
                for i in range(end - 1, end):
                    kind[i] = 0
            elif string[2] == ":":
                for i in range(start, end):
                    kind[i] = 0
            else:
                kind[start] = 0
                kind[end - 1] = 0
        elements = []  # (start, end, kind, text)
        for match in _QUOTE.finditer(text):
            start, end, quoted = match.start(), match.end(), match.group()
            if quoted[1] in T.Key_list:
                for chord in _CHORD_NOTE.finditer(quoted):
                    for i in range(start + chord.start(), start + chord.end()):
                        kind[i] = CHORD
                    elements.append((start + chord.start(), start + chord.end(), CHORD, chord.group()))
                for i in range(start, end):
                    if kind[i] != CHORD:
                        kind[i] = -2
            else:
                for i in range(start, end):
                    kind[i] = -2
        for match in _EXCLAIM.finditer(text):
            for i in range(match.start(), match.end()):
                kind[i] = -2
        for match in _BARLINE.finditer(text):
            elements.append((match.start(), match.end(), BARLINE, match.group()))
            for i in range(match.start(), match.end()):
                if kind[i] != -2:
                    kind[i] = BARLINE
        for i, char in enumerate(text):
            if kind[i] == -1:
                kind[i] = NOTE if char in _NOTE_CHARS else 0
        i = 0
        while i < n:
            if kind[i] == NOTE:
                j = i + 1
                while j < n and kind[j] == NOTE:
                    j += 1
                for match in _NOTE.finditer(text, i, j):
                    elements.append((match.start(), match.end(), NOTE, match.group()))
                i = j + 1
            else:
                i += 1
        for start, end, keymode in key_changes:
            elements.append((start, end, KEY, keymode))
        # abctoolkit sorts by start only; a key change and a chord symbol never share a start
        order = {BARLINE: 0, KEY: 1, CHORD: 2, NOTE: 3}  # its insertion order, which its stable sort keeps
        elements.sort(key=lambda e: (e[0], order[e[2]]))

        # the key mode at every element, as abctoolkit's per-character list has it
        ori_key = _keymode_key(ori_keymode)
        self.keymodes = {ori_keymode} if n else set()
        self.keymodes.update(keymode for _, _, keymode in key_changes)
        for keymode in self.keymodes:
            _keymode_key(keymode)  # raises where abctoolkit's per-character lookup raises
        changes = sorted(key_changes)
        self.elements = []
        change = 0
        keymode = ori_keymode
        key = ori_key
        since_barrier: dict[str, str] = {}
        for start, end, kind_, string in elements:
            while change < len(changes) and changes[change][0] <= start:
                keymode = changes[change][2]
                key = _keymode_key(keymode)
                change += 1
            actual = None
            if kind_ in (BARLINE, KEY):
                since_barrier = {}
            elif kind_ == NOTE:
                if string[0] in "^=_":
                    actual = string
                else:
                    actual = since_barrier.get(string) or T.Key_accidental_dict[key][string[0].upper()] + string
                since_barrier[_strip_accidentals(string)] = actual
            self.elements.append((kind_, start, end, string, keymode, key, actual))

    def render(self, des_key: str) -> str:
        """The voice spelled in `des_key`, as abctoolkit's transpose_a_voice(text, ori_keymode, des_key)."""
        text = self.text
        targets = {keymode: _new_keymode(keymode, self.ori_keymode, des_key) for keymode in self.keymodes}
        pieces = []
        index = 0
        since_barrier: dict[str, str] = {}  # transposed note name+octave -> transposed actual note
        for kind, start, end, string, keymode, key, actual in self.elements:
            pieces.append(text[index:start])
            index = end
            if kind == BARLINE:
                pieces.append(string)
                since_barrier = {}
            elif kind == KEY:
                pieces.append(targets[keymode][0])
                since_barrier = {}
            elif kind == CHORD:
                pieces.append(_transpose_chord_note(string, key, targets[keymode][1]))
            else:
                target_key = targets[keymode][1]
                moved = _transpose_note(actual, key, target_key)
                accidental, name, octave = _note_parts(moved)
                where = _strip_accidentals(moved)
                previous = since_barrier.get(where)
                if previous is not None:
                    pieces.append(name + octave if previous == moved else moved)
                elif accidental == T.Key_accidental_dict[target_key][name.upper()]:
                    pieces.append(name + octave)
                else:
                    pieces.append(moved)
                since_barrier[where] = moved
        pieces.append(text[index:])
        return "".join(pieces)


def transpose_all(lines: list[str], keys) -> dict[str, str]:
    """abctoolkit's transpose_an_abc_text(lines, key) for every key in `keys`, reading each voice once."""
    metadata, parts = extract_metadata_and_parts(lines)
    global_fields, local_fields = extract_global_and_local_metadata(metadata)
    global_key = global_fields["K"][0]
    if global_key == "none":
        global_key = "C"
    voice_keys = {}
    for symbol, fields in local_fields.items():
        if "perc" in fields["V"]:
            voice_keys[symbol] = "none"
        else:
            voice_keys[symbol] = fields.get("K", global_key)
    readings = {}
    results = {}
    for des_key in keys:
        out = []
        for line in metadata:
            if line.startswith("K:"):
                key = line[2:].strip()
                out.append("K:" + (_new_keymode(key, global_key, des_key)[0] if key != "none" else "none") + "\n")
            else:
                out.append(line)
        for symbol, part_text in parts.items():
            out.append(symbol + "\n")
            part_key = voice_keys[symbol]
            if part_key == "none":
                out.append(part_text)
                continue
            part_des_key = _new_keymode(part_key, global_key, des_key)[1]
            if (symbol, part_key) not in readings:
                readings[symbol, part_key] = VoiceReading(part_text, part_key)
            out.append(readings[symbol, part_key].render(part_des_key))
        results[des_key] = "".join(out)
    return results
