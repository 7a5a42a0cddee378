"""The chorale engraved once for the render tests (with its PDF)."""
import pytest

from pipelines.render.score import render_abc


@pytest.fixture(scope="module")
def chorale_result(chorale):
    return render_abc(chorale)  # with the PDF
