"""Header controls: values checked and spelled as the training data does, the decode step's line rules, and
the demo model writing the chosen meter, key, tempo and length."""
import pytest
import torch

from pipelines.abc.prompts import Prompt
from pipelines.abc.report import header_problem
from pipelines.abc.tokenizer import EOS_ID
from pipelines.errors import SettingError
from pipelines.generation.decoder import encode_rules
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.header import (
    HeaderControls,
    bars_planned,
    bars_written,
    count_choices,
    header_fields,
    length_fit,
    merge_choices,
    normalize_key,
    normalize_meter,
    offered_choices,
    piece_header_values,
)
from pipelines.generation.options import GenerationLimits
from pipelines.generation.piece import MoveKind, Piece
from pipelines.generation.steps import apply_line_rules
from pipelines.model.checkpoint import load_checkpoint
from pipelines.model.runtime import pick_runtime
from tests.paths import DEMO_MODEL

BACH = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")
MOZART = Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber")
CHOPIN = Prompt("Romantic", "Chopin, Frederic", "Keyboard")
P = 16


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("given, written", [
    ("3/4", "3/4"), (" 6/8 ", "6/8"), ("12/8", "12/8"), ("2/2", "2/2"), ("C", "C"), ("c|", "C|"), ("5 / 4", "5/4"),
])
def test_meters_are_written_as_abc_writes_them(given, written):
    assert normalize_meter(given) == written


@pytest.mark.parametrize("given", ["3/5", "0/4", "33/4", "3", "3/4/4", "three", "C||", "3/128"])
def test_a_meter_that_is_not_one_is_refused_by_name(given):
    with pytest.raises(SettingError, match=f"meter {given!r} is not a time signature"):
        normalize_meter(given)


@pytest.mark.parametrize("given, written", [
    ("G", "G"), ("Gm", "Gmin"), ("g minor", "Gmin"), ("Bb", "Bb"), ("bb", "Bb"), ("F#m", "F#min"), ("Ddor", "Ddor"),
    ("D dorian", "Ddor"), ("Amaj", "A"), ("Eb major", "Eb"), ("C#min", "C#min"), ("Emix", "Emix"), ("Cb", "Cb"),
    ("A aeolian", "Amin"), ("Flyd", "Flyd"), ("Bloc", "Bloc"),
])
def test_keys_are_written_as_the_training_data_spells_them(given, written):
    assert normalize_key(given) == written


@pytest.mark.parametrize("given, message", [
    ("H", "key 'H' is not a key"), ("Gx", "key 'Gx' is not a key"), ("", "is not a key"), ("G#", "write it as Ab"),
    ("Fbm", "write it as Emin"), ("Dbmin", "write it as C#min"),
])
def test_a_key_that_is_not_one_is_refused_with_what_to_write(given, message):
    with pytest.raises(SettingError, match=message):
        normalize_key(given)


def test_controls_check_every_value_and_leave_the_rest_to_the_model():
    controls = HeaderControls(meter="3/4", key="Gm", tempo=96.0, bars=16)
    assert (controls.meter, controls.key, controls.tempo, controls.bars) == ("3/4", "Gmin", 96, 16)
    assert controls.values() == {"Q": "1/4=96", "M": "3/4", "K": "Gmin"}
    assert controls.body_start() == "[r:0/15]"
    assert HeaderControls().values() == {} and not HeaderControls().chosen
    assert HeaderControls().body_start() == "[r:0/"  # upstream's rule stays
    for name, value, message in (("tempo", 19, "tempo must be 20 to 300, not 19"),
                                 ("tempo", 301, "tempo must be 20 to 300, not 301"),
                                 ("bars", 0, "length in bars must be 1 to 999, not 0"),
                                 ("meter", "3/5", "meter '3/5'"), ("key", "Q", "key 'Q'")):
        with pytest.raises(SettingError, match=message):
            HeaderControls(**{name: value})


def test_a_continuation_keeps_its_own_header():
    prefix = "%Baroque\n%Bach\n%Choral\n%end\nL:1/8\nQ:1/4=96\nM:4/4\nK:Amin\nV:1 treble\n[r:0/9][V:1]A2|\n"
    assert header_fields(prefix) == {"L": "1/8", "Q": "1/4=96", "M": "4/4", "K": "Amin", "V": "1 treble"}
    HeaderControls(meter="4/4", key="Am", tempo=96).check_continuation(prefix)  # the piece's own values
    HeaderControls().check_continuation(prefix)
    with pytest.raises(SettingError, match=r"keeps its own meter: it has 4/4 \(M:4/4\), not 3/4"):
        HeaderControls(meter="3/4").check_continuation(prefix)
    with pytest.raises(SettingError, match="keeps its own key"):
        HeaderControls(key="G").check_continuation(prefix)
    with pytest.raises(SettingError, match="keeps its own tempo: it has no Q: line"):
        HeaderControls(tempo=96).check_continuation(prefix.replace("Q:1/4=96\n", ""))
    with pytest.raises(SettingError, match="lines to add"):
        HeaderControls(bars=8).check_continuation(prefix)


