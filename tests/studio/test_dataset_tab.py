"""The Dataset and Annotate tabs' handlers, called directly: bad input answered in the status line with the
tables left alone, a double click, a build that converts nothing, and Annotate's messages that say what happened."""

import gradio as gr
import pytest

from pipelines.service import Backend
from studio.app import build_app
from studio.tabs import annotate, dataset

SKIP = gr.skip()


def build_args(**changes) -> dict:
    """The Dataset tab's build inputs, by name."""
    return {"source": "folder", "upload": None, "folder": "chorale", "corpus_limit": 1, "name": "chorale",
            "period": "", "composer": "", "instrumentation": "", "eval_split": 0.0, "max_unaligned_share": 1.0,
            **changes}


@pytest.fixture
def backend(chorale_backend):
    return chorale_backend


@pytest.mark.parametrize("changes, said", [
    ({"name": ""}, "dataset name"),
    ({"name": "../evil"}, "'..' is not allowed"),
    ({"source": "corpus", "corpus_limit": -5}, "the corpus limit must be at least 1"),
    ({"source": "corpus", "corpus_limit": 0}, "the corpus limit must be at least 1"),
    ({"folder": None}, "choose an import folder"),
    ({"folder": "nowhere"}, "nowhere"),
    ({"source": "upload", "upload": None}, "no files were uploaded"),
])
def test_bad_input_is_said_in_the_status_line_and_the_tables_stay(backend, changes, said):
    outputs = list(dataset.build(backend, **build_args(**changes)))
    assert len(outputs) == 1
    job, status, files, datasets = outputs[0][:4]
    assert (job, files, datasets) == (SKIP, SKIP, SKIP)
    assert status.startswith("**not started:**") and said in status, status
    assert not backend.jobs.list()


def test_a_double_click_starts_one_build(backend):
    first = dataset.build(backend, **build_args())
    job_id, status, _, _ = next(first)[:4]  # submitted: the first click follows its job
    assert job_id and not status.startswith("**not started")
    second = list(dataset.build(backend, **build_args()))
    assert len(second) == 1 and second[0][0] == SKIP and all(view == SKIP for view in second[0][2:])
    assert "'build dataset chorale' is already" in second[0][1] and "cancel it first" in second[0][1]
    *_, (last_id, line, rows, datasets, *_) = first
    assert last_id == job_id and "1 converted" in line
    assert [r[1:3] for r in rows] == [["bach_bwv66.6", "ok"]] and datasets[0][:2] == ["chorale", 1]
    assert len(backend.jobs.list()) == 1


def test_a_build_that_converts_nothing_is_shown_as_a_failure(backend):
    folder = backend.workspace.area("imports") / "junk"
    folder.mkdir()
    (folder / "shopping.abc").write_text("This is my shopping list\n", encoding="utf-8")
    *_, (_, line, rows, datasets, *_) = dataset.build(backend, **build_args(folder="junk", name="junk"))
    assert line.startswith("**failed:**") and "nothing built" in line and "shopping.abc is not ABC" in line
    assert rows == [["shopping.abc", "shopping", "failed", "import",
                     "shopping.abc is not ABC notation: it has no K: (key) line, so it holds no tune"]]
    assert "junk" not in [d[0] for d in datasets if d[1]]


def test_annotate_says_what_the_suggestions_and_save_changed(backend):
    *_, (_, line, *_) = dataset.build(backend, **build_args(instrumentation="Keyboard"))
    assert "1 converted" in line
    table, _, _ = annotate.load(backend, "chorale")
    assert table[0][3] == "Keyboard" and table[0][5] == "- / Music21 / Choral"  # no period suggested
    table, said = annotate.use_suggestions(backend, "chorale", table, [])
    assert said == "1 piece(s) now show the scores' suggestions; Save to keep them"
    assert table[0][3] == "Choral"
    table, _, said = annotate.save(backend, "chorale", table)
    assert said == "saved: 1 piece(s) changed; their headers were rewritten"
    table, said = annotate.use_suggestions(backend, "chorale", table, [])
    assert said.startswith("nothing to change for these 1 piece(s)")
    _, _, said = annotate.save(backend, "chorale", table)
    assert said == "nothing to save: every piece's labels are as they were"


@pytest.mark.parametrize("source, shown", [
    ("upload", (True, False, False)),
    ("folder", (False, True, False)),
    ("corpus", (False, False, True)),
])
def test_the_form_shows_only_the_boxes_of_the_chosen_source(source, shown):
    assert tuple(update["visible"] for update in dataset.source_boxes(source)) == shown


def test_the_form_opens_with_the_corpus_boxes(tmp_path):
    backend = Backend.open(tmp_path / "workspace")
    try:
        build_app(backend)
        assert dataset.ui["source"].value == "corpus"
        boxes = (dataset.ui["upload_box"], dataset.ui["folder_box"], dataset.ui["corpus_limit"])
        assert tuple(box.visible for box in boxes) == (False, False, True)
    finally:
        backend.close()


def test_annotate_without_a_dataset_says_to_build_one(backend):
    table, pieces, said = annotate.load(backend, None)
    assert table == [] and pieces["choices"] == [] and said == "no dataset yet: build one in the Dataset tab"
