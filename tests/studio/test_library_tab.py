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
    column = library.HEADERS.index("continued from")
    assert (rows[continued][column], rows[new][column]) == ("bwv1.6.mxl", "")
    assert rows[new][library.HEADERS.index("prompt")] == "Baroque / Bach, Johann Sebastian / Choral"
    heading = library.open_piece(backend, continued)[0]
    assert heading.endswith("continued from bwv1.6.mxl"), heading
    assert "continued" not in library.open_piece(backend, new)[0]


def test_the_piece_buttons_wait_for_a_piece():
    assert all(u["interactive"] is False for u in library.piece_buttons(None))
    assert all(u["interactive"] is True for u in library.piece_buttons(3))
