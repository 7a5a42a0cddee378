"""studio.piece_view: a rendered piece's score carries its follow data, escaped, around page images the notes
light up on; a piece without it (older library entries) shows plain pages."""
import json
from html.parser import HTMLParser

import pytest

from pipelines.files import atomic_write_text
from pipelines.service import Backend, Generation
from studio.piece_view import entry_view, follow_script, preview_view, score_html


class Elements(HTMLParser):
    """Every start tag's (name, attributes), in order."""

    def __init__(self, text: str):
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def with_class(self, css_class: str) -> list[dict]:
        return [attrs for _, attrs in self.found if css_class in (attrs.get("class") or "").split()]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, long_chorale):
    backend = Backend.open(tmp_path_factory.mktemp("piece_view") / "workspace")
    piece = backend.generation.render_piece(long_chorale, backend.generation.exports / "view", "long")
    assert not piece.error, piece.error
    yield backend, piece
    backend.close()


def test_a_rendered_piece_follows_in_its_preview_and_its_library_card(rendered, long_chorale):
    backend, piece = rendered
    saved = json.loads(backend.generation.exported_file(piece.files["follow"]).read_text(encoding="utf-8"))
    entry = backend.library.get(backend.library.add(Generation(
        model="demo", prompt="Baroque_Bach, Johann Sebastian_Choral", seed=1, status="ok", abc=long_chorale,
        files={**piece.files, "svg": piece.svg_pages})))
    for score in (preview_view(backend, piece)[0], entry_view(backend, entry)[1]):
        found = Elements(score)
        (follow,) = found.with_class("score-follow")
        assert json.loads(follow["data-follow"]) == saved  # escaped in the attribute, read back whole
        sheets = found.with_class("score-sheet")
        assert [s["data-page"] for s in sheets] == ["1", "2"] and len(found.with_class("score-page")) == 2
        tags = [tag for tag, _ in found.found]
        assert tags.index("img") == tags.index("div") + 2  # each page image inside its sheet, inside the score
        assert "<script" not in score and "<svg" not in score  # pages stay images; nothing can run


def test_a_piece_without_follow_data_shows_plain_pages(rendered):
    backend, piece = rendered
    score = score_html(backend, piece.svg_pages)  # a library entry made before follow data existed
    assert not Elements(score).with_class("score-follow") and len(Elements(score).with_class("score-page")) == 2


def test_unreadable_follow_data_leaves_the_pages_and_says_why(rendered):
    backend, piece = rendered
    broken = atomic_write_text(backend.generation.exports / "view" / "broken.follow.json", '{"notes": ')
    score = score_html(backend, piece.svg_pages, follow=backend.workspace.relative(broken))
    assert not Elements(score).with_class("score-follow") and len(Elements(score).with_class("score-page")) == 2
    assert "The score cannot follow the audio: broken.follow.json cannot be read" in score


def test_follow_data_cannot_break_out_of_its_attribute(rendered):
    backend, piece = rendered
    hostile = {"version": 1, "pages": 1, "notes": {'"><script>alert(1)</script>': [0, 0, 0, 0.1, 0.1]},
               "bars": [], "spans": []}
    path = atomic_write_text(backend.generation.exports / "view" / "hostile.follow.json", json.dumps(hostile))
    score = score_html(backend, piece.svg_pages, follow=backend.workspace.relative(path))
    assert "<script" not in score
    assert json.loads(Elements(score).with_class("score-follow")[0]["data-follow"]) == hostile


def test_the_page_script_is_one_function_gradio_runs_on_load():
    script = follow_script()
    assert script.startswith("() => {") and script.rstrip().endswith("}")
    assert "setInterval(tick" in script and ".score-follow" in script
