"""pipelines.render.follow: where each note and bar of a real engraved chorale sits, and when it sounds."""
import io
import json
import re

import mido
import numpy as np
import pytest
import soundfile

from pipelines.errors import RenderError
from pipelines.render.audio import AudioConfig, synthesize
from pipelines.render.export import export_piece
from pipelines.render.follow import FOLLOW_VERSION, score_follow
from pipelines.render.score import RenderConfig, engrave_piece


@pytest.fixture(scope="module")
def long_result(long_chorale):
    return engrave_piece(long_chorale, RenderConfig(pdf=False))


def drawn_noteheads(svg: str) -> dict[str, tuple[float, float]]:
    """Note id -> where its (first) note head is drawn, in fractions of the page, read from the shown SVG."""
    width, height = (float(v) for v in re.search(r'class="definition-scale"[^>]*viewBox="0 0 (\d+) (\d+)"',
                                                  svg).groups())
    mx, my = (float(v) for v in re.search(r'class="page-margin" transform="translate\((\d+), (\d+)\)"', svg).groups())
    heads = re.findall(r'<g id="([^"]+)" class="note">\s*<g class="notehead">\s*<use [^>]*translate\(([-\d]+), ([-\d]+)\)',
                       svg)
    return {note_id: ((int(x) + mx) / width, (int(y) + my) / height) for note_id, x, y in heads}


def inside(point, box, slack=0.002) -> bool:
    x, y, w, h = box
    return x - slack <= point[0] <= x + w + slack and y - slack <= point[1] <= y + h + slack


def test_every_sounding_note_has_a_box_around_its_drawn_note_head(chorale_result):
    follow = chorale_result.follow
    assert follow["version"] == FOLLOW_VERSION and follow["pages"] == chorale_result.pages == 1
    sounding = {i for entry in chorale_result.timemap for i in entry.get("on", [])}
    assert set(follow["notes"]) == sounding and len(sounding) > 150
    heads = drawn_noteheads(chorale_result.svg_pages[0])
    assert set(heads) >= sounding  # the ids are those of the page shown, not of the layout drawn for the boxes
    for note_id, (page, *box) in follow["notes"].items():
        assert page == 0 and 0 <= box[0] < box[0] + box[2] <= 1 and 0 <= box[1] < box[1] + box[3] <= 1
        assert 0.005 < box[2] < 0.02 and 0.003 < box[3] < 0.015  # a note head, not a stem or a whole system
        assert inside(heads[note_id], box), (note_id, heads[note_id], box)
    assert "bounding-box" not in chorale_result.svg_pages[0]  # the pages shown stay as they were


def test_bars_start_in_score_order_and_hold_their_notes(chorale_result):
    follow = chorale_result.follow
    bars = follow["bars"]
    assert len(bars) == 10  # the pickup, 8 bars and the last
    starts = [bar["ms"] for bar in bars]
    assert starts[0] == 0 and starts == sorted(starts) and len(set(starts)) == len(starts)
    assert starts[1] == 625  # the pickup is two quavers at 96 crotchets a minute
    for note_id, (page, *box) in follow["notes"].items():
        centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
        assert sum(inside(centre, bar["box"], 0) for bar in bars if bar["page"] == page) == 1, note_id
    for span in follow["spans"]:  # a note sounds from the start of its bar on, before the next bar starts
        page, *box = follow["notes"][span[2]]
        bar = next(n for n, b in enumerate(bars) if inside((box[0] + box[2] / 2, box[1] + box[3] / 2), b["box"], 0))
        assert starts[bar] <= span[0] < (starts[bar + 1] if bar + 1 < len(starts) else float("inf"))


def test_spans_are_in_the_midis_milliseconds(chorale_result):
    spans = chorale_result.follow["spans"]
    assert all(on < off for on, off, _ in spans) and [s[0] for s in spans] == sorted(s[0] for s in spans)
    assert max(s[1] for s in spans) == pytest.approx(chorale_result.seconds * 1000, abs=10)
    midi_onsets, at = set(), 0.0
    for message in mido.MidiFile(file=io.BytesIO(chorale_result.midi)):
        at += message.time
        if message.type == "note_on" and message.velocity > 0:
            midi_onsets.add(at * 1000)
    assert len(midi_onsets) == len({s[0] for s in spans})
    assert all(any(abs(on - m) <= 1 for m in midi_onsets) for on, _, _ in spans)


def test_the_wav_starts_with_the_music_and_lasts_as_the_midi(chorale_result):
    """The WAV is synthesised from the MIDI, so its second t is the timemap's t ms: no lead-in, same length."""
    config = AudioConfig()
    audio = synthesize(chorale_result.midi, config)
    samples, rate = soundfile.read(io.BytesIO(audio.wav), always_2d=True)
    first_sound = np.argmax(np.abs(samples).max(axis=1) > 0.01) / rate
    assert first_sound < 0.02
    assert audio.seconds == pytest.approx(chorale_result.seconds + config.tail_seconds, abs=0.05)


def test_a_two_page_piece_has_its_later_notes_on_page_two(long_result):
    follow = long_result.follow
    assert long_result.pages == follow["pages"] == 2
    on_page = {page: [i for i, (p, *_) in follow["notes"].items() if p == page] for page in (0, 1)}
    assert len(on_page[0]) > 100 and len(on_page[1]) > 20
    onsets = {page: [s[0] for s in follow["spans"] if s[2] in on_page[page]] for page in (0, 1)}
    assert max(onsets[0]) < min(onsets[1])  # no repeats: page 2 is heard after page 1
    assert {bar["page"] for bar in follow["bars"]} == {0, 1} and len(follow["bars"]) == 18
    assert max(s[1] for s in follow["spans"]) == pytest.approx(long_result.seconds * 1000, abs=10)


def test_a_repeat_lights_its_notes_again_and_its_bars_start_where_first_played():
    abc = "X:1\nL:1/4\nQ:1/4=120\nM:4/4\nK:C\nV:1 treble\n[V:1]|:C D E F|G A B c:|\n[V:1]c B A G|F E D C|]\n"
    result = engrave_piece(abc, RenderConfig(pdf=False))
    follow = result.follow
    assert any(i.endswith("-rend2") for entry in result.timemap for i in entry.get("on", []))  # Verovio's naming
    assert len(follow["notes"]) == 16 and len(follow["spans"]) == 24  # 8 notes played twice
    assert {s[2] for s in follow["spans"]} == set(follow["notes"])  # every span names a note on the page
    assert [bar["ms"] for bar in follow["bars"]] == [0, 2000, 8000, 10000]  # 2 s a bar, bars 1-2 twice
    first = [s for s in follow["spans"] if s[2] == follow["spans"][1][2]]
    assert [s[:2] for s in first] == [[500, 1000], [4500, 5000]]  # the second note, in both playings


def test_the_follow_data_is_exported_with_the_piece(tmp_path, chorale_result):
    exported = export_piece(chorale_result, tmp_path, "chorale")
    assert exported.files["follow"].name == "chorale.follow.json"
    assert json.loads(exported.files["follow"].read_text(encoding="utf-8")) == chorale_result.follow


def test_a_sketch_is_engraved_without_follow_data(chorale):
    assert engrave_piece(chorale, RenderConfig(pdf=False, follow=False)).follow is None


def test_a_page_that_is_not_verovios_is_named():
    with pytest.raises(RenderError, match="page 1 of the score is not SVG"):
        score_follow(["<svg"], [])
    with pytest.raises(RenderError, match="page 1 of the score has no Verovio page"):
        score_follow(['<svg xmlns="http://www.w3.org/2000/svg"/>'], [])
