"""The Generate tab's handlers: a cleared Model box, and an upload that is not music."""
from __future__ import annotations

import gradio as gr
import pytest

from studio.guard import bind
from studio.tabs import generate

TINY = "models/tiny.pth"


@pytest.fixture
def backend(tiny_backend):
    return tiny_backend


def emptied(update: dict) -> bool:
    return update["choices"] == [] and update["value"] is None and update["interactive"] is False


@pytest.mark.parametrize("cleared", ["", None])
def test_clearing_the_model_box_empties_the_prompts_with_a_quiet_note(backend, cleared):
    note, *prompts = bind(generate.choose_model, backend)(cleared)  # guarded, as Gradio calls it: no gr.Error
    assert note == generate.NO_MODEL_CHOSEN and len(prompts) == 3 and all(emptied(p) for p in prompts)
    composer, instrumentation = bind(generate.choose_period, backend)(cleared, "Baroque")
    assert emptied(composer) and emptied(instrumentation)
    assert emptied(bind(generate.choose_composer, backend)(cleared, "Baroque", "Bach, Johann Sebastian"))
    # choosing a model again turns the dropdowns back on
    _, *prompts = bind(generate.choose_model, backend)(TINY)
    assert all(p["interactive"] is True for p in prompts)


def test_a_model_that_is_not_there_is_still_refused(backend):
    with pytest.raises(gr.Error, match="no such file"):
        bind(generate.choose_model, backend)("models/notes.txt")


def test_an_upload_that_is_not_music_is_refused_at_preview_naming_it(backend, tmp_path):
    shopping = tmp_path / "shopping.abc"
    shopping.write_text("This is my shopping list\n", encoding="utf-8")
    with pytest.raises(gr.Error, match="shopping.abc: not an ABC tune"):
        bind(generate.preview_upload, backend)(str(shopping))
    score, audio, card, parent = generate.clear_preview()  # what the page shows while a new upload is read
    assert (score, audio, card["visible"], parent) == ("", None, False, None)  # a file of one's own: no parent


class Submitted(Exception):
    """Raised by a stand-in submit once the handler has made its spec."""


def test_a_continued_piece_keeps_the_uploads_name(backend, fixtures, monkeypatch):
    def submit(spec):
        raise Submitted(spec)

    monkeypatch.setattr(backend.generation, "submit", submit)
    xml = fixtures / "preprocess" / "bach_bwv66.6.musicxml"
    request = dict(model=TINY, period="Baroque", composer="Bach, Johann Sebastian", instrumentation="Choral")
    with pytest.raises(Submitted) as made:
        next(generate.generate(backend, str(xml), **request))
    spec = made.value.args[0]
    assert spec.continue_name == "bach_bwv66.6.musicxml" and "K:F#min" in spec.continue_abc


def test_the_limits_start_sized_to_the_device_and_the_estimate_follows_the_settings(backend):
    max_patches, max_seconds, said = bind(generate.size_request, backend)(TINY, 1)
    assert (max_patches, max_seconds) == tuple(backend.generation.defaults(TINY).values())
    assert said == f"Estimate: {backend.generation.estimate(TINY, 1, max_patches, max_seconds).words()}"
    assert "on this CPU" in said
    two = bind(generate.estimate, backend)(TINY, 2, max_patches, max_seconds)
    assert two == f"Estimate: {backend.generation.estimate(TINY, 2, max_patches, max_seconds).words()}" != said
    assert bind(generate.estimate, backend)("", 1, 10, 60) == ""  # no model chosen: nothing to estimate
    assert bind(generate.size_request, backend)("models/missing.pth", 1)[2] == ""  # the Model box says why


