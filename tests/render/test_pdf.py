"""pipelines.render.pdf: Verovio's pages as svglib draws them."""
from pipelines.render.pdf import svg_for_pdf


def test_pdf_pages_keep_the_metronome_mark_legible(chorale_result):
    page = svg_for_pdf(chorale_result.svg_pages[0])
    assert "quarter = 96" in page and 'font-family="Leipzig"' not in page
    assert '<svg class="definition-scale"' not in page  # flattened into a scaled group for svglib
