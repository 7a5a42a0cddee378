"""pipelines.dataset.transpose: all 15 keys at once, equal to abctoolkit's transposition."""
import pytest
from abctoolkit.transpose import transpose_an_abc_text

from pipelines.dataset.preprocess import KEYS
from pipelines.dataset.transpose import transpose_all

TRICKY = """L:1/8
M:4/4
K:Bb
V:1 treble
V:2 bass
V:1
 "Am7"B ^c =B c' | [K:D] "^dolce"f F _f f | [K:Ebmin] !trill!g2 [ceg]2 "Gb"G,, e |] 
V:2
 B,, b | (3d'ef z2 [I:MIDI=program 1] D2 x | C4 |]
"""


def _lines(text):
    return [line + "\n" for line in text.split("\n") if line]


def test_equals_abctoolkit_on_key_changes_accidentals_and_chord_symbols():
    ours = transpose_all(_lines(TRICKY), KEYS)
    for key in KEYS:
        assert ours[key] == transpose_an_abc_text(_lines(TRICKY), key), key


def test_fails_where_abctoolkit_fails():
    broken = TRICKY.replace("[K:D]", "[K:H]").replace("[K:Ebmin]", "[K:Cfoo]")
    with pytest.raises(Exception) as ours:
        transpose_all(_lines(broken), KEYS)
    with pytest.raises(Exception) as theirs:
        transpose_an_abc_text(_lines(broken), "C")
    assert type(ours.value) is type(theirs.value)
