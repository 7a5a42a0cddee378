"""pipelines.dataset.annotate: suggestions from the score, NotaGen-X vocabulary warnings, headers."""
from pathlib import Path

import pytest

from pipelines.abc.prompts import Prompt
from pipelines.dataset.annotate import (
    Labels,
    annotate,
    normalise_composer,
    notagenx_vocabulary,
    read_score_info,
    replace_header,
    suggest_instrumentation,
)
from pipelines.dataset.convert import read_musicxml
from pipelines.errors import DatasetError


def test_vocabulary_is_notagenx_112_prompts():
    vocabulary = notagenx_vocabulary()
    assert len(vocabulary.prompts) == 112
    assert vocabulary.periods == {"Baroque", "Classical", "Romantic"}
    assert "Art Song" in vocabulary.instrumentations and vocabulary.period_of("Chopin, Frederic") == "Romantic"


@pytest.mark.parametrize("raw, expected", [
    ("J.S. Bach", "Bach, Johann Sebastian"),
    ("Ludwig van Beethoven", "Beethoven, Ludwig van"),
    ("L van Beethoven", "Beethoven, Ludwig van"),
    ("W.A. Mozart", "Mozart, Wolfgang Amadeus"),
    ("Clara Schumann", "Schumann, Clara"),
    ("Antonín Dvořák", "Dvorak, Antonin"),
    ("Carl Philipp Emanuel Bach", "Bach, Carl Philipp Emanuel"),
    ("Philippe de Vitry\n(1291 -1361)", "Vitry, Philippe de"),
    ("Haydn", "Haydn, Joseph"),
    ("Anonymous", "Anonymous"),
])
def test_composer_as_last_first_in_notagenx_spelling(raw, expected):
    assert normalise_composer(raw) == expected


@pytest.mark.parametrize("parts, expected", [
    (["Piano"], "Keyboard"),
    (["Soprano", "Alto", "Tenor", "Bass"], "Choral"),
    (["Violin I", "Violin II", "Viola", "Violoncello"], "Chamber"),
    (["Violin", "Cello", "Piano"], "Chamber"),
    (["Voice", "Piano"], "Art Song"),
    (["Soprano", "Alto", "Tenor", "Bass", "Organ"], "Choral"),
    (["Horn 2", "Soprano", "Alto", "Tenor", "Bass"], "Vocal-Orchestral"),
    (["Flute", "Oboe", "Clarinet", "Bassoon", "Horn", "Trumpet", "Timpani", "Violin I", "Violin II", "Viola",
      "Violoncello", "Contrabass"], "Orchestral"),
    (["MusicXML Part"], None),
    ([], None),
])
def test_instrumentation_from_part_names(parts, expected):
    assert suggest_instrumentation(parts) == expected


def test_suggestion_from_a_real_score(fixtures):
    xml = read_musicxml(fixtures / "preprocess" / "mozart_k155_movement2.musicxml").data
    info = read_score_info(xml)
    assert info.parts == ["Violin I", "Violin II", "Viola", "Cello"]
    annotation = annotate(info, Labels())
    assert annotation.prompt == Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber")
    assert annotation.warnings == []


def test_given_labels_win_and_unknowns_and_outsiders_are_warned():
    annotation = annotate(read_score_info(b"<score-partwise><part-list/></score-partwise>"),
                          Labels(period="Modern"))
    assert annotation.prompt == Prompt("Modern", "Unknown", "Unknown")
    assert any("period 'Modern' is outside NotaGen-X's vocabulary" in w for w in annotation.warnings)
    assert any(w.startswith("composer unknown") for w in annotation.warnings)
    combination = annotate(read_score_info(b"<score-partwise/>"),
                           Labels("Baroque", "Chopin, Frederic", "Keyboard"))
    assert combination.warnings == ["'Baroque_Chopin, Frederic_Keyboard' is not one of NotaGen-X's "
                                    f"{len(notagenx_vocabulary().prompts)} prompts"]


def test_replace_header():
    text = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\nL:1/8\n"
    new = replace_header(text, Prompt("Romantic", "Chopin, Frederic", "Keyboard"), Path("x.abc"))
    assert new == "%Romantic\n%Chopin, Frederic\n%Keyboard\n%end\nL:1/8\n"
    with pytest.raises(DatasetError, match="does not start with"):
        replace_header("L:1/8\nK:C\n", Prompt("a", "b", "c"), Path("x.abc"))
