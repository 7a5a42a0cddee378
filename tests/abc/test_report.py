"""Piece report on real pieces (upstream's post-processed generations and standard ABC) and broken ones."""

import pytest

from pipelines.abc.report import clean_part_name, report_piece
from pipelines.errors import AbcError


def test_chorale_interleaved(chorale):
    r = report_piece(chorale)
    assert r.layout == "interleaved"
    assert r.voices == ["1", "2", "3", "4"]
    assert r.voice_names == ["Soprano", "Alto", "Tenor", "Bass"]
    assert (r.bars, r.bars_per_voice) == (10, [10, 10, 10, 10])
    assert (r.time_signature, r.key, r.tempo, r.unit_length) == ("4/4", "Amin", "1/4=96", "1/8")
    # a quarter-note pickup + 9 bars of 4/4 at 96 quarters a minute: 37 quarters
    assert r.seconds == pytest.approx(37 * 60 / 96)
    assert r.aligned and r.findings == []


def test_standard_abc_agrees_with_interleaved(fixtures, chorale):
    standard = report_piece((fixtures / "preprocess" / "bach_bwv66.6.xml2abc.abc").read_text(encoding="utf-8"))
    interleaved = report_piece(chorale)
    assert standard.layout == "standard"
    assert standard.key == "F#min"  # the original key; the post-processed one is transposed to A minor
    for field in ("voices", "voice_names", "bars", "bars_per_voice", "time_signature", "seconds", "aligned"):
        assert getattr(standard, field) == getattr(interleaved, field), field


def test_quartet(postprocessed):
    r = report_piece(postprocessed["beethoven_opus18no1_movement4_C"])
    assert r.voice_names == ["Violin", "Violin", "Viola", "Violoncello"]
    assert r.bars == 381 and r.time_signature == "2/4"
    assert r.seconds == pytest.approx(381.0)  # 381 bars of two quarters at 120
    assert r.aligned


def test_odd_bar_is_named_not_raised(postprocessed):
    # xml2abc wrote an extra z/ in the first violin of bar 58 of this Haydn minuet
    r = report_piece(postprocessed["haydn_opus74no1_movement3_C"])
    assert not r.aligned
    assert r.findings == ["bar 58: voices differ in length "
                          "(voice 1 lasts 13/16, voice 2 lasts 3/4, voice 3 lasts 3/4, voice 4 lasts 3/4)"]


def test_missing_voice_is_a_finding(chorale):
    broken = chorale.replace("[V:3]D2 D2 DC B,2|", "")
    r = report_piece(broken)
    assert not r.aligned
    assert "bar 5: voice 3 is missing" in r.findings
    assert r.bars_per_voice == [10, 10, 9, 10]


def test_truncated_mid_bar(chorale):
    cut = chorale[:chorale.index("[V:1]c2 d2 e2 c2") + 40]
    r = report_piece(cut)
    assert not r.aligned
    assert any("no closing barline" in f and f.startswith("bar 7") for f in r.findings)


def test_unequal_bar_lengths_are_named(chorale):
    r = report_piece(chorale.replace("[V:2]A2 G2 G2 G2|", "[V:2]A2 G2 G2 G2 G2|"))
    assert not r.aligned
    assert r.findings == ["bar 2: voices differ in length "
                          "(voice 1 lasts 1/1, voice 2 lasts 5/4, voice 3 lasts 1/1, voice 4 lasts 1/1)"]


def test_garbage_lines_do_not_raise(chorale):
    r = report_piece(chorale + "\n@@@ ###\n[V:9]nonsense(((|\n")
    assert not r.aligned
    assert any("voice 9 is not defined" in f for f in r.findings)


def test_empty_text_is_an_error():
    with pytest.raises(AbcError, match="empty"):
        report_piece("  \n")


def test_no_voices_is_a_finding():
    r = report_piece("X:1\nK:C\nabc|")
    assert not r.aligned and "no voice (V:) found" in r.findings