def test_length_is_read_from_the_first_line_and_counted_in_lines():
    text = "%end\nM:3/4\n[r:0/2][V:1]a|[V:2]b|\n[r:1/1][V:1]a|[V:2]b|\n[r:2/0][V:1]a|]\n"
    assert bars_planned(text) == 3 and bars_written(text) == 3
    assert bars_planned("%end\nM:3/4\n") is None and bars_written("%end\n") == 0


def test_header_values_are_counted_per_prompt_and_added_up():
    piece = piece_header_values(["M:3/4\nK:G\n[r:0/0][V:1]a|\nM:2/4\n", "M:3/4\nK:Emin\n", "L:1/8\n"])
    assert piece == {"meters": ["3/4"], "keys": ["Emin", "G"]}  # the header's, each once
    counted = count_choices([("A_B_C", piece), ("A_B_C", {"meters": ["C"], "keys": ["G"]}), ("D_E_F", piece)])
    assert counted == {"A_B_C": {"meters": {"3/4": 1, "C": 1}, "keys": {"Emin": 1, "G": 2}},
                       "D_E_F": {"meters": {"3/4": 1}, "keys": {"Emin": 1, "G": 1}}}
    assert merge_choices(counted, {"A_B_C": {"meters": {"3/4": 2}, "keys": {}}}, {})["A_B_C"] == {
        "meters": {"3/4": 3, "C": 1}, "keys": {"Emin": 1, "G": 2}}


def test_the_choices_offered_are_the_models_first_then_the_common_ones():
    record = {"A_B_C": {"meters": {"3/4": 1, "6/8": 4}, "keys": {"G": 2, "Emin": 2}}}
    choices = offered_choices(record, "A_B_C")
    assert choices.recorded and not choices.note
    assert choices.meters[:3] == ["6/8", "3/4", "4/4"] and len(choices.meters) == len(set(choices.meters))
    assert choices.keys[:3] == ["Emin", "G", "C"] and "Abmin" in choices.keys
    assert choices.unseen(HeaderControls(meter="6/8", key="G"), "A_B_C") == ""
    assert choices.unseen(HeaderControls(meter="5/4", key="Bb"), "A_B_C") == (
        "the model never saw the meter 5/4 or the key Bb in its A_B_C pieces; the header says so, "
        "but the music may not follow it")
    unknown = offered_choices(record, "D_E_F")
    assert not unknown.recorded and "for this prompt" in unknown.note and unknown.meters[0] == "4/4"
    assert unknown.unseen(HeaderControls(meter="5/4"), "D_E_F") == ""  # nothing recorded, nothing to say
    assert "records no meters or keys;" in offered_choices({}, "A_B_C").note


# ---------------------------------------------------------------- the decode step's rules

def pick(controls: HeaderControls, patch: str, drawn: str, missing=None, in_body=False, line_start=True) -> str:
    """Spell a patch through `apply_line_rules` as the decode step does: at each position the model's char
    is `drawn[pos]`; returns the patch's chars up to its eos."""
    text, n, before = (t[None] for t in encode_rules(controls.rules(), P))
    gone = controls.missing(missing if missing is not None else "M:\nK:\nQ:\n")
    rules = (torch.tensor([line_start]), text, n, before, torch.tensor([gone]))
    chars = torch.zeros(1, P, dtype=torch.long)
    chars[0, :len(patch)] = torch.tensor([ord(c) for c in patch])
    for pos in range(len(patch), min(P, len(patch) + len(drawn))):
        c = apply_line_rules(torch.tensor([ord(drawn[pos - len(patch)])]), chars, torch.tensor(pos),
                             torch.tensor([in_body]), rules)
        chars[0, pos] = c
        if int(c) == EOS_ID:
            break
    return "".join(chr(c) for c in chars[0].tolist() if c > EOS_ID)


def test_a_header_line_the_model_begins_gets_the_chosen_value():
    controls = HeaderControls(meter="3/4", key="G", tempo=96)
    model = "M:12/8\n" + "\x02" * 9
    assert pick(controls, "", model) == "M:3/4\n"
    assert pick(controls, "", "K:Emin\n\x02" + "x" * 8) == "K:G\n"
    assert pick(controls, "", "Q:3/8=60\n\x02" + "x" * 6) == "Q:1/4=96\n"
    assert pick(controls, "", "L:1/8\n\x02" + "x" * 9) == "L:1/8\n"  # the rest of the header is the model's
    assert pick(HeaderControls(key="G"), "", model) == "M:12/8\n"  # meter left to the model
    assert pick(controls, "", model, line_start=False) == "M:12/8\n"  # a long line's next patch: not a line start
    assert pick(controls, "", model, in_body=True) == "M:12/8\n"  # inline fields in the tune body are the model's


