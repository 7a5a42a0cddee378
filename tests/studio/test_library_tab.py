"""The Library tab's handlers, called directly: the table follows the library without a Search click (on the
tab's selection, after a rating, when the revision moved) and a continued piece says what it continues."""
import gradio as gr
import pytest

from pipelines.service import Backend, Generation
from studio.tabs import library

SKIP = gr.skip()
BACH = {"period": "Baroque", "composer": "Bach, Johann Sebastian", "instrumentation": "Choral",
        "prompt": "Baroque_Bach, Johann Sebastian_Choral"}


def piece(**changes) -> Generation:
    return Generation(**{"model": "demo", "seed": 1, "status": "ok", "abc": "X:1\nK:C\nC|\n", **BACH, **changes})


@pytest.fixture
def backend(tmp_path):
    backend = Backend.open(tmp_path / "workspace")
    yield backend
    backend.close()


def selected(tab: str) -> gr.SelectData:
    return gr.SelectData(None, {"index": 0, "value": tab})


def test_the_table_shows_new_pieces_and_ratings_without_a_search(backend):
    first = backend.library.add(piece())
    table, seen = library.refresh(backend, -1)
    assert [row[0] for row in table] == [first]
    assert library.refresh(backend, seen) == (SKIP, SKIP)  # nothing changed: nothing is sent
    second = backend.library.add(piece(seed=2))
    table, seen = library.refresh(backend, seen)
    assert [row[0] for row in table] == [second, first]
    assert library.rate_up(backend, first) == "rated: thumbs up"
    table, seen = library.refresh(backend, seen, "", "any", "thumbs up")  # the filters still apply
    assert [(row[0], row[-1]) for row in table] == [(first, "up")]


def test_selecting_the_tab_reloads_the_table_and_runs_its_timer_only_while_shown(backend):
    entry = backend.library.add(piece())
    timer, table, seen = library.tab_selected(backend, -1, "", "any", "any", selected("Library"))
    assert timer["active"] is True and [row[0] for row in table] == [entry] and seen == backend.library.revision()
    timer, table, seen = library.tab_selected(backend, seen, "", "any", "any", selected("Library"))
    assert timer["active"] is True and (table, seen) == (SKIP, SKIP)
    timer, table, seen = library.tab_selected(backend, -1, "", "any", "any", selected("Generate"))
    assert timer["active"] is False and (table, seen) == (SKIP, SKIP)


def test_a_continued_piece_says_which_score_it_continues(backend):
    new = backend.library.add(piece(parameters={"continue_name": ""}))
    continued = backend.library.add(piece(parameters={"continue_name": "bwv1.6.mxl", "keep_lines": 4}))
    rows = {row[0]: row for row in library.search(backend)}
    column = library.HEADERS.index("from")
    assert (rows[continued][column], rows[new][column]) == ("bwv1.6.mxl", "")
    assert rows[new][library.HEADERS.index("prompt")] == "Baroque / Bach, Johann Sebastian / Choral"
    heading = library.open_piece(backend, continued)[0]
    assert heading.endswith("continued from bwv1.6.mxl"), heading
    assert "continued" not in library.open_piece(backend, new)[0]


def test_the_piece_buttons_wait_for_a_piece():
    assert all(u["interactive"] is False for u in library.piece_buttons(None))
    assert all(u["interactive"] is True for u in library.piece_buttons(3))


def test_variations_of_a_piece_fill_the_generate_tab_from_a_bar_on(backend, fixtures):
    import json
    from dataclasses import replace

    from pipelines.errors import NotaGenError, SettingError
    from pipelines.files import atomic_write_text
    from pipelines.generation.continuation import continuation_prefix, score_lines
    from studio.app import build_app
    from studio.tabs import generate

    chorale = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))[0]["postprocessed"]
    bars = len(score_lines(chorale)[1])
    path = atomic_write_text(backend.generation.exports / "job1" / "chorale.abc", chorale)
    entry = backend.library.add(piece(abc=chorale, seed=5, files={"abc": backend.workspace.relative(path)},
                                      parameters={"top_k": 7, "max_patches": 300}))
    spec, abc_file = backend.generation.variations(entry, from_bar=3, count=4)
    assert abc_file == path and (spec.keep_lines, spec.add_lines) == (2, bars - 2)
    assert (spec.count, spec.seed, spec.top_k, spec.model) == (4, 6, 7, "demo")  # its settings, new seeds
    for wrong in (1, bars + 1):
        with pytest.raises(SettingError, match=f"vary from bar 2 to {bars}"):
            backend.generation.variations(entry, from_bar=wrong, count=2)
    unfinished = backend.library.add(piece(abc=None, status="limit"))
    with pytest.raises(NotaGenError, match="no finished score to vary"):
        backend.generation.variations(unfinished, from_bar=2, count=2)
    build_app(backend)  # the tabs' widgets exist once the app is built
    shown = library.vary(backend, entry, 3, 4)
    g = generate.ui
    assert (shown[g["keep_lines"]], shown[g["add_lines"]], shown[g["upload"]]) == (2, bars - 2, str(path))
    assert shown[g["count"]] == 4 and shown[library.ui["tabs"]].selected == "generate"
    assert (spec.parent_id, shown[g["parent"]], shown[g["bar"]]) == (entry, entry, 0)  # the variations' parent

    spec, abc_file = backend.generation.bar_rewrite(entry, bar=3, candidates=5)
    assert abc_file == path
    assert (spec.bar, spec.count, spec.seed, spec.keep_lines, spec.parent_id) == (3, 5, 6, 0, entry)
    assert replace(spec, continue_abc=chorale).prefix() == continuation_prefix(chorale, spec.prompt, keep_lines=2,
                                                                               add_lines=bars - 2)
    for wrong in (1, bars):
        with pytest.raises(SettingError, match=f"rewrite a bar from 2 to {bars - 1}"):
            backend.generation.bar_rewrite(entry, bar=wrong, candidates=2)
    shown = library.rewrite(backend, entry, 3, 5)
    assert (shown[g["bar"]], shown[g["keep_lines"]], shown[g["count"]], shown[g["parent"]]) == (3, 0, 5, entry)


