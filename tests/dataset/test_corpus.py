"""pipelines.dataset.corpus and `notagen dataset`: the offline corpus dataset and the command line."""
import json

from pipelines.cli import main
from pipelines.dataset import KEYS, build_corpus_dataset, corpus_sources, load_manifest
from pipelines.dataset.annotate import notagenx_vocabulary


def test_corpus_selection_is_labelled_with_notagenx_vocabulary():
    sources = corpus_sources()
    assert len(sources) >= 400
    vocabulary = notagenx_vocabulary()
    assert all(labels.period in vocabulary.periods and labels.composer in vocabulary.composers
               and labels.instrumentation in vocabulary.instrumentations for _, _, labels in sources)
    by_piece = {piece: labels for _, piece, labels in sources}
    assert by_piece["bach_bwv66.6"].instrumentation == "Choral"
    assert by_piece["beethoven_opus18no1_movement4"].composer == "Beethoven, Ludwig van"
    assert by_piece["haydn_opus74no1_movement3"].instrumentation == "Chamber"
    assert len(corpus_sources(limit=3)) == 3


def test_corpus_dataset_builds_offline(tmp_path):
    report = build_corpus_dataset(tmp_path / "corpus", limit=3)
    assert [f.status for f in report.files] == ["ok"] * 3
    manifest = load_manifest(tmp_path / "corpus")
    for piece, entry in manifest["pieces"].items():
        assert (entry["period"], entry["composer"], entry["instrumentation"]) == (
            "Baroque", "Bach, Johann Sebastian", "Choral")
        for key in KEYS:
            text = (tmp_path / "corpus" / "augmented" / key / f"{piece}_{key}.abc").read_text(encoding="utf-8")
            assert text.startswith("%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n")
    assert (tmp_path / "corpus" / "prompts.txt").read_text(encoding="utf-8") == "Baroque_Bach, Johann Sebastian_Choral\n"


def test_cli_corpus_build_and_annotate(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["dataset", "corpus", "--out", str(out), "--limit", "2", "--workers", "0"]) == 0
    assert "2 converted" in capsys.readouterr().out
    piece = sorted(load_manifest(out)["pieces"])[0]
    assert main(["dataset", "annotate", str(out), "--piece", piece, "--instrumentation", "Keyboard"]) == 0
    assert "Keyboard" in capsys.readouterr().out
    assert (out / "augmented" / "C" / f"{piece}_C.abc").read_text(encoding="utf-8").split("\n")[2] == "%Keyboard"
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "broken.musicxml").write_text("<score-partwise><part", encoding="utf-8")
    assert main(["dataset", "build", str(scores), "--out", str(tmp_path / "b"), "--workers", "0",
                 "--period", "Romantic"]) == 1  # nothing usable
    captured = capsys.readouterr()
    assert "failed" in captured.err and "xml2abc" in captured.err
    report = json.loads((tmp_path / "b" / "report.json").read_text(encoding="utf-8"))
    assert report["files"][0]["stage"] == "xml2abc"
    assert main(["dataset", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2


def test_cli_build_leaves_out_unaligned_pieces_on_request(tmp_path, capsys, fixtures):
    haydn = fixtures / "preprocess" / "haydn_opus74no1_movement3.musicxml"
    bach = fixtures / "preprocess" / "bach_bwv66.6.musicxml"
    assert main(["dataset", "build", str(bach), str(haydn), "--out", str(tmp_path / "ds"), "--workers", "0",
                 "--max-unaligned-share", "0"]) == 0
    captured = capsys.readouterr()
    assert "1 left out (voices misaligned)" in captured.out
    assert f"left out {haydn.resolve()}: voices differ in 0.9% of the bars" in captured.err
