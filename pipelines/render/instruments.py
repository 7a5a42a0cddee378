"""Which General MIDI program and channel each part plays, from its instrument name.

`%%MIDI channel` / `%%MIDI program` lines go after each voice's `V:` line; abc2xml turns them
into `<midi-instrument>` (MuseScore, Sibelius, Dorico and DAWs see them), and Verovio's MIDI
follows them. Without them every part is piano on channel 1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.abc.report import clean_part_name, clean_voice_names, voice_definition

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


@dataclass
class Instrument:
    voice: str  # ABC voice id
    name: str  # the voice's nm="..." (cleaned); "" when it has none
    channel: int  # 1-16, as ABC and MusicXML number them
    program: int  # General MIDI 0-127

    @property
    def gm_name(self) -> str:
        return GM_NAMES.get(self.program, f"program {self.program}")


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
