"""The generation service: its spec's defaults and checks, and continuing an uploaded MusicXML score end to end."""
from __future__ import annotations

import pytest

from pipelines.errors import AbcError, NotaGenError, SettingError
from pipelines.fields import default_of, range_of
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.service import GenerationSpec

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
