"""Scores to continue: read from ABC or MusicXML files, refused when they are not music, put in the
training format with their ending opened; a continuation the model ends at once is reported as such."""
from __future__ import annotations

import re

import pytest

from pipelines.abc.prompts import Prompt
from pipelines.errors import AbcError
from pipelines.generation.continuation import (
    UNCHANGED,
    continuation_prefix,
    judge_continuation,
    read_score,
    score_lines,
)
from pipelines.generation.piece import GeneratedPiece, GenerationRequest

BACH = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")


def test_musicxml_and_abc_files_are_read_as_abc(fixtures, tmp_path):
    xml = fixtures / "preprocess" / "bach_bwv66.6.musicxml"
    expected = (fixtures / "preprocess" / "bach_bwv66.6.xml2abc.abc").read_text(encoding="utf-8")
    assert read_score(xml) == expected
    abc = tmp_path / "chorale.abc"
    abc.write_text(expected, encoding="utf-8")
    assert read_score(abc) == expected
    assert read_score(abc, "My Chorale.ABC") == expected  # an upload's own name decides its format
    saved_by_notepad = tmp_path / "notepad.abc"
    saved_by_notepad.write_text(expected, encoding="utf-8-sig")  # starts with a byte order mark
    assert read_score(saved_by_notepad) == expected


def test_a_compressed_mxl_from_the_music21_corpus_is_read():
    music21 = pytest.importorskip("music21")
    mxl = music21.corpus.getWork("bwv1.6")
    metadata, body = score_lines(read_score(mxl))
    assert len(body) > 4 and all(line.startswith("[V:1]") for line in body)
    assert any(line.startswith("V:5") for line in metadata)  # horn, soprano, alto, tenor, bass


@pytest.mark.parametrize("text, words", [
    ("This is my shopping list\n", "shopping.abc: not an ABC tune: it has no K: (key) line"),
    ("X:1\nT:Shopping\nK:C\nThis is my shopping list\n", "shopping.abc: it has no voices"),
    ("X:1\nL:1/8\nK:C\nV:1\n", "shopping.abc: not a score that can be continued"),
    ("", "shopping.abc: not an ABC tune"),
])
def test_a_file_that_is_not_music_is_refused_naming_it(tmp_path, text, words):
    path = tmp_path / "shopping.abc"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AbcError, match=re.escape(words)):
        read_score(path)


def test_other_files_are_refused_naming_them(tmp_path):
    broken = tmp_path / "broken.musicxml"
    broken.write_text("<score-partwise><part", encoding="utf-8")
    with pytest.raises(AbcError, match="broken.musicxml: xml2abc: not well-formed MusicXML"):
        read_score(broken)
    with pytest.raises(AbcError, match="notes.txt: continue an .abc, .musicxml"):
        read_score(tmp_path / "notes.txt")
    with pytest.raises(AbcError, match="gone.abc: cannot be read"):
        read_score(tmp_path / "gone.abc")
    garbled = tmp_path / "garbled.abc"
    garbled.write_bytes(b"X:1\n\xff\xfe\n")
    with pytest.raises(AbcError, match="garbled.abc: not UTF-8"):
        read_score(garbled)


def test_the_last_kept_line_does_not_end_the_piece(postprocessed):
    finished = postprocessed["bach_bwv66.6_C"]
    assert finished.rstrip().endswith("|]")
    body = [line for line in continuation_prefix(finished, BACH).splitlines() if line.startswith("[r:")]
    assert "|]" not in body[-1] and body[-1].endswith("x2|")
    _, source_body = score_lines(finished)
    assert body[-1].split("]", 1)[1] == source_body[-1].rstrip("\n").replace("|]", "|")  # only its barlines
    assert [line.split("]", 1)[1] for line in body[:-1]] == [line.rstrip("\n") for line in source_body[:-1]]
    kept = [line for line in continuation_prefix(finished, BACH, keep_lines=3).splitlines() if line.startswith("[r:")]
    assert [line.split("]", 1)[1] for line in kept] == [line.rstrip("\n") for line in source_body[:3]]


def test_a_continuation_the_model_ends_at_once_is_not_reported_ok(postprocessed):
    prefix = continuation_prefix(postprocessed["bach_bwv66.6_C"], BACH, add_lines=8)
    request = GenerationRequest(BACH, seed=3, prefix=prefix)
    ended = judge_continuation(GeneratedPiece(request, prefix, prefix, "ok", patches=2))
    assert ended.status == UNCHANGED and ended.abc is None and not ended.ok
    assert "not continued" in ended.reason and "adding no bars" in ended.reason
    line = "[r:10/7][V:1]e2 d2 c2 B2|[V:2]G2 G2 GF EF|[V:3]B,2 C2 C2 C2|[V:4]B,2 A,G, F,2 B,,2|\n"
    grown = GeneratedPiece(request, prefix + line, "X:1\n...", "ok", patches=9)
    assert judge_continuation(grown) is grown  # a line added: as the engine said
    limit = GeneratedPiece(request, prefix, None, "limit", "reached the 2-patch limit without an ending")
    assert judge_continuation(limit) is limit
    new = GeneratedPiece(GenerationRequest(BACH, seed=3), "%Baroque\n", "X:1\n", "ok")
    assert judge_continuation(new) is new  # a new piece is not a continuation
