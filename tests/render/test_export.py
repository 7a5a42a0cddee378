"""pipelines.render.export: a rendered piece's files, written atomically under a plain name."""
import music21
import pytest

from pipelines.errors import NotaGenError
from pipelines.render.export import export_piece
from pipelines.render.score import midi_seconds


def test_export_piece(tmp_path, chorale_result):
    exported = export_piece(chorale_result, tmp_path / "out", "chorale", wav=b"RIFF....WAVE")
    assert sorted(exported.files) == ["abc", "follow", "mid", "musicxml", "pdf", "wav"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "chorale.abc", "chorale.follow.json", "chorale.mid", "chorale.musicxml", "chorale.pdf", "chorale.wav"]
    reread = music21.converter.parse(exported.files["musicxml"])
    assert len(reread.parts) == 4
    assert midi_seconds(exported.files["mid"].read_bytes()) == pytest.approx(chorale_result.seconds)
    assert exported.files["abc"].read_text(encoding="utf-8").rstrip("\n") == chorale_result.abc.rstrip("\n")
    with pytest.raises(NotaGenError, match="without folders"):
        export_piece(chorale_result, tmp_path, "../escape")
