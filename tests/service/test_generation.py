"""The generation service: its spec's defaults and checks, continuing an uploaded MusicXML score end to end, and
what a watcher sees while a job runs (progress, why the engine went back, the piece engraved so far) and before
it starts (the estimate, the limits sized to the device)."""
from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from pipelines.abc.prompts import Prompt
from pipelines.errors import AbcError, NotaGenError, SettingError
from pipelines.fields import default_of, range_of
from pipelines.generation.continuation import continuation_prefix
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.piece import MoveEvent, MoveKind
from pipelines.service import GenerationSpec
from pipelines.service.generation import (
    CPU_MIN_PATCHES,
    CPU_TARGET_S,
    TYPICAL_PATCHES,
    BatchProgress,
    MoveNotes,
    move_note,
    ordinal,
)
from pipelines.service.jobs import Runner

TINY = "models/tiny.pth"
BACH = ("Baroque", "Bach, Johann Sebastian", "Choral")


@pytest.fixture
def backend(tiny_backend):
    return tiny_backend


def test_the_spec_takes_its_defaults_and_ranges_from_the_generation_options():
    for config, name in [(SamplingConfig, "top_k"), (SamplingConfig, "top_p"), (SamplingConfig, "temperature"),
                         (GenerationLimits, "max_patches"), (GenerationLimits, "max_seconds"),
                         (GenerationLimits, "bar_retries")]:
        assert default_of(GenerationSpec, name) == default_of(config, name), name
        assert range_of(GenerationSpec, name) == range_of(config, name), name
    spec = GenerationSpec(TINY, *BACH)
    assert spec.sampling() == SamplingConfig() and spec.limits() == GenerationLimits(
        max_patches=spec.max_patches, max_seconds=spec.max_seconds, bar_retries=spec.bar_retries)


def test_the_spec_refuses_what_the_configs_refuse_with_their_words():
    assert GenerationSpec(TINY, *BACH, top_k=9.0, seed="3").seed == 3  # what a browser sends
    for change, words in [({"top_p": 1.5}, "top-p must be over 0 up to 1, not 1.5"),
                          ({"max_seconds": 0}, "time limit must be over 0 up to 3600"),
                          ({"bar_retries": 101}, "bar redraws must be 0 to 100"),
                          ({"count": 0}, "pieces per request must be at least 1"),
                          ({"seed": -1}, "the seed must be a whole number"),
                          ({"top_k": "many"}, "top k must be a number"),
                          ({"add_lines": 0}, "add at least 1")]:
        with pytest.raises(SettingError, match=words):
            GenerationSpec(TINY, *BACH, **change)


def test_more_pieces_than_the_settings_allow_are_refused(backend):
    with pytest.raises(SettingError, match="pieces per request must be 1 to 8"):
        backend.generation.submit(GenerationSpec(TINY, *BACH, count=9))
    with pytest.raises(NotaGenError, match="no model chosen"):
        backend.generation.submit(GenerationSpec("", *BACH))


def test_a_musicxml_upload_is_read_and_continued(backend, fixtures):
    xml = fixtures / "preprocess" / "bach_bwv66.6.musicxml"
    abc = backend.generation.read_score(xml)
    assert abc == (fixtures / "preprocess" / "bach_bwv66.6.xml2abc.abc").read_text(encoding="utf-8")
    spec = GenerationSpec(TINY, *BACH, seed=5, max_patches=3, continue_abc=abc, continue_name=xml.name, keep_lines=2)
    job = backend.generation.submit(spec)
    done = backend.jobs.wait(job.id, 300)
    assert done.state == "done", done.error
    result = backend.generation.result(done)
    assert [(p.seed, p.status) for p in result.pieces] == [(5, "limit")]  # random weights: the patch limit ends it
    entry = backend.library.get(result.pieces[0].id)
    assert entry.raw.startswith(spec.prefix()) and "[r:0/" in entry.raw  # the kept bars, then the model's
    assert entry.parameters["continue_name"] == "bach_bwv66.6.musicxml" and entry.parameters["keep_lines"] == 2


