"""Rendering real pieces (Bach chorales, a Mozart quartet movement) and broken ones, with real libraries."""
import io
import json
import re
import threading
import time

import mido
import music21
import pytest

from pipelines.cli import main
from pipelines.errors import AbcError, RenderError
from pipelines.render.score import RenderConfig, abc_to_musicxml, render_abc

FAST = RenderConfig(pdf=False)


def music21_counts(musicxml: str, expand_repeats: bool = False) -> tuple[int, int, int]:
    """(parts, sounding notes, written notes) as music21 reads the MusicXML.

    A note head sounds unless a tie continues it, judged per pitch: in a chord where one
    pitch is held and the others move, only the held one is continued (music21's
    `stripTies` treats a chord's tie as the whole chord's and counts the held pitch again).
    """
    score = music21.converter.parse(musicxml, format="musicxml")
    played = score.expandRepeats() if expand_repeats else score

    def written(stream):
        return sum(len(n.pitches) for n in stream.recurse().notes)

    def sounding(stream):
        heads = (head for n in stream.recurse().notes for head in (n.notes if n.isChord else [n]))
        return sum(1 for head in heads if head.tie is None or head.tie.type == "start")

    return len(score.parts), sounding(played), written(score)


def midi_channels_and_programs(midi: bytes) -> list[tuple[set[int], list[int]]]:
    tracks = mido.MidiFile(file=io.BytesIO(midi)).tracks[1:]
    return [({m.channel for m in t if m.type == "note_on"}, [m.program for m in t if m.type == "program_change"])
            for t in tracks]


def test_chorale_counts_match_music21(chorale_result):
    r = chorale_result
    parts, sounding, written = music21_counts(r.musicxml)
    assert parts == len(r.parts) == len(r.report.voices) == 4
    assert r.notes == sounding == 163  # two tied pairs sound as one note each
    assert r.written_notes == written == 165
    assert [p.notes for p in r.parts] == [36, 42, 44, 41]
    assert not r.partial and r.problems == [] and r.warnings == []


def test_chorale_score_midi_timemap_pdf(chorale_result):
    r = chorale_result
    assert r.pages == len(r.svg_pages) == 1
    svg = r.svg_pages[0]
    assert 'width="840px" height="1188px"' in svg  # A4 at 40 %
    assert "pgFoot" not in svg  # no Verovio footer
    assert r.seconds == pytest.approx(36 * 60 / 96, abs=0.01)  # 36 quarters at 96; the MIDI ends at the last note
    assert r.timemap[0]["tstamp"] == 0
    ids = {i for entry in r.timemap for i in entry.get("on", [])}
    assert len(ids) == 165 and all(f'id="{i}"' in svg for i in ids)  # every engraved note can be highlighted
    assert r.pdf.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b", r.pdf)) == 1


def test_choir_parts_get_their_own_channels(chorale_result):
    r = chorale_result
    assert [(p.name, p.channel, p.program) for p in r.parts] == [
        ("Soprano", 1, 52), ("Alto", 2, 52), ("Tenor", 3, 52), ("Bass", 4, 52)]
    assert r.parts[0].instrument == "Choir Aahs"
    assert midi_channels_and_programs(r.midi) == [({0}, [52]), ({1}, [52]), ({2}, [52]), ({3}, [52])]
    assert '<midi-program>53</midi-program>' in r.musicxml  # MusicXML counts programs from 1


def test_windows_line_endings(chorale, chorale_result):
    r = render_abc(chorale.replace("\n", "\r\n"), FAST)
    assert (r.notes, [p.channel for p in r.parts]) == (chorale_result.notes, [1, 2, 3, 4])
    assert not r.partial


