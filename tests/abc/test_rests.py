"""pipelines.rests: rest reduction of training data and upstream's post-processing of generations."""
import json

import pytest

from pipelines.abc.rests import has_notes, rest_reduce, rest_unreduce
from pipelines.errors import AbcError

STANDARD = """%%score { ( 1 2 ) | 3 }
L:1/8
M:2/4
K:C
V:1 treble
V:2 treble
V:3 bass
V:1
 cd ef | z4 | g4 |]
V:2
 x4 | x4 | x4 |]
V:3
 C,4 | z2 z2 | !fermata!z4 |]
"""


def _lines(text):
    return [line + "\n" for line in text.split("\n") if line]


def test_rest_reduce_leaves_out_resting_voices_and_keeps_the_first_bar_prefix():
    reduced = rest_reduce(_lines(STANDARD))
    assert reduced[:7] == _lines(STANDARD)[:7]
    assert reduced[7:] == [
        "[V:1]cd ef|[V:3]C,4|\n",
        "\n",  # every voice rests: an empty line, as upstream writes it
        "[V:1]g4|][V:3]!fermata!z4|]\n",  # 'fermata' has letters: upstream keeps the voice
    ]


def test_has_notes():
    assert has_notes("c2 z2") and has_notes('"^cresc." z4') and not has_notes(" z4 x2 Z ") and not has_notes("")


def test_rest_reduce_names_a_voice_with_too_few_bars():
    text = STANDARD.replace(" C,4 | z2 z2 | !fermata!z4 |]", " C,4 | z2 z2 |")
    with pytest.raises(AbcError, match="voice 3 has 2 bars where voice 1 has 3"):
        rest_reduce(_lines(text))


def test_rest_reduce_handles_a_long_piece_bar_by_bar():
    # 8000 bars (speed is the dataset benchmark's business, not a test's): every bar kept,
    # in order, with the rest-only bars of voice 2 dropped and its note bars kept
    n = 8000
    notes = "cdefgab"
    text = ("L:1/8\nM:1/8\nK:C\nV:1\nV:2\nV:1\n" + "".join(f" {notes[i % 7]} |" for i in range(n))
            + "\nV:2\n" + "".join(" C |" if i % 1000 == 999 else " z |" for i in range(n)) + "\n")
    lines = rest_reduce(_lines(text))
    body = lines[5:]
    assert len(body) == n
    assert all(line.startswith(f"[V:1]{notes[i % 7]}|") for i, line in enumerate(body))
    assert [i for i, line in enumerate(body) if "[V:2]C|" in line] == list(range(999, n, 1000))


def test_rest_unreduce_equals_upstream_postprocessing(fixtures):
    cases = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))
    assert len(cases) == 6
    for case in cases:
        restored = rest_unreduce(case["generated"].split("\n"))
        assert "".join(restored) == case["postprocessed"], case["name"]
        assert all(line.endswith("\n") for line in restored)


def test_rest_unreduce_restores_each_voice_with_z_or_x_by_staff():
    reduced = rest_reduce(_lines(STANDARD))
    generated = ["%Romantic", "%Schumann, Robert", "%Keyboard", "%end"] + [
        line.rstrip("\n") for line in reduced if line.strip()]
    generated = [f"[r:{i}/1]{line}" if line.startswith("[V:") else line for i, line in enumerate(generated)]
    restored = "".join(rest_unreduce(generated))
    assert restored.startswith("X:1\n%%score { ( 1 2 ) | 3 }\n") and "%Romantic" not in restored
    body = restored.split("V:3 bass\n")[1]
    assert body == ("[V:1]cd ef|[V:2]x4|[V:3]C,4|\n"  # V:2 shares V:1's staff: an invisible rest
                    "[V:1]g4|][V:2]x4|][V:3]!fermata!z4|]\n")
    assert "[r:" not in restored


def test_rest_unreduce_rejects_what_it_cannot_restore():
    with pytest.raises(AbcError, match="no tune body"):
        rest_unreduce(["%Baroque", "L:1/8", "K:C"])
    with pytest.raises(AbcError, match="no V: lines"):
        rest_unreduce(["L:1/8", "K:C", "[V:1]abc|"])
    with pytest.raises(AbcError, match="numbers"):
        rest_unreduce(["V:S", "V:1", "[V:1]abc|"])
