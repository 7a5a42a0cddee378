"""The datasets service: a build from an import folder as a job with a typed result, then the labels of its
pieces listed, checked and rewritten."""
from __future__ import annotations

import json
import shutil

import pytest

from pipelines.errors import DatasetError, JobError, PromptError
from pipelines.service import Backend, DatasetSpec, PieceLabels


@pytest.fixture(scope="module")
def built(tmp_path_factory, fixtures):
    backend = Backend.open(tmp_path_factory.mktemp("datasets") / "workspace")
    folder = backend.workspace.area("imports") / "chorale"
    folder.mkdir()
    shutil.copy(fixtures / "preprocess" / "bach_bwv66.6.musicxml", folder)
    job = backend.datasets.submit(DatasetSpec(name="one", source="chorale", eval_split=0.0, period="Baroque"))
    yield backend, backend.jobs.wait(job.id, 300)
    backend.close()


def test_a_build_is_a_job_with_a_typed_result(built):
    backend, done = built
    assert done.state == "done", done.error
    result = backend.datasets.result(done)
    assert not result.cancelled and "1 converted" in result.summary and "workspace" in result.summary
    assert [(f.source, f.piece, f.status) for f in result.files] == [("bach_bwv66.6.musicxml", "bach_bwv66.6", "ok")]
    assert backend.datasets.built() == ["one"]
    summary = backend.datasets.list()[0]
    assert (summary.name, summary.pieces, summary.train, summary.eval) == ("one", 1, 1, 0)


def test_labels_are_listed_checked_and_rewritten(built):
    backend, _ = built
    (row,) = backend.datasets.pieces("one")
    assert (row.piece, row.period, row.split) == ("bach_bwv66.6", "Baroque", "train")
    assert PieceLabels.columns()[:4] == ["piece", "period", "composer", "instrumentation"]
    with pytest.raises(PromptError, match="must be ASCII"):
        backend.datasets.check_labels("Baroque", "Dvořák, Antonín", "Choral")
    assert backend.datasets.check_labels("Baroque", "Nobody, Known", "Choral")  # outside NotaGen-X's vocabulary
    assert backend.datasets.save_labels("one", [row]) == 0  # unchanged
    changed = PieceLabels(row.piece, "Classical", "Bach, Johann Sebastian", "Choral")
    assert backend.datasets.save_labels("one", [changed]) == 1
    assert backend.datasets.pieces("one")[0].period == "Classical"
    assert "[V:1]" in backend.datasets.piece_abc("one", row.piece)
    assert set(backend.datasets.suggestions("one")) == {row.piece}
    with pytest.raises(DatasetError, match="has no piece 'nope'"):
        backend.datasets.save_labels("one", [PieceLabels("nope")])


@pytest.fixture
def backend(chorale_backend):
    return chorale_backend


def test_a_second_build_of_the_same_dataset_is_refused_while_the_first_runs(backend):
    first = backend.datasets.submit(DatasetSpec(name="one", source="chorale", eval_split=0.0))
    with pytest.raises(JobError, match=r"'build dataset one' is already (queued|running) \(job .*cancel it first"):
        backend.datasets.submit(DatasetSpec(name="one", source="chorale", eval_split=0.0))
    other = backend.datasets.submit(DatasetSpec(name="two", source="chorale", eval_split=0.0))  # another dataset
    assert backend.jobs.wait(first.id, 300).state == "done"
    assert backend.jobs.wait(other.id, 300).state == "done"
    again = backend.datasets.submit(DatasetSpec(name="one", source="chorale", eval_split=0.0))  # once it ended
    assert backend.jobs.wait(again.id, 300).state == "done"


def test_a_rebuild_keeps_the_labels_saved_in_annotate(backend):
    spec = DatasetSpec(name="one", source="chorale", eval_split=0.0, period="Baroque")
    assert backend.jobs.wait(backend.datasets.submit(spec).id, 300).state == "done"
    (row,) = backend.datasets.pieces("one")
    assert backend.datasets.save_labels("one", [PieceLabels(row.piece, "Romantic", row.composer, "Keyboard")]) == 1
    assert backend.jobs.wait(backend.datasets.submit(spec).id, 300).state == "done"  # period="Baroque" given again
    (kept,) = backend.datasets.pieces("one")
    assert (kept.period, kept.composer, kept.instrumentation) == ("Romantic", row.composer, "Keyboard")


def test_the_suggested_column_always_shows_three_labels(backend):
    spec = DatasetSpec(name="one", source="chorale", eval_split=0.0)
    assert backend.jobs.wait(backend.datasets.submit(spec).id, 300).state == "done"
    (row,) = backend.datasets.pieces("one")
    assert row.suggested.count(" / ") == 2, row.suggested
    manifest_path = backend.datasets.folder("one") / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["pieces"][row.piece]["suggested"] = {"period": None, "composer": "Bach, Johann Sebastian",
                                                  "instrumentation": None}
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert backend.datasets.pieces("one")[0].suggested == "- / Bach, Johann Sebastian / -"


def test_a_build_of_junk_only_is_marked_empty_with_each_files_reason(backend):
    folder = backend.workspace.area("imports") / "junk"
    folder.mkdir()
    (folder / "shopping.abc").write_text("This is my shopping list\n", encoding="utf-8")
    done = backend.jobs.wait(backend.datasets.submit(DatasetSpec(name="junk", source="junk")).id, 300)
    result = backend.datasets.result(done)
    assert done.state == "done" and result.empty and "nothing built" in result.summary
    assert [(f.source, f.status) for f in result.files] == [("shopping.abc", "failed")]
    assert result.files[0].reason.startswith("shopping.abc is not ABC notation")
    assert "junk" not in backend.datasets.built()


def test_uploads_whose_names_differ_only_in_capitals_are_kept_apart(backend, tmp_path, fixtures):
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copy(fixtures / "preprocess" / "bach_bwv66.6.musicxml", first)
    shutil.copy(fixtures / "preprocess" / "bach_bwv7.7.musicxml", second)
    folder = backend.datasets.store_uploads([(first, "Bach.musicxml"), (second, "bach.musicxml")], "mine")
    stored = backend.workspace.area("imports") / folder
    assert sorted(p.name for p in stored.iterdir()) == ["Bach.musicxml", "bach-2.musicxml"]
    assert (stored / "bach-2.musicxml").read_bytes() == second.read_bytes()  # the first was not overwritten
    backend.datasets.store_uploads([(second, "Bach.musicxml")], "mine")  # the same name again: replaced
    assert sorted(p.name for p in stored.iterdir()) == ["Bach.musicxml", "bach-2.musicxml"]
    assert (stored / "Bach.musicxml").read_bytes() == second.read_bytes()


def test_an_upload_over_the_size_cap_is_refused_by_its_own_name(backend, tmp_path):
    big = tmp_path / "gradio-temp-123"
    with big.open("wb") as f:
        f.truncate(21 * 2**20)
    with pytest.raises(DatasetError, match=r"^Opera\.musicxml is 21\.0 MB; score files of up to 20 MB are read$"):
        backend.datasets.store_uploads([(big, "Opera.musicxml")], "big")