def test_generated_line_prefixes_are_ignored(chorale):
    lines = chorale.split("\n")
    prefixed = "\n".join(f"[r:{i}/9]{line}" if line.startswith("[V:") else line for i, line in enumerate(lines))
    assert report_piece(prefixed).findings == []


def test_clean_part_name():
    assert clean_part_name("\\n\t\t\t:Violin 1") == "Violin 1"
    assert clean_part_name("  Viola ") == "Viola"


def test_bar_line_problem_checks_one_generated_line():
    from pipelines.abc.report import bar_line_problem

    metadata = ('%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n%%score [ 1 | 2 ] 3 [ 5 | 6 ]\nL:1/8\nM:3/4\n'
                'K:C\nV:1 treble nm="Horn 1"\nV:2 treble nm="Horn 2"\nV:3 bass\nV:5 treble nm="Soprano"\nV:6 bass\n')
    assert bar_line_problem(metadata, "[r:3/9][V:1]c4 B2|[V:2]G4 GF|[V:3]E4 D2|[V:5]c6|[V:6]C,D, E,F, G,2|\n") is None
    # Voices left out (whole-bar rests) are not counted, whatever their numbers.
    assert bar_line_problem(metadata, "[r:0/9][V:5]c2|[V:6]G2|\n") is None
    short = bar_line_problem(metadata, "[r:4/8][V:5]c4 B2|[V:6]G4 G|\n")
    assert short == "bar 1: voices differ in length (voice 5 lasts 3/4, voice 6 lasts 5/8)"
    assert "ends with" in bar_line_problem(metadata, "[V:5]c6:|[V:6]C6|\n")
    assert "not defined" in bar_line_problem(metadata, "[V:5]c6|[V:7]C6|\n")
    # A voice named twice: every bar may time right, but rest restoration would drop one of them.
    twice = "[r:4/8][V:5]c6|[V:6]C6|[V:5]c4 B2|\n"
    assert bar_line_problem(metadata, twice) == "bar 1: voice 5 appears more than once in the line"
    duet = "L:1/8\nM:3/4\nK:C\nV:1 treble\nV:2 bass\n[V:1]c6|[V:2]C6|\n[V:1]c6|[V:2]C6|[V:1]c4 B2|\n[V:1]c6|[V:2]C6|\n"
    report = report_piece(duet)
    assert not report.aligned and report.findings[0] == "bar 2: voice 1 appears more than once in the line"
    assert bar_line_problem(metadata, "[r:4/8]c6|\n") == "the line names no voice"


def test_header_problem_wants_voices_numbered_as_xml2abc_does():
    from pipelines.abc.report import header_problem

    good = '%%score [ ( 1 2 ) 3 | 4 ]\nL:1/8\nV:1 treble nm="Violin"\nV:2 treble\nV:3 alto\nV:4 bass\n'
    assert header_problem(good) is None
    assert header_problem(good.replace("| 4 ]", "| 4")) is None  # an unclosed bracket: post-processing closes it
    assert header_problem("L:1/8\nM:4/4\nK:C\n") is None  # no voices: one melody line
    assert header_problem(good + "V:3 bass\n") == "voice 3 is defined twice in the header"
    gap = good.replace("V:4 bass", "V:5 bass")
    assert header_problem(gap) == "the header's voices are numbered 1, 2, 3, 5: voice 4 is missing"
    assert header_problem(good.replace("V:4 bass", "V:B bass")).startswith("voice B is not numbered")
    assert header_problem(good.replace("| 4 ]", "| 5 ]")) == "%%score and the voice definitions differ in voice 4, 5"


def test_every_upstream_preprocessed_header_passes_the_header_check(fixtures):
    from pipelines.abc.report import header_problem

    files = sorted((fixtures / "preprocess" / "augmented").rglob("*.abc"))
    assert len(files) > 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert header_problem(text[:text.index("[V:")]) is None, path.name
