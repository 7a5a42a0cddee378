"""The datasets service: a build from an import folder as a job with a typed result, then the labels of its
pieces listed, checked and rewritten."""
from __future__ import annotations

import shutil

import pytest

from pipelines.errors import DatasetError, PromptError
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