def test_an_upload_that_is_not_a_score_is_a_plain_error(backend, tmp_path):
    broken = tmp_path / "broken.musicxml"
    broken.write_text("<score-partwise><part", encoding="utf-8")
    with pytest.raises(AbcError, match="broken.musicxml: xml2abc: not well-formed MusicXML"):
        backend.generation.read_score(broken)
    with pytest.raises(AbcError, match="continue an .abc, .musicxml"):
        backend.generation.read_score(tmp_path / "notes.txt")


def test_text_that_is_not_music_is_refused_when_read_and_when_submitted(backend, tmp_path):
    shopping = tmp_path / "upload-1234.abc"
    shopping.write_text("This is my shopping list\n", encoding="utf-8")
    with pytest.raises(AbcError, match="list.abc: not an ABC tune"):
        backend.generation.read_score(shopping, "list.abc")  # the upload's own name, not the temporary one
    spec = GenerationSpec(TINY, *BACH, continue_abc="This is my shopping list\n", continue_name="list.abc")
    with pytest.raises(AbcError, match="list.abc: not an ABC tune"):
        backend.generation.submit(spec)  # the browser is not trusted to have previewed it
    assert backend.jobs.list() == []  # nothing was queued


def test_a_continuation_the_model_ends_at_once_is_stored_as_unchanged(backend, postprocessed, monkeypatch):
    from pipelines.generation.engine import Engine
    from pipelines.generation.piece import GeneratedPiece

    def ends_at_once(self, requests, *args, **kwargs):
        return [GeneratedPiece(r, r.prefix, None, "ok", patches=1) for r in requests]

    monkeypatch.setattr(Engine, "generate", ends_at_once)
    spec = GenerationSpec(TINY, *BACH, continue_abc=postprocessed["bach_bwv66.6_C"], continue_name="chorale.abc")
    done = backend.jobs.wait(backend.generation.submit(spec).id, 300)
    assert done.state == "done", done.error
    result = backend.generation.result(done)
    assert [p.status for p in result.pieces] == ["unchanged"] and result.complete == 0
    assert "not continued" in result.pieces[0].reason
    entry = backend.library.get(result.pieces[0].id)
    assert entry.status == "unchanged" and entry.abc is None and entry.raw == spec.prefix()


HEADER = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\nL:1/8\nM:4/4\nK:C\nV:1 treble\nV:2 bass\n"


def test_a_batchs_progress_is_bars_written_against_the_bars_each_piece_planned():
    progress = BatchProgress(2, max_patches=50)
    progress.patch(0, HEADER)
    assert progress.counts() == (1, 100, "patches")  # no plan yet: patches of the limit
    progress.patch(0, HEADER + "[r:0/3][V:1]c8|[V:2]C8|\n[r:1/2][V:1]d4")  # plans 4 lines, 1 whole
    progress.patch(1, HEADER + "[r:0/1][V:1]c8|")  # plans 2, none whole
    assert progress.counts() == (1, 6, "bars")
    progress.patch(0, HEADER + "[r:0/3][V:1]c8|[V:2]C8|\n")  # drawn again: the furthest still counts
    assert progress.counts() == (1, 6, "bars")
    progress.restarted(0)  # began again from its prompt
    progress.patch(0, HEADER)
    assert progress.counts() == (5, 100, "patches")  # patches of the limit: every one written counts
    assert BatchProgress(1, max_patches=0).counts() == (0, 0, "")  # nothing to count against


def test_why_the_engine_went_back_reads_in_words():
    def note(kind, line=14, to_line=14, count=1, reason="voice 2 is 3/4 long, voice 1 4/4"):
        return move_note(1, MoveEvent(kind, line, to_line, count, reason))

    assert note(MoveKind.HEADER, 0, 0, 3, "voice 2 is defined twice in the header") == (
        "piece 2: the header it wrote cannot make a score (voice 2 is defined twice in the header); "
        "starting again (3rd time)")
    assert note(MoveKind.LINE) == (
        "piece 2: bar 14's voices did not line up (voice 2 is 3/4 long, voice 1 4/4); drawing it again")
    assert note(MoveKind.LINE, count=2).endswith("drawing it again (2nd time)")
    assert note(MoveKind.BACK, to_line=13, count=2).endswith("still did not line up "
                                                             "(voice 2 is 3/4 long, voice 1 4/4); going back to bar 13")
    assert note(MoveKind.BACK).startswith("piece 2: it ended on bar 14, which does not close")
    assert note(MoveKind.RESTART, count=1).endswith("starting the piece again (1st time)")
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]


