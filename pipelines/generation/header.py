"""Header controls: the meter, key, tempo and length a musician chooses, checked, and the lines the engine
writes for them.

`HeaderControls` holds the choices (each optional: the model's choice where unset), refuses a value
that is not one with a message naming it, and spells each value as the training data does
(`K:Gmin`, `M:3/4`, `Q:1/4=96`). `HeaderControls.rules()` turns them into `LineRule`s, which the
decode step applies on the device (`pipelines.generation.steps.apply_line_rules`):

- a header line the model begins with `M`, `K` or `Q` gets the chosen value, char by char;
- a line the model has not written by the time it begins a line that comes after it (Q before M,
  M before K, K before the voice definitions and the tune body) is written there instead, and the
  model goes on after it;
- the first tune-body line begins `[r:0/` (upstream's protocol), and with a length `[r:0/N-1]`: its
  count of lines still to come, so the model plans N bars.

Everything else in the header (L:, %%score, the voices) and every inline `[K:` / `[M:` change in the
tune body stay the model's. Torch-free: the CLI checks the values before a model loads.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from pipelines.abc.tokenizer import EOS_ID, STREAM_PREFIX
from pipelines.errors import SettingError
from pipelines.fields import check_ranges, option

# The fields the engine can write, in the order the training data has them (xml2abc's).
FIELDS = ("Q", "M", "K")
# A missing field's line is written where the model begins one of these lines instead
# (`V` voice definitions and `[` the tune body come after the whole header).
COMES_AFTER = {"Q": "MKV[", "M": "KV[", "K": "V["}
TEMPO_UNIT = "1/4"  # the tempo is in quarter notes per minute, as `Q:1/4=96`
MAX_BARS = 999  # three digits: `[r:0/998]` stays inside the first patch

COMMON_METERS = ("4/4", "3/4", "2/4", "6/8", "2/2", "3/8", "9/8", "12/8", "C", "C|")
_MAJORS = ("C", "G", "D", "A", "E", "B", "F#", "C#", "F", "Bb", "Eb", "Ab", "Db", "Gb", "Cb")
# The minor keys as the key augmentation spells them (abctoolkit writes G# minor as Abmin, D# as Ebmin, A# as Bbmin).
_MINORS = ("A", "E", "B", "F#", "C#", "Ab", "Eb", "Bb", "D", "G", "C", "F")
COMMON_KEYS = _MAJORS + tuple(k + "min" for k in _MINORS)

_METER = re.compile(r"^(\d{1,2})/(\d{1,2})$")
_DENOMINATORS = (1, 2, 4, 8, 16, 32, 64)
_KEY = re.compile(r"^([A-Ga-g])([#b]?)\s*([A-Za-z]*)$")
# Tonic letters on the circle of fifths (C = 0); a sharp adds 7, a flat takes 7.
_TONIC_FIFTHS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F": -1}
# Mode spellings -> (the ABC suffix xml2abc writes, fifths relative to the major key on the tonic).
_MODES = {"": ("", 0), "maj": ("", 0), "major": ("", 0), "ion": ("", 0), "ionian": ("", 0),
          "m": ("min", -3), "min": ("min", -3), "minor": ("min", -3), "aeo": ("min", -3), "aeolian": ("min", -3),
          "dor": ("dor", -2), "dorian": ("dor", -2), "phr": ("phr", -4), "phrygian": ("phr", -4),
          "lyd": ("lyd", 1), "lydian": ("lyd", 1), "mix": ("mix", -1), "mixolydian": ("mix", -1),
          "loc": ("loc", -5), "locrian": ("loc", -5)}
_FIELD_LINE = re.compile(r"^([A-Za-z]):\s*(.*?)\s*$")


def normalize_meter(text: str) -> str:
    """A meter as ABC writes it (`3/4`, `6/8`, `C`, `C|`); SettingError naming it when it is not one."""
    value = str(text).strip().replace(" ", "")
    if value.upper() in ("C", "C|"):
        return value.upper()
    match = _METER.match(value)
    if match:
        beats, unit = int(match.group(1)), int(match.group(2))
        if 1 <= beats <= 32 and unit in _DENOMINATORS:
            return f"{beats}/{unit}"
    raise SettingError(f"meter {text!r} is not a time signature: write beats/unit such as 3/4, 6/8 or 12/8 "
                       "(1 to 32 beats of a whole, half, quarter, eighth, ... note), C (common time) or C| (cut time)")


def normalize_key(text: str) -> str:
    """A key as the training data spells it (`G`, `Gmin`, `F#min`, `Ddor`); SettingError naming it when
    it is not a key with a signature of 7 or fewer sharps or flats."""
    value = str(text).strip()
    match = _KEY.match(value)
    mode_word = match.group(3).lower() if match else ""
    if not match or mode_word not in _MODES:
        raise SettingError(f"key {text!r} is not a key: write a tonic A to G with # or b if needed, then m for "
                           "minor or a mode (dor, phr, lyd, mix, loc), e.g. G, Gm, Bb, F#m or Ddor")
    tonic = match.group(1).upper() + match.group(2)
    suffix, offset = _MODES[mode_word]
    fifths = _TONIC_FIFTHS[tonic[0]] + 7 * (tonic[1:] == "#") - 7 * (tonic[1:] == "b") + offset
    if not -7 <= fifths <= 7:
        raise SettingError(f"key {text!r} would need {abs(fifths)} {'sharps' if fifths > 0 else 'flats'}; "
                           f"write it as {_enharmonic(tonic)}{suffix or ''} instead")
    return tonic + suffix


def _enharmonic(tonic: str) -> str:
    """The other spelling of a tonic a key signature cannot hold (G# -> Ab, Fb -> E)."""
    names = {0: "C", 1: "C#", 2: "D", 3: "Eb", 4: "E", 5: "F", 6: "F#", 7: "G", 8: "Ab", 9: "A", 10: "Bb", 11: "B"}
    steps = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
    pitch = (steps[tonic[0]] + (tonic[1:] == "#") - (tonic[1:] == "b")) % 12
    return names[pitch]


@dataclass(frozen=True)
class LineRule:
    """Chars the decode step writes itself. Once a patch at a header line's start begins with the first
    `drawn` chars of `text` (drawn by the model), the rest of the patch is `text`'s (an eos ends a header
    line's patch). Where `before` holds the char the model begins a header line with and this rule's line
    is missing, the line is written there instead."""

    text: str
    drawn: int
    before: str = ""


def field_rule(field: str, value: str) -> LineRule:
    return LineRule(f"{field}:{value}\n{chr(EOS_ID)}", drawn=1, before=COMES_AFTER[field])


@dataclass(frozen=True)
class HeaderControls:
    """What a musician chose for a new piece's header and length; empty / None: the model's choice."""

    meter: str = option("", help="the time signature, e.g. 3/4, 6/8, C or C| (default: the model's choice)")
    key: str = option("", help="the key, e.g. G, Gm, Bb, F#m or Ddor (default: the model's choice)")
    tempo: int | None = option(None, low=20, high=300,
                               help="quarter notes per minute, written Q:1/4=N (default: the model's choice)")
    bars: int | None = option(None, low=1, high=MAX_BARS, label="length in bars",
                              help="bars (tune-body lines) the model is asked to plan, through the first line's "
                                   "[r:0/N-1] count (default: the model's choice)")

    def __post_init__(self):
        object.__setattr__(self, "meter", normalize_meter(self.meter) if str(self.meter or "").strip() else "")
        object.__setattr__(self, "key", normalize_key(self.key) if str(self.key or "").strip() else "")
        for name in ("tempo", "bars"):
            value = getattr(self, name)
            if isinstance(value, float) and value == int(value):
                object.__setattr__(self, name, int(value))
        check_ranges(self, SettingError)

    @property
    def chosen(self) -> bool:
        return bool(self.meter or self.key or self.tempo or self.bars)

    def values(self) -> dict[str, str]:
        """The chosen header fields by letter, as written after `X:` (`{"M": "3/4", "K": "G"}`)."""
        chosen = {"Q": f"{TEMPO_UNIT}={self.tempo}" if self.tempo else "", "M": self.meter, "K": self.key}
        return {f: chosen[f] for f in FIELDS if chosen[f]}

    def body_start(self) -> str:
        """How the first tune-body line begins: `[r:0/` (upstream's rule), with a length `[r:0/N-1]`."""
        return f"[r:0/{self.bars - 1}]" if self.bars else "[r:0/"

    def rules(self) -> list[LineRule | None]:
        """The decode step's rules, one slot each for the tune body's start and the fields (`RULE_SLOTS`)."""
        values = self.values()
        return [LineRule(self.body_start(), drawn=3)] + [field_rule(f, values[f]) if f in values else None
                                                         for f in FIELDS]

    def missing(self, metadata: str) -> list[bool]:
        """Per rule slot, whether its line is still to be written in `metadata` (the header so far)."""
        written = {m.group(1) for line in metadata.splitlines() if (m := _FIELD_LINE.match(line))}
        return [False] + [f in self.values() and f not in written for f in FIELDS]

    def check_continuation(self, prefix: str) -> None:
        """A continued piece keeps its own header and length: a chosen value must be the piece's own."""
        if self.bars:
            raise SettingError("a continued piece's length is set by the lines to add (--continue-lines), "
                               "not by a length in bars")
        own = header_fields(prefix)
        names = {"Q": "tempo", "M": "meter", "K": "key"}
        for field, value in self.values().items():
            if own.get(field) != value:
                has = f"{own[field]} ({field}:{own[field]})" if field in own else f"no {field}: line"
                raise SettingError(f"the score to continue keeps its own {names[field]}: it has {has}, not "
                                   f"{value}; leave the {names[field]} as the model's choice")


RULE_SLOTS = 1 + len(FIELDS)  # the tune body's start, then one per field: the decode step's fixed shape


def header_fields(text: str) -> dict[str, str]:
    """The first value of each field line in a piece's header (before its tune body), e.g. {"M": "3/4", ...}."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(("[V:", "[r:")):
            break
        match = _FIELD_LINE.match(line)
        if match:
            fields.setdefault(match.group(1), match.group(2))
    return fields


# ---------------------------------------------------------------- length

def bars_planned(text: str) -> int | None:
    """The length the first tune-body line plans (`[r:0/j]`: j + 1 lines), None without one."""
    for line in text.splitlines():
        match = STREAM_PREFIX.match(line)
        if match:
            return int(match.group(0)[3:-1].split("/")[1]) + 1
    return None


def bars_written(text: str) -> int:
    """Tune-body lines (one bar of every voice each) a generated piece has."""
    return sum(1 for line in text.splitlines() if STREAM_PREFIX.match(line))


@dataclass(frozen=True)
class LengthFit:
    """How close pieces asked for `requested` bars land: the bars each wrote."""

    requested: int
    written: list[int]

    @property
    def exact(self) -> float:
        """Share of pieces with exactly the bars asked for."""
        return sum(w == self.requested for w in self.written) / len(self.written) if self.written else 0.0

    def within(self, share: float) -> float:
        """Share of pieces within `share` (0.1: 10%) of the bars asked for."""
        ok = [abs(w - self.requested) <= share * self.requested for w in self.written]
        return sum(ok) / len(ok) if ok else 0.0

    @property
    def mean_error(self) -> float:
        """Mean of written minus asked, in bars (negative: short)."""
        return sum(w - self.requested for w in self.written) / len(self.written) if self.written else 0.0

    @property
    def mean_abs_error(self) -> float:
        return sum(abs(w - self.requested) for w in self.written) / len(self.written) if self.written else 0.0


def length_fit(requested: int, texts) -> LengthFit:
    """`LengthFit` of generated pieces' texts (raw, as generated) asked for `requested` bars."""
    return LengthFit(requested, [bars_written(text) for text in texts])


# ---------------------------------------------------------------- what a model has seen

def piece_header_values(texts) -> dict[str, list[str]]:
    """The distinct header M: and K: values of one piece's texts (its key-augmented versions)."""
    fields = [header_fields(text) for text in texts]
    return {"meters": sorted({f["M"] for f in fields if f.get("M")}),
            "keys": sorted({f["K"] for f in fields if f.get("K")})}


def count_choices(pieces) -> dict[str, dict[str, dict[str, int]]]:
    """Per prompt line, how many pieces used each meter and key: `pieces` are (prompt line,
    `piece_header_values` of the piece) pairs. The form a dataset records and a model card keeps."""
    return merge_choices(*({line: {kind: dict.fromkeys(values.get(kind, ()), 1) for kind in ("meters", "keys")}}
                           for line, values in pieces))


def merge_choices(*records: dict) -> dict[str, dict[str, dict[str, int]]]:
    """Records of `count_choices` added together (a base model's and a dataset's), sorted."""
    merged: dict[str, dict[str, Counter]] = {}
    for record in records:
        for line, kinds in (record or {}).items():
            into = merged.setdefault(line, {"meters": Counter(), "keys": Counter()})
            for kind in ("meters", "keys"):
                into[kind].update(kinds.get(kind, {}))
    return {line: {kind: dict(sorted(counts.items())) for kind, counts in merged[line].items()}
            for line in sorted(merged)}


@dataclass(frozen=True)
class HeaderChoices:
    """The meters and keys offered for a prompt: the ones the model saw first (most used first), then the
    common ones; `recorded` says whether the model records what it saw, and `note` what a musician should know."""

    meters: list[str]
    keys: list[str]
    seen_meters: list[str]
    seen_keys: list[str]
    recorded: bool
    note: str = ""

    def unseen(self, controls: HeaderControls, prompt_line: str) -> str:
        """A note naming the chosen meter or key the model never saw with this prompt ("" when none,
        or when the model records nothing)."""
        if not self.recorded:
            return ""
        new = []
        if controls.meter and controls.meter not in self.seen_meters:
            new.append(f"meter {controls.meter}")
        if controls.key and controls.key not in self.seen_keys:
            new.append(f"key {controls.key}")
        if not new:
            return ""
        return (f"the model never saw the {' or the '.join(new)} in its {prompt_line} pieces; the header says so, "
                "but the music may not follow it")


def offered_choices(record: dict, prompt_line: str) -> HeaderChoices:
    """What to offer for `prompt_line` from a model card's `header_choices` record."""
    own = (record or {}).get(prompt_line)
    if not own:
        note = ("this model records no meters or keys for this prompt; the common ones are offered"
                if record else "this model records no meters or keys; the common ones are offered")
        return HeaderChoices(list(COMMON_METERS), list(COMMON_KEYS), [], [], recorded=False, note=note)

    def by_use(counts: dict[str, int]) -> list[str]:
        return [value for value, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]

    meters, keys = by_use(own.get("meters", {})), by_use(own.get("keys", {}))
    return HeaderChoices(meters + [m for m in COMMON_METERS if m not in meters],
                         keys + [k for k in COMMON_KEYS if k not in keys], meters, keys, recorded=True)
