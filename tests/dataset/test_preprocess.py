"""pipelines.dataset.convert / preprocess: byte-for-byte equality with upstream NotaGen's preprocessing."""
import json
from pathlib import Path

import pytest

from pipelines.dataset.convert import StageError, read_musicxml, xml_to_abc
from pipelines.dataset.preprocess import KEYS, clean_abc, preprocess_abc, tidy_annotations

PIECES = ("bach_bwv66.6", "bach_bwv7.7", "beethoven_opus18no1_movement4", "haydn_opus74no1_movement3",
          "mozart_k155_movement2", "schumann_robert_opus41no1_movement2")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def converted(fixtures):
    folder = fixtures / "preprocess"
    abc = {p: xml_to_abc(read_musicxml(folder / f"{p}.musicxml").data, p) for p in PIECES}
    return folder, abc, {p: preprocess_abc(text) for p, text in abc.items()}


def test_fixture_pieces_are_all_there(fixtures):
    manifest = json.loads(_read(fixtures / "preprocess" / "manifest.json"))
    assert sorted(manifest) == sorted(PIECES) and len(KEYS) == 15


@pytest.mark.parametrize("piece", PIECES)
def test_xml2abc_in_process_equals_upstream_command_line(converted, piece):
    folder, abc, _ = converted
    assert abc[piece] == _read(folder / f"{piece}.xml2abc.abc")


@pytest.mark.parametrize("piece", PIECES)
def test_interleaved_and_all_15_keys_equal_upstream(converted, piece):
    folder, _, done = converted
    result = done[piece]
    assert result.interleaved == _read(folder / "interleaved" / f"{piece}.abc")
    assert sorted(result.augmented) == sorted(KEYS)
    for key in KEYS:
        assert result.augmented[key] == _read(folder / "augmented" / key / f"{piece}_{key}.abc"), key
    manifest = json.loads(_read(folder / "manifest.json"))
    assert result.key == manifest[piece]["key"]
    assert result.voices == 4 and result.bars > 0


def test_cleaning_drops_fields_bar_numbers_escaped_quotes_and_barline_annotations():
    text = ('X:1\nT:Title\nC:Someone\n%%MIDI program 1\nL:1/8\nM:2/4\nK:C\nV:1 treble\nV:1\n'
            ' "^a|b"c2 d\\"e | "_Allegro!!!!" f4 |] %2\n\n')
    lines = tidy_annotations(clean_abc(text))
    assert lines == ["L:1/8\n", "M:2/4\n", "K:C\n", "V:1 treble\n", "V:1\n", ' c2 de | "_Allegro!" f4 |] \n']


def test_long_annotations_are_dropped():
    line = ' "^' + "very long text " * 4 + '"c4 |]\n'
    assert tidy_annotations([line]) == [" c4 |]\n"]


def test_truncated_musicxml_is_reported_by_xml2abc(fixtures):
    data = (fixtures / "preprocess" / "bach_bwv66.6.musicxml").read_bytes()
    with pytest.raises(StageError) as failure:
        xml_to_abc(data[: len(data) // 2])
    assert failure.value.stage == "xml2abc" and "not well-formed MusicXML" in failure.value.reason


def test_a_score_without_notes_gives_nothing(tmp_path):
    empty = (b'<?xml version="1.0"?><score-partwise version="3.1"><part-list><score-part id="P1">'
             b'<part-name>Flute</part-name></score-part></part-list><part id="P1"></part></score-partwise>')
    with pytest.raises(StageError, match="xml2abc produced nothing"):
        xml_to_abc(empty)