def test_the_same_bar_drawn_again_keeps_one_note_and_only_the_latest_notes_are_kept():
    notes = MoveNotes(kept=2)
    notes.add(0, MoveEvent(MoveKind.LINE, 9, 9, 1, "voices differ in length"))
    shown = notes.add(0, MoveEvent(MoveKind.LINE, 9, 9, 2, "voices differ in length"))
    assert shown == ["piece 1: bar 9's voices did not line up (voices differ in length); drawing it again (2nd time)"]
    notes.add(1, MoveEvent(MoveKind.LINE, 9, 9, 1, "voices differ in length"))  # another piece: its own note
    shown = notes.add(0, MoveEvent(MoveKind.HEADER, 0, 0, 1, "voice 2 is defined twice in the header"))
    assert len(shown) == 2 and shown[0].startswith("piece 2: bar 9") and shown[1].startswith("piece 1: the header")


def test_a_piece_being_written_is_engraved_as_far_as_it_goes_and_shared_by_watchers(backend, chorale):
    written = continuation_prefix(chorale, Prompt(*BACH), keep_lines=4)
    go_on = threading.Event()

    def writing(ctx):  # stands in for the engine: the text of one piece, one line under way
        ctx.stream("raw", {0: written + "[r:4/7][V:1]c2"})
        go_on.wait(30)
        return {}

    backend.jobs.register("writing", Runner("gpu", writing))
    job = backend.jobs.submit("writing", {})
    while not backend.jobs.live(job.id):
        backend.jobs.wait(job.id, 0.05)
    first = backend.generation.sketch(job.id)
    assert [(s.row, s.lines, s.error) for s in first] == [(0, 4, "")]
    assert first[0].svg_pages and first[0].svg_pages[0].lstrip().startswith(("<svg", "<?xml"))
    assert backend.generation.sketch(job.id)[0] is first[0]  # no new line: the same engraving, not made again
    go_on.set()
    backend.jobs.wait(job.id, 10)


def test_the_estimate_and_the_cpu_defaults_come_from_this_devices_speed(backend):
    guess = backend.generation.estimate(TINY, 1, 100, 600.0)
    per_patch, batch, measured = backend.generation.speed(TINY)
    assert not measured and batch == 1 and guess.seconds == pytest.approx(100 * per_patch)
    assert guess.device == "cpu" and "on this CPU" in guess.words() and "first guess" in guess.words()
    assert backend.generation.estimate(TINY, 2, 100, 600.0).seconds == pytest.approx(2 * guess.seconds)
    capped = backend.generation.estimate(TINY, 1, 100, 1.0)
    assert capped.seconds == 1.0 and "the 1 s time limit" in capped.words()
    unlimited = backend.generation.estimate(TINY, 1, 0, 3600.0)
    assert unlimited.seconds == pytest.approx(TYPICAL_PATCHES * per_patch) and "typical length" in unlimited.words()
    # a job on this device: its own speed from then on
    done = backend.jobs.wait(backend.generation.submit(GenerationSpec(TINY, *BACH, max_patches=12)).id, 300)
    result = backend.generation.result(done)
    assert (result.device, result.steps) == ("cpu", 12) and result.seconds > 0
    assert backend.generation.speed(TINY) == (result.seconds / 12, 1, True)
    measured = backend.generation.estimate(TINY, 1, 12, 600.0)
    assert measured.seconds == pytest.approx(result.seconds) and "first guess" not in measured.words()
    patches = backend.generation.defaults(TINY)["max_patches"]  # about a minute's worth on this CPU
    assert patches == max(CPU_MIN_PATCHES, round(CPU_TARGET_S * 12 / result.seconds, -1))
    assert backend.generation.defaults(TINY)["max_seconds"] == default_of(GenerationLimits, "max_seconds")