def test_progress_and_stop(chorale):
    seen = []
    render_abc(chorale, FAST, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(RenderError, match="stopped"):
        render_abc(chorale, FAST, should_stop=lambda: True)


def test_standard_abc_chorale(fixtures):
    abc = (fixtures / "preprocess" / "bach_bwv7.7.xml2abc.abc").read_text(encoding="utf-8")
    r = render_abc(abc, FAST)
    parts, sounding, written = music21_counts(r.musicxml)
    assert parts == len(r.parts) == len(r.report.voices) == 4
    assert r.notes == sounding and r.written_notes == written
    assert [p.channel for p in r.parts] == [1, 2, 3, 4]
    assert r.pages == 2 and not r.partial


def test_quartet_instruments_and_repeats(postprocessed):
    r = render_abc(postprocessed["mozart_k155_movement2_C"], FAST)
    parts, sounding, written = music21_counts(r.musicxml, expand_repeats=True)
    assert parts == len(r.parts) == 4
    assert r.notes == sounding  # Verovio plays the repeats, as music21 expands them
    assert r.written_notes == written
    assert [(p.name, p.program) for p in r.parts] == [
        ("Violin I", 40), ("Violin II", 110), ("Viola", 41), ("Cello", 42)]  # distinct: Violin II is GM Fiddle
    played = midi_channels_and_programs(r.midi)
    assert [channels for channels, _ in played] == [{0}, {1}, {2}, {3}]  # a channel each
    assert [programs for _, programs in played] == [[40], [110], [41], [42]]
    assert r.seconds > r.report.seconds  # repeats are played


def test_long_quartet_counts_programs_and_held_chord_notes(postprocessed):
    """381 bars of Beethoven: chords where the viola holds one pitch and moves the other."""
    r = render_abc(postprocessed["beethoven_opus18no1_movement4_C"], FAST)
    parts, sounding, written = music21_counts(r.musicxml)
    assert parts == len(r.parts) == len(r.report.voices) == 4
    assert (r.notes, r.written_notes) == (sounding, written)
    assert len({p.program for p in r.parts}) == 4  # a quartet's parts get distinct programs
    assert not r.partial and r.report.aligned


def test_piano_grand_staff_is_one_part():
    abc = ('X:1\n%%score { ( 1 2 ) | ( 3 4 ) }\nL:1/8\nQ:1/4=100\nM:4/4\nK:C\n'
           'V:1 treble nm="Piano" snm="Pno."\nV:2 treble\nV:3 bass\nV:4 bass\n'
           "[V:1]c2 e2 g2 c'2|[V:2]E4 G4|[V:3]C,4 G,4|[V:4]C,,8|\n"
           "[V:1]d2 f2 a2 d'2|[V:2]F4 A4|[V:3]D,4 A,4|[V:4]D,,8|\n")
    r = render_abc(abc, FAST)
    assert [(p.name, p.program, p.notes) for p in r.parts] == [("Piano", 0, 18)]
    assert r.notes == r.written_notes == 18 and not r.partial


# --- bad input: a clear error or a result marked partial, quickly -------------------------------------------

def rendered_quickly(abc: str, seconds: float = 10.0):
    start = time.monotonic()
    try:
        return render_abc(abc, FAST)
    finally:
        assert time.monotonic() - start < seconds


@pytest.mark.parametrize("abc, message", [
    ("", "empty"),
    (" \n\n", "empty"),
    ("\x00\x01\x02" * 100, "no notes"),
    ("X:1\nL:1/4\nM:4/4\nK:C\nV:1\n[V:1]z4|z4|\n", "no notes"),
])
def test_no_music_is_an_error(abc, message):
    with pytest.raises(AbcError, match=message):
        rendered_quickly(abc)


def test_header_only_is_an_error(chorale):
    header = "\n".join(line for line in chorale.split("\n") if not line.startswith("[V:"))
    with pytest.raises(AbcError, match="no notes"):
        rendered_quickly(header)


def test_truncated_mid_bar_is_partial(chorale):
    r = rendered_quickly(chorale[:chorale.index("[V:1]c2 d2 e2 c2") + 40])
    assert r.partial
    assert "bar 7: voice 3 has no closing barline (the piece looks cut off)" in r.problems
    assert "bar 7: voice 4 is missing" in r.problems


def test_missing_voice_is_partial(chorale):
    r = rendered_quickly(chorale.replace("[V:3]D2 D2 DC B,2|", ""))
    assert r.partial and "bar 5: voice 3 is missing" in r.problems
    assert [p.measures for p in r.parts] == [10, 10, 9, 10]
    assert any(p.startswith("parts have different numbers of measures") for p in r.problems)


def test_garbage_lines_are_partial(chorale):
    r = rendered_quickly(chorale.replace("[V:1]c2 d2 e2 c2|", "[V:1]c2 d2 e2 c2|@@@###\n&& garbage ((( \n", 1))
    assert r.partial
    assert any("misplaced symbol: @" in p for p in r.problems)
    assert len(r.parts) == 4 and r.notes > 150


def test_text_that_is_not_abc_is_partial():
    r = rendered_quickly("X:1\nK:C\n" + "asdkfj;alskdjf;lkajsdf;kj " * 10)
    assert r.partial and "no voice (V:) found" in r.problems


def test_render_in_a_worker_thread_finds_fonts(chorale, chorale_result):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", render_abc(chorale, FAST)))
    thread.start()
    thread.join(60)
    r = out["r"]
    assert r.written_notes == chorale_result.written_notes
    assert 'class="definition-scale"' in r.svg_pages[0] and "<use" in r.svg_pages[0]  # glyphs were drawn


def test_cli_render(tmp_path, chorale, capsys):
    source = tmp_path / "bwv66.abc"
    source.write_text(chorale, encoding="utf-8")
    assert main(["render", str(source), "--out", str(tmp_path / "out"), "--no-audio", "--no-pdf"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p["program"] for p in summary["parts"]] == [52, 52, 52, 52]
    assert (summary["notes"], summary["pages"], summary["voices"]) == (163, 1, 4)
    assert summary["alignment"] == {"aligned": True, "findings": []}
    assert summary["seconds"] == pytest.approx(22.5, abs=0.01)
    assert sorted(summary["files"]) == ["abc", "follow", "mid", "musicxml"]


def test_cli_partial_piece_exits_nonzero(tmp_path, chorale, capsys):
    source = tmp_path / "broken.abc"
    source.write_text(chorale.replace("[V:3]D2 D2 DC B,2|", ""), encoding="utf-8")
    assert main(["render", str(source), "--out", str(tmp_path), "--no-audio", "--no-pdf"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["partial"] is True
    assert "bar 5: voice 3 is missing" in captured.err


def one_line_piece(chars: int) -> str:
    """A generated pathological piece: four voices, every bar on one line, `chars` characters long."""
    bar = "[V:1]c2 d2 e2 g2|[V:2]G2 B2 c2 e2|[V:3]E2 G2 G2 c2|[V:4]C2 G,2 C2 C,2|"
    header = "X:1\nL:1/8\nM:4/4\nK:C\nV:1 treble\nV:2 treble\nV:3 bass\nV:4 bass\n"
    return header + bar * (chars // len(bar)) + "\n"


def test_engraving_over_its_time_limit_is_stopped_and_the_next_piece_renders(chorale):
    slow = one_line_piece(40_000)  # about 20 s of abc2xml and Verovio on two cores
    with pytest.raises(RenderError, match=r"engraving the score took longer than 0.5 s and was stopped"):
        render_abc(slow, RenderConfig(pdf=False, time_limit_s=0.5))
    assert render_abc(chorale, FAST).notes == 163  # a fresh worker took over


def test_the_abc_conversion_alone_has_a_time_limit_too():
    slow = "X:1\nL:1/8\nM:4/4\nK:C\n" + "asdkfj;alskdjf;lkajsdf;kj " * 400  # about 3 s of abc2xml parsing
    with pytest.raises(RenderError, match="converting the ABC to MusicXML took longer than 0.2 s and was stopped"):
        abc_to_musicxml(slow, time_limit_s=0.2)


def test_a_piece_too_long_to_engrave_is_refused_before_any_work():
    huge = one_line_piece(260_000)  # the size that took 191 s to render with no limit
    with pytest.raises(RenderError, match=r"260,0\d\d characters of ABC, over the 100,000 that are engraved"):
        render_abc(huge)


def test_rendering_stops_when_asked(chorale):
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 3  # after the first polls, while engraving runs

    with pytest.raises(RenderError, match="engraving the score was stopped"):
        render_abc(one_line_piece(40_000), FAST, should_stop=should_stop)


def test_a_chorale_saved_with_a_byte_order_mark_is_the_same_score(tmp_path, chorale, capsys):
    plain, marked = tmp_path / "plain.abc", tmp_path / "notepad.abc"
    plain.write_text(chorale, encoding="utf-8")
    marked.write_text(chorale, encoding="utf-8-sig")  # as Notepad saves UTF-8
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    summaries = []
    for path in (plain, marked):
        assert main(["render", str(path), "--out", str(tmp_path / path.stem), "--no-audio", "--no-pdf"]) == 0
        summaries.append({k: v for k, v in json.loads(capsys.readouterr().out).items() if k not in ("file", "files")})
    assert summaries[0] == summaries[1]
    assert [p["name"] for p in summaries[1]["parts"]] == ["Soprano", "Alto", "Tenor", "Bass"]
    pasted = render_abc("\ufeff" + chorale, FAST)  # text that keeps its mark (a paste, a text box)
    assert pasted.musicxml == render_abc(chorale, FAST).musicxml and not pasted.partial


def test_the_cli_refuses_a_file_over_the_size_cap_naming_it(tmp_path, capsys):
    big = tmp_path / "huge.abc"
    with big.open("wb") as f:
        f.truncate(21 * 2**20)  # 21 MB
    assert main(["render", str(big), "--out", str(tmp_path / "out"), "--no-audio"]) == 2
    assert "huge.abc is 21.0 MB; score files of up to 20 MB are read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