def test_a_missing_line_is_written_where_the_model_begins_a_later_one():
    controls = HeaderControls(meter="3/4", key="G", tempo=96)
    voice = "V:1 treble\n\x02" + "x" * 4
    assert pick(controls, "", voice, missing="") == "Q:1/4=96\n"  # Q first, then M, then K
    assert pick(controls, "", voice, missing="Q:1/4=96\n") == "M:3/4\n"
    assert pick(controls, "", voice, missing="Q:1/4=96\nM:3/4\n") == "K:G\n"
    assert pick(controls, "", voice, missing="Q:1/4=96\nM:3/4\nK:G\n") == "V:1 treble\n"
    assert pick(controls, "", "K:C\n\x02" + "x" * 11, missing="M:3/4\n") == "Q:1/4=96\n"  # Q comes before K
    assert pick(HeaderControls(key="G"), "", "M:2/4\n\x02" + "x" * 9, missing="") == "M:2/4\n"  # K comes after M
    assert pick(controls, "", "%%score 1 2\n\x02xxx", missing="") == "%%score 1 2\n"  # lines with no order


def test_the_tune_body_begins_with_the_planned_length():
    body = "[r:7/3][V:1]ab"
    assert pick(HeaderControls(), "", body) == "[r:0/3][V:1]ab"  # upstream's `[r:0/`, the count the model's
    assert pick(HeaderControls(bars=12), "", body).startswith("[r:0/11]")  # then the model's draws again
    assert pick(HeaderControls(bars=1), "[r:", "7/3][V:1]abcd").startswith("[r:0/0]")
    assert pick(HeaderControls(bars=12), "", body, in_body=True) == body  # a later line keeps its own count
    # With the key still missing, the tune body cannot begin: K: is written first.
    assert pick(HeaderControls(key="G", bars=12), "", body, missing="") == "K:G\n"


# ---------------------------------------------------------------- the demo model

@pytest.fixture(scope="module")
def demo():
    return Engine(load_checkpoint(DEMO_MODEL, device="cpu").model.float().eval(), pick_runtime("cpu"))


def header_of(raw: str) -> list[str]:
    lines = raw.splitlines()
    return lines[:next((i for i, line in enumerate(lines) if line.startswith("[r:")), len(lines))]


@pytest.mark.slow
def test_the_demo_model_writes_the_chosen_meter_key_and_length(demo):
    """Bach, Mozart and Chopin, two seeds each: every header has M:3/4 and K:G (K: last before the voices),
    the first line plans 12 bars, and up to the first line the rules change, the piece is the same piece."""
    controls = HeaderControls(meter="3/4", key="G", bars=12)
    prompts = [(prompt, seed) for prompt in (BACH, MOZART, CHOPIN) for seed in (0, 1)]
    limits = GenerationLimits(max_patches=22, bar_retries=0)  # the header and the first bar
    pieces = demo.generate([GenerationRequest(p, s) for p, s in prompts]
                           + [GenerationRequest(p, s, header=controls) for p, s in prompts], limits=limits)
    free, chosen = pieces[:len(prompts)], pieces[len(prompts):]
    changed = 0
    for a, b in zip(free, chosen):
        header = header_of(b.raw)
        assert "M:3/4" in header and "K:G" in header, b.raw
        fields = [line[0] for line in header if line[1:2] == ":"]
        assert fields.index("M") < fields.index("K") and set(fields[fields.index("K") + 1:]) <= {"V"}, header
        assert bars_planned(b.raw) == 12, b.raw
        ours = header_of(a.raw)
        same = next(i for i, line in enumerate(ours) if line.startswith(("M:", "K:", "V:")))
        assert header[:same] == ours[:same]  # the model's own lines before the first one forced
        changed += header != ours
    assert changed  # the demo model's own headers are not all 3/4 in G


@pytest.mark.slow
def test_a_header_written_again_gets_the_chosen_lines_again(demo, monkeypatch):
    """A header the check turns down is written again from the prompt: the missing tempo line is
    inserted again (the engine re-reads which lines are missing after going back)."""
    import pipelines.generation.policy as policy

    checked = []

    def stricter(metadata):
        checked.append(metadata)
        return "turned down by the test" if len(checked) <= 1 else header_problem(metadata)

    monkeypatch.setattr(policy, "header_problem", stricter)
    hows = []
    back_to = Piece.back_to
    monkeypatch.setattr(Piece, "back_to", lambda piece, move: hows.append(move.kind) or back_to(piece, move))
    controls = HeaderControls(meter="3/4", key="G", tempo=96)
    piece = demo.generate([GenerationRequest(BACH, seed=3, header=controls)],
                          limits=GenerationLimits(max_patches=40, bar_retries=1))[0]
    assert hows[0] is MoveKind.HEADER and len(checked) >= 2
    for metadata in checked:
        lines = metadata.splitlines()
        assert lines.index("Q:1/4=96") < lines.index("M:3/4") < lines.index("K:G"), metadata
    assert piece.raw.startswith(checked[-1])


def test_length_fit_measures_bars_written_against_asked():
    def piece(lines):
        return "%end\nM:3/4\n" + "".join(f"[r:{i}/{lines - i - 1}][V:1]a|\n" for i in range(lines))

    fit = length_fit(10, [piece(10), piece(9), piece(12), piece(20)])
    assert fit.written == [10, 9, 12, 20]
    assert fit.exact == 0.25 and fit.within(0.1) == 0.5 and fit.within(0.2) == 0.75
    assert fit.mean_error == pytest.approx(2.75) and fit.mean_abs_error == pytest.approx(3.25)