def test_the_spec_checks_the_meter_key_tempo_and_length_as_the_header_controls_do():
    from pipelines.generation.header import HeaderControls

    for name in ("meter", "key", "tempo", "bars"):
        assert default_of(GenerationSpec, name) == default_of(HeaderControls, name), name
        assert range_of(GenerationSpec, name) == range_of(HeaderControls, name), name
    spec = GenerationSpec(TINY, *BACH, meter=" 3/4", key="F#m", tempo="96", bars=16.0)  # as a browser sends them
    assert spec.header() == HeaderControls(meter="3/4", key="F#min", tempo=96, bars=16)
    assert GenerationSpec(TINY, *BACH, meter=None, key=None).header() == HeaderControls()
    for change, words in [({"meter": "3/5"}, "meter '3/5' is not a time signature"),
                          ({"key": "H"}, "key 'H' is not a key"),
                          ({"key": "G#"}, "write it as Ab"),
                          ({"tempo": 10}, "tempo must be 20 to 300, not 10"),
                          ({"bars": 0}, "length in bars must be 1 to 999, not 0")]:
        with pytest.raises(SettingError, match=words):
            GenerationSpec(TINY, *BACH, **change)


def test_a_continuation_keeps_its_own_meter_and_key(backend, postprocessed):
    chorale = postprocessed["bach_bwv66.6_C"]  # M:4/4, K:Amin
    own = GenerationSpec(TINY, *BACH, continue_abc=chorale, continue_name="chorale.abc", meter="4/4", key="Am")
    assert own.prefix()  # the piece's own values are accepted
    spec = GenerationSpec(TINY, *BACH, continue_abc=chorale, continue_name="chorale.abc", meter="3/4")
    with pytest.raises(SettingError, match=r"chorale.abc: the score to continue keeps its own meter: it has 4/4"):
        backend.generation.submit(spec)
    assert backend.jobs.list() == []


def test_the_choices_offered_come_from_the_model_card(backend):
    import torch

    from pipelines.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint

    common = backend.models.header_choices(TINY, "Baroque_Bach, Johann Sebastian_Choral")
    assert not common.recorded and "records no meters or keys" in common.note
    assert common.meters[:3] == ["4/4", "3/4", "2/4"] and "Amin" in common.keys
    tiny = load_checkpoint(backend.workspace.root / TINY)
    card = ModelCard(config=tiny.card.config, prompts=["Baroque_Bach, Johann Sebastian_Choral"],
                     header_choices={"Baroque_Bach, Johann Sebastian_Choral": {
                         "meters": {"3/4": 1, "4/4": 5}, "keys": {"G": 2, "Emin": 3, "Amin": 3}}})
    with torch.no_grad():
        save_checkpoint(backend.workspace.area("models") / "recorded.pth", tiny.model, card)
    choices = backend.models.header_choices("models/recorded.pth", "Baroque_Bach, Johann Sebastian_Choral")
    assert choices.recorded and choices.seen_meters == ["4/4", "3/4"] and choices.seen_keys == ["Amin", "Emin", "G"]
    assert choices.meters[:3] == ["4/4", "3/4", "2/4"] and choices.keys[:4] == ["Amin", "Emin", "G", "C"]
    other = backend.models.header_choices("models/recorded.pth", "Romantic_Chopin, Frederic_Keyboard")
    assert not other.recorded and "for this prompt" in other.note
    # A value the model never saw is allowed, with a note in the job's warning.
    spec = GenerationSpec("models/recorded.pth", *BACH, max_patches=2, meter="5/4", key="G")
    done = backend.jobs.wait(backend.generation.submit(spec).id, 300)
    assert done.state == "done", done.error
    warning = backend.generation.result(done).warning
    assert "never saw the meter 5/4 in its Baroque_Bach, Johann Sebastian_Choral pieces" in warning
    assert "key G" not in warning
    assert backend.library.get(backend.generation.result(done).pieces[0].id).parameters["meter"] == "5/4"


def test_a_fast_path_that_fails_its_check_is_said_in_the_jobs_warning(backend, monkeypatch):
    """The pieces come through the modules, right but slower; the musician reads why."""
    from pipelines.generation.plan import DecodeOptions
    from pipelines.generation.torch_pair import TorchPairStack

    monkeypatch.setattr("pipelines.generation.plan.triton_available", lambda: False)
    right = TorchPairStack.__call__
    monkeypatch.setattr(TorchPairStack, "__call__", lambda self, *a: right(self, *a) + 0.5)  # a wrong pass
    engine = backend.models.slot.get(backend.workspace.root / TINY, "cpu", "fp32")
    engine.options = DecodeOptions(pair=True)  # as a GPU would plan it: two chars a pass in PyTorch
    done = backend.jobs.wait(backend.generation.submit(GenerationSpec(TINY, *BACH, max_patches=2)).id, 300)
    assert done.state == "done", done.error
    warning = backend.generation.result(done).warning
    assert "two chars a pass in PyTorch' failed its check at load" in warning and "slower" in warning