def test_the_meter_and_key_offered_follow_the_models_record_and_the_choice_reaches_the_request(backend,
                                                                                               monkeypatch):
    import torch

    from pipelines.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint

    tiny = load_checkpoint(backend.workspace.root / TINY)
    card = ModelCard(config=tiny.card.config, prompts=["Baroque_Bach, Johann Sebastian_Choral"],
                     header_choices={"Baroque_Bach, Johann Sebastian_Choral": {"meters": {"3/4": 4},
                                                                               "keys": {"Emin": 2}}})
    with torch.no_grad():
        save_checkpoint(backend.workspace.area("models") / "recorded.pth", tiny.model, card)
    prompt = ("Baroque", "Bach, Johann Sebastian", "Choral")
    meter, key, note = bind(generate.header_choices, backend)("models/recorded.pth", *prompt, "", "Gb")
    assert meter["choices"][:2] == [generate.MODELS_CHOICE, ("3/4 (in its pieces)", "3/4")] and meter["value"] == ""
    assert key["choices"][1] == ("Emin (in its pieces)", "Emin") and key["value"] == "Gb"  # the choice is kept
    assert note == ""
    _, _, note = bind(generate.header_choices, backend)(TINY, *prompt, "", "")
    assert "records no meters or keys" in note and "length" not in note  # no piece asked for a length yet
    from tests.service.test_generation import planned_piece

    for asked, written in ((8, 16), (8, 8)):
        backend.library.add(planned_piece(asked, written))
    _, _, note = bind(generate.header_choices, backend)(TINY, *prompt, "", "")
    assert ("this model's 2 finished pieces here landed within a quarter of it in 1 (on average +4.0 bars): it "
            "keeps count.") in note
    backend.library.add(planned_piece(8, 2))
    assert "does not keep count well" in bind(generate.header_choices, backend)(TINY, *prompt, "", "")[2]
    empty = bind(generate.header_choices, backend)(None, *prompt)
    assert empty[0]["choices"] == [generate.MODELS_CHOICE] and empty[2] == ""

    def submit(spec):
        raise Submitted(spec)

    monkeypatch.setattr(backend.generation, "submit", submit)
    request = dict(model=TINY, period="Baroque", composer="Bach, Johann Sebastian", instrumentation="Choral",
                   meter="3/4", key="Em", tempo=0, bars=16)
    with pytest.raises(Submitted) as made:
        next(generate.generate(backend, None, **request))
    spec = made.value.args[0]
    header = spec.header()  # a tempo of 0: the model's choice
    assert (header.meter, header.key, header.tempo, header.bars) == ("3/4", "Emin", None, 16)


def test_variations_of_one_piece_stand_side_by_side_each_with_keep_which_says_where_it_went(backend):
    from pipelines.service import Generation, GenerationResult, Job, PieceResult
    from pipelines.service.jobs import Runner

    bach = {"period": "Baroque", "composer": "Bach, Johann Sebastian", "instrumentation": "Choral",
            "prompt": "Baroque_Bach, Johann Sebastian_Choral", "model": TINY, "status": "ok", "abc": "X:1\nK:C\nC|\n"}
    parent = backend.library.add(Generation(seed=1, **bach))
    variations = [backend.library.add(Generation(seed=s, parent_id=parent, parameters={"keep_lines": 2}, **bach))
                  for s in (2, 3)]
    result = GenerationResult([PieceResult(i, 0, "ok", "", 10, "", []) for i in variations], "", TINY, bach["prompt"])
    backend.jobs.register("written", Runner("gpu", lambda ctx: result.to_dict()))  # a finished job's record
    request = {"model": TINY, "period": "Baroque", "composer": "Bach, Johann Sebastian", "instrumentation": "Choral"}
    done = backend.jobs.wait(backend.jobs.submit("written", {**request, "continue_abc": "X:1", "parent_id": parent,
                                                            "count": 2}).id, 30)
    shown = generate.finished(backend, done)
    note = shown[3 + len(generate.NO_SLOT) * generate.MAX_PIECES]
    assert 'class="side-by-side"' in note and f"2 variations of #{parent}" in note
    for i, entry_id in enumerate(variations):
        slot = dict(zip(generate.SLOT_VIEWS, shown[3 + i * len(generate.SLOT_VIEWS):]))
        assert slot["group"]["visible"] and f"#{entry_id}" in slot["heading"]
        assert f"a variation of #{parent} from bar 3" in slot["heading"]
        assert slot["keep"]["visible"] is True and slot["kept"] == "" and slot["best"]["visible"] is True
    # the second is the musician's pick: one pairwise judgement against the other, for DPO
    assert generate.prefer_best(backend, variations, slot=1) == (f"judged better than #{variations[0]} "
                                                                 "(pairwise judgements for DPO)")
    assert [(j.better, j.worse) for j in backend.library.judgements()] == [(variations[1], variations[0])]
    kept, button = generate.keep(backend, variations, slot=1)
    assert kept == (f"**Kept** as #{variations[1]}, version 2 of #{parent}: find it in the Library "
                    f"(Versions of #{parent}).") and button["visible"] is False
    assert backend.library.get(variations[1]).version == 2 and not backend.library.get(variations[0]).kept
    slot = dict(zip(generate.SLOT_VIEWS, generate.finished(backend, done)[3 + len(generate.SLOT_VIEWS):]))
    assert slot["keep"]["visible"] is False and slot["kept"] == kept  # shown again: kept, no button
    with pytest.raises(gr.Error, match="no piece in that place"):
        bind(generate.keep, backend)(variations, slot=2)
    # new pieces (no score continued) are not variations: each at full width, nothing to keep
    alone = Job("job2", "generate", "gpu", {**request, "count": 2}, state="done")
    assert generate.side_by_side_note(backend, alone, [backend.library.get(i) for i in variations]) == ""
    new = backend.library.add(Generation(seed=9, **bach))
    alone_slot = generate.piece_slot(backend, backend.library.get(new))  # a piece alone: no keep, no "best of"
    assert alone_slot[5]["visible"] is False and alone_slot[6]["visible"] is False