def test_a_kept_version_names_its_parent_and_is_listed_with_it(backend):
    parent = backend.library.add(piece())
    variation = backend.library.add(piece(seed=2, parent_id=parent, parameters={"keep_lines": 4}))
    candidate = backend.library.add(piece(seed=3, parent_id=parent,
                                          parameters={"bar": 5, "rank": 1, "following_logprob": -85.24}))
    backend.library.add(piece(seed=4))
    column = library.HEADERS.index("from")
    rows = {row[0]: row for row in library.search(backend)}
    assert (rows[variation][column], rows[candidate][column], rows[parent][column]) == (f"#{parent}",
                                                                                          f"#{parent} bar 5", "")
    assert library.open_piece(backend, variation)[0].endswith(f"a variation of #{parent} from bar 5")
    opened = library.open_piece(backend, candidate)
    assert opened[0].endswith(
        f"bar 5 of #{parent} written again: rank 1, the bars after it at -85.2 (the model&#x27;s log-likelihood)")
    keep_button = library.DETAIL_OUTPUTS.index("keep")
    assert opened[keep_button]["visible"] and not library.open_piece(backend, parent)[keep_button]["visible"]
    kept, button = library.keep(backend, candidate)
    assert kept == (f"**Kept** as #{candidate}, version 2 of #{parent}: find it in the "
                    f"Library (Versions of #{parent}).") and not button["visible"]
    assert "open a piece first" == library.keep(backend, None)[0]
    with pytest.raises(gr.Error, match="is a new piece"):
        library.bind(library.keep, backend)(parent)
    rows = library.search(backend, versions=parent)
    assert [(row[0], row[column]) for row in rows] == [(candidate, f"v2 of #{parent} bar 5"), (parent, "")]
    card = library.open_piece(backend, candidate)
    assert f"version 2 of #{parent}: bar 5" in card[0] and card[5].startswith("**Kept**")
    assert not card[keep_button]["visible"]  # kept already


def test_a_piece_is_compared_with_another_of_its_prompt_and_a_judgement_removed(backend):
    older = backend.library.add(piece(seed=1))
    heard = backend.generation.exports / "job" / "other.wav"  # the handler passes its path on; nothing reads it here
    heard.parent.mkdir(parents=True)
    heard.write_bytes(b"RIFF")
    other = backend.library.add(piece(seed=2, files={"wav": backend.workspace.relative(heard)}))
    this = backend.library.add(piece(seed=3))
    backend.library.add(piece(seed=4, prompt="Classical_Mozart, Wolfgang Amadeus_Chamber", period="Classical"))
    backend.library.add(piece(seed=5, status="limit", abc=None))
    opened = library.open_piece(backend, this)
    compare, other_audio, judged, judgement = opened[-len(library.COMPARE_OUTPUTS):]
    # the other finished pieces of its prompt, newest first
    assert [value for _, value in compare["choices"]] == [other, older] and compare["value"] is None
    assert compare["choices"][0][0].startswith(f"#{other} - seed 2 - ")
    assert compare["info"] == "2 other finished pieces of this prompt"
    assert other_audio["visible"] is False and judged == "Not compared with another piece yet."
    assert judgement["visible"] is False  # nothing to remove
    audio, better, worse = library.compare_picked(backend, other)
    assert better["interactive"] is True and worse["interactive"] is True
    assert audio["visible"] is True and audio["value"] == str(heard)  # the other piece, to listen to
    assert library.compare_picked(backend, older)[0]["visible"] is False  # no audio made: no player
    judged, judgement, remove = library.prefer_this(backend, this, other)
    assert [(j.better, j.worse) for j in backend.library.judgements()] == [(this, other)]
    assert judged.startswith("**Compared** (1):\n- This piece is better than #" + str(other))
    judged, judgement, remove = library.prefer_other(backend, this, other)  # judged again: the latest stands
    assert [(j.better, j.worse) for j in backend.library.judgements()] == [(other, this)]
    judged, judgement, remove = library.prefer_other(backend, this, older)
    assert judged.startswith("**Compared** (2):\n- This piece is worse than #" + str(older))
    shown = [label.split(" (")[0] for label, _ in judgement["choices"]]
    assert shown == [f"worse than #{older}", f"worse than #{other}"]
    assert judgement["visible"] is True and remove["interactive"] is False  # until a judgement is picked
    assert library.judgement_picked(judgement["choices"][0][1])["interactive"] is True
    judged, judgement, remove = library.remove_judgement(backend, this, judgement["choices"][0][1])
    assert [(j.better, j.worse) for j in backend.library.judgements()] == [(other, this)]
    assert library.open_piece(backend, older)[-2] == "Not compared with another piece yet."
    with pytest.raises(gr.Error, match="pick a piece to compare with first"):
        library.prefer_this(backend, this, None)
    with pytest.raises(gr.Error, match="different prompts"):
        library.bind(library.prefer_this, backend)(this, this + 1)  # the Mozart piece: another prompt
    unfinished = library.open_piece(backend, this + 2)[-len(library.COMPARE_OUTPUTS)]
    assert unfinished["choices"] == [] and unfinished["info"] == "only a finished piece can be compared"