def five_bars() -> str:
    """The first five bars of a chorale in the training format (they fit the tiny model's context)."""
    from pipelines.generation.continuation import read_score
    from tests.paths import PREPROCESS

    return continuation_prefix(read_score(PREPROCESS / "bach_bwv7.7.musicxml"), Prompt(*BACH), keep_lines=5,
                               add_lines=1)


FLAT = {"top_k": 0, "top_p": 1.0, "temperature": 1.0}  # random weights: every char, a newline too, can come


def test_a_bar_written_again_comes_back_as_ranked_candidates_each_naming_its_parent(backend):
    from pipelines.generation.continuation import score_lines
    from pipelines.service import Generation

    source = five_bars()
    parent = backend.library.add(Generation(model=TINY, prompt=Prompt(*BACH).line, seed=1, status="ok", abc=source))
    spec = GenerationSpec(TINY, *BACH, count=3, seed=1, bar=3, bar_retries=0, continue_abc=source,
                          continue_name="bwv7.7.abc", parent_id=parent, **FLAT)
    job = backend.generation.submit(spec)
    assert job.title.startswith("write bar 3 again (3 candidates)")
    done = backend.jobs.wait(job.id, 300)
    assert done.state == "done", done.error
    entries = [backend.library.get(p.id) for p in backend.generation.result(done).pieces]
    assert len(entries) >= 2  # a candidate that wrote no whole bar is left out
    assert [e.parameters["rank"] for e in entries] == list(range(1, len(entries) + 1))
    scores = [e.parameters["following_logprob"] for e in entries]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)  # best first, in nats
    _, body = score_lines(source)
    for e in entries:
        assert e.parent_id == parent and e.parameters["bar"] == 3 and "parent_id" not in e.parameters
        _, lines = score_lines(e.raw)
        assert lines[:2] == body[:2] and lines[3:] == body[3:]  # every other bar kept
    assert len({score_lines(e.raw)[1][2] for e in entries}) == len(entries)  # each its own bar 3
    assert backend.generation.written_jobs() == []  # one bar each: no measure of a piece's speed or length


def test_a_bar_to_write_again_is_checked_before_the_job_is_queued(backend):
    source = five_bars()
    for bar, words in ((1, "must be 2 to 4"), (5, "must be 2 to 4")):
        with pytest.raises(NotaGenError, match=words):
            backend.generation.submit(GenerationSpec(TINY, *BACH, bar=bar, continue_abc=source))
    with pytest.raises(SettingError, match="keeps every other bar"):
        backend.generation.submit(GenerationSpec(TINY, *BACH, bar=3, keep_lines=2, continue_abc=source))
    with pytest.raises(SettingError, match="choose the score whose bar 3 .* set that bar to 0 for a new piece"):
        backend.generation.submit(GenerationSpec(TINY, *BACH, bar=3))
    with pytest.raises(NotaGenError, match="no generation 99"):
        backend.generation.submit(GenerationSpec(TINY, *BACH, continue_abc=source, parent_id=99))
    assert backend.jobs.list() == []


def test_variations_of_a_library_piece_name_it_as_their_parent(backend):
    from pipelines.files import atomic_write_text
    from pipelines.service import Generation

    source = five_bars()
    path = atomic_write_text(backend.generation.exports / "earlier" / "piece.abc", source)
    parent = backend.library.add(Generation(model=TINY, prompt=Prompt(*BACH).line, seed=1, status="ok", abc=source,
                                            period=BACH[0], composer=BACH[1], instrumentation=BACH[2],
                                            files={"abc": backend.workspace.relative(path)},
                                            parameters={"max_patches": 8, **FLAT}))
    spec, abc_file = backend.generation.variations(parent, from_bar=4, count=2)
    spec = replace(spec, continue_abc=backend.generation.read_score(abc_file), continue_name=abc_file.name)
    done = backend.jobs.wait(backend.generation.submit(spec).id, 300)
    assert done.state == "done", done.error
    entries = [backend.library.get(p.id) for p in backend.generation.result(done).pieces]
    assert [(e.parent_id, e.seed, e.continued_from) for e in entries] == [(parent, 2, "piece.abc"),
                                                                          (parent, 3, "piece.abc")]
    assert [e.id for e in backend.library.search(versions_of=parent)] == [parent]  # none kept yet


def test_pieces_shown_side_by_side_are_engraved_for_a_column_and_keep_a4_in_their_pdf(backend, chorale):
    import re

    from pipelines.service.generation import COLUMN_PAGE_WIDTH

    folder = backend.generation.exports / "columns"
    alone = backend.generation.render_piece(chorale, folder, "alone")
    beside = backend.generation.render_piece(chorale, folder, "beside", column=True)
    assert not alone.error and not beside.error

    def width(rel: str) -> float:
        svg = backend.generation.exported_file(rel).read_text(encoding="utf-8")
        return float(re.search(r'<svg[^>]*\bwidth="([\d.]+)px"', svg).group(1))

    assert width(beside.svg_pages[0]) == pytest.approx(width(alone.svg_pages[0]) * COLUMN_PAGE_WIDTH / 2100, rel=0.02)
    assert len(beside.svg_pages) >= len(alone.svg_pages)  # the same staff size: more systems
    follow = [json.loads(backend.generation.exported_file(p.files["follow"]).read_text(encoding="utf-8"))
              for p in (alone, beside)]
    assert [f["pages"] for f in follow] == [len(alone.svg_pages), len(beside.svg_pages)]  # the pages shown
    shown = [backend.generation.exported_file(rel).read_text(encoding="utf-8") for rel in beside.svg_pages]
    # each note the column's score lights is on the column's page it names; the same notes at the same times
    assert all(f'id="{note}"' in shown[where[0]] for note, where in follow[1]["notes"].items())
    assert [span[:2] for span in follow[0]["spans"]] == [span[:2] for span in follow[1]["spans"]]
    pdf = [backend.generation.exported_file(p.files["pdf"]).read_bytes() for p in (alone, beside)]
    assert pdf[0] == pdf[1] or len(pdf[0]) == pytest.approx(len(pdf[1]), rel=0.01)  # both A4
    assert GenerationSpec(TINY, *BACH, count=2, continue_abc="X:1").side_by_side
    assert not GenerationSpec(TINY, *BACH, count=2).side_by_side
    assert not GenerationSpec(TINY, *BACH, count=1, continue_abc="X:1").side_by_side


def planned_piece(asked: int, written: int, model: str = TINY, **fields):
    """A finished piece in the library asked for `asked` bars whose tune body has `written` lines."""
    from pipelines.service import Generation

    body = "".join(f"[r:{i}/{written - 1 - i}][V:1]c8|\n" for i in range(written))
    fields = {"status": "ok", "parameters": {"bars": asked}, "abc": "X:1\nK:C\nc8|\n", **fields}
    return Generation(model=model, prompt="Baroque_Bach, Johann Sebastian_Choral", seed=0,
                      raw="L:1/8\nM:4/4\nK:C\nV:1 treble\n" + body, **fields)


def test_how_close_a_models_pieces_land_to_the_length_asked_is_read_from_its_pieces(backend):
    for asked, written in ((8, 8), (8, 9), (16, 8)):
        backend.library.add(planned_piece(asked, written))
    backend.library.add(planned_piece(8, 30, status="limit", abc=None))  # cut off: says nothing of its plan
    backend.library.add(planned_piece(8, 20, parameters={"bars": 8, "continue_name": "mine.abc"}))  # a continuation
    backend.library.add(planned_piece(8, 20, parameters={}))  # no length asked
    backend.library.add(planned_piece(4, 12, model="models/other.pth"))
    record = backend.generation.length_record(TINY)
    assert record.pieces == 3 and [f.requested for f in record.fits] == [8, 16]
    assert record.within(0.25) == pytest.approx(2 / 3) and record.mean_error == pytest.approx((0 + 1 - 8) / 3)
    assert record.keeps_count
    other = backend.generation.length_record("models/other.pth")
    assert other.pieces == 1 and other.mean_error == 8 and not other.keeps_count
    assert backend.generation.length_record("models/none.pth").pieces == 0
