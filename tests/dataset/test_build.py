"""pipelines.dataset.build / workers: the dataset folder, failures with reasons, spawn workers, cache, labels."""
import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipelines.abc.prompts import read_prompts
from pipelines.dataset import (
    KEYS,
    DatasetConfig,
    Labels,
    build_dataset,
    load_header_choices,
    load_manifest,
    read_labels_csv,
    reannotate,
)
from pipelines.dataset.workers import TaskFailure, run_tasks
from pipelines.errors import DatasetError, TrainingError
from pipelines.files import NAME_LIMIT
from pipelines.training.data import dataset_files
from tests.dataset import worker_tasks as dataset_worker_tasks

PIECES = ("bach_bwv66.6", "bach_bwv7.7", "beethoven_opus18no1_movement4", "haydn_opus74no1_movement3",
          "mozart_k155_movement2", "schumann_robert_opus41no1_movement2")
CHORALE = Labels("Baroque", "Bach, Johann Sebastian", "Choral")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _header(out: Path, piece: str, key: str) -> list[str]:
    return _text(out / "augmented" / key / f"{piece}_{key}.abc").split("\n")[:4]


@pytest.fixture
def scores(tmp_path, fixtures):
    """The two chorales, a truncated file and a score whose voices disagree in bar count, in one folder."""
    folder = tmp_path / "scores"
    folder.mkdir()
    source = fixtures / "preprocess"
    for piece in ("bach_bwv66.6", "bach_bwv7.7"):
        shutil.copy(source / f"{piece}.musicxml", folder / f"{piece}.musicxml")
    data = (source / "bach_bwv66.6.musicxml").read_bytes()
    (folder / "truncated.musicxml").write_bytes(data[: len(data) // 2])
    root = ET.fromstring(data)
    tenor = root.findall("part")[2]
    tenor.remove(tenor.findall("measure")[-1])
    (folder / "short_tenor.musicxml").write_bytes(ET.tostring(root))
    return folder


def test_build_of_the_fixture_scores_equals_upstream_plus_header(tmp_path, fixtures):
    source = fixtures / "preprocess"
    out = tmp_path / "out"
    report = build_dataset([source / f"{p}.musicxml" for p in PIECES], out, DatasetConfig(workers=2, eval_split=0.2))
    assert [f.status for f in report.files] == ["ok"] * 6, report.failed
    manifest = load_manifest(out)
    upstream = json.loads(_text(source / "manifest.json"))
    for piece in PIECES:
        entry = manifest["pieces"][piece]
        assert entry["key"] == upstream[piece]["key"]
        header = f"%{entry['period']}\n%{entry['composer']}\n%{entry['instrumentation']}\n%end\n"
        assert header.isascii()
        assert _text(out / "interleaved" / f"{piece}.abc") == _text(source / "interleaved" / f"{piece}.abc")
        for key in KEYS:
            expected = header + _text(source / "augmented" / key / f"{piece}_{key}.abc")
            assert _text(out / "augmented" / key / f"{piece}_{key}.abc") == expected, (piece, key)
    # suggestions from the scores themselves
    assert manifest["pieces"]["mozart_k155_movement2"]["composer"] == "Mozart, Wolfgang Amadeus"
    assert manifest["pieces"]["mozart_k155_movement2"]["period"] == "Classical"
    assert manifest["pieces"]["mozart_k155_movement2"]["instrumentation"] == "Chamber"
    assert manifest["pieces"]["bach_bwv66.6"]["instrumentation"] == "Choral"
    # index: split by piece, upstream's fields, readable by the evaluator
    train = [json.loads(line) for line in _text(out / "train.jsonl").splitlines()]
    held_out = [json.loads(line) for line in _text(out / "eval.jsonl").splitlines()]
    assert len(train) + len(held_out) == 6 and len(held_out) == 1
    assert {Path(e["path"]).name for e in train + held_out} == set(PIECES)
    assert all(Path(e["path"]).parent == out.resolve() / "augmented" and e["key"] in KEYS for e in train + held_out)
    assert all(p.is_file() for p in dataset_files(out, "eval") + dataset_files(out, "train"))
    assert read_prompts(out / "prompts.txt")
    report_json = json.loads(_text(out / "report.json"))
    assert report_json["counts"]["ok"] == 6 and report_json["files"][0]["voices"] == 4


def test_failures_name_stage_and_reason_and_the_others_go_on(tmp_path, scores):
    out = tmp_path / "out"
    report = build_dataset([scores], out, DatasetConfig(workers=2, labels=CHORALE))
    by_piece = {f.piece: f for f in report.files}
    assert by_piece["bach_bwv66.6"].status == "ok" and by_piece["bach_bwv7.7"].status == "ok"
    truncated, short = by_piece["truncated"], by_piece["short_tenor"]
    assert truncated.status == "failed" and truncated.stage == "xml2abc"
    assert "not well-formed MusicXML" in truncated.reason
    assert short.status == "failed" and short.stage == "check"
    assert short.reason == "voice 3 has 9 bars where voice 1 has 10"
    indexed = {Path(json.loads(line)["path"]).name
               for split in ("train", "eval") for line in _text(out / f"{split}.jsonl").splitlines()}
    assert indexed == {"bach_bwv66.6", "bach_bwv7.7"}
    assert not list((out / "augmented").rglob("short_tenor*")) and not (out / "interleaved" / "truncated.abc").exists()
    saved = {f["piece"]: f for f in json.loads(_text(out / "report.json"))["files"]}
    assert saved["short_tenor"]["reason"] == "voice 3 has 9 bars where voice 1 has 10"


def test_a_file_over_the_time_limit_is_reported_as_a_timeout(tmp_path, fixtures):
    source = fixtures / "preprocess"
    files = [source / "beethoven_opus18no1_movement4.musicxml", source / "bach_bwv66.6.musicxml"]
    report = build_dataset(files, tmp_path / "out", DatasetConfig(workers=2, time_limit_s=0.3))
    by_piece = {f.piece: f for f in report.files}
    assert by_piece["beethoven_opus18no1_movement4"].status == "failed"
    assert by_piece["beethoven_opus18no1_movement4"].reason == "timeout after 0.3 s"
    assert by_piece["bach_bwv66.6"].status == "ok"


def test_workers_are_spawned_processes_with_a_time_limit():
    dataset_worker_tasks.MARK = "set in the parent"  # a forked child would see this; a spawned one would not
    try:
        results = dict(run_tasks(dataset_worker_tasks.where, ["a", "sleep", "raise", "b"], workers=2, time_limit_s=2))
    finally:
        dataset_worker_tasks.MARK = "module default"
    assert results[1] == TaskFailure("timeout", "timeout after 2 s")
    assert results[2].kind == "error" and "bad task" in results[2].message
    for index in (0, 3):
        pid, mark, child = results[index]
        assert pid != os.getpid() and child and mark == "module default"


def test_rebuild_converts_only_new_or_changed_files(tmp_path, fixtures):
    folder = tmp_path / "scores"
    folder.mkdir()
    source = fixtures / "preprocess"
    shutil.copy(source / "bach_bwv66.6.musicxml", folder)
    shutil.copy(source / "bach_bwv7.7.musicxml", folder)
    out = tmp_path / "out"
    first = build_dataset([folder], out, DatasetConfig(workers=2))
    assert [f.status for f in first.files] == ["ok", "ok"]
    kept = out / "augmented" / "C" / "bach_bwv7.7_C.abc"
    stamp = kept.stat().st_mtime_ns
    changed = source.joinpath("bach_bwv66.6.musicxml").read_bytes().replace(b"<alter>1</alter>", b"<alter>0</alter>", 1)
    (folder / "bach_bwv66.6.musicxml").write_bytes(changed)
    shutil.copy(source / "mozart_k155_movement2.musicxml", folder)
    second = build_dataset([folder], out, DatasetConfig(workers=2))
    assert {f.piece: f.status for f in second.files} == {
        "bach_bwv66.6": "ok", "bach_bwv7.7": "cached", "mozart_k155_movement2": "ok"}
    assert kept.stat().st_mtime_ns == stamp
    assert len(load_manifest(out)["pieces"]) == 3
    (folder / "mozart_k155_movement2.musicxml").unlink()
    third = build_dataset([folder], out, DatasetConfig(workers=0))
    assert [f.status for f in third.files] == ["cached", "cached"]
    assert not (out / "interleaved" / "mozart_k155_movement2.abc").exists()


def test_pieces_with_too_many_unaligned_bars_are_left_out_until_allowed(tmp_path, fixtures):
    # haydn_opus74no1_movement3 has one bar of 113 whose voices differ in length (bar 58: 13/16 against 3/4)
    source = fixtures / "preprocess"
    inputs = [source / f"{p}.musicxml" for p in ("bach_bwv66.6", "haydn_opus74no1_movement3")]
    out = tmp_path / "out"
    strict = build_dataset(inputs, out, DatasetConfig(workers=0, eval_split=0, max_unaligned_share=0.005))
    haydn = strict.files[1]
    assert [f.status for f in strict.files] == ["ok", "excluded"] and strict.train == ["bach_bwv66.6"]
    assert haydn.stage == "align" and haydn.reason == (
        "voices differ in 0.9% of the bars, over the 0.5% allowed (first: bar 58: voices differ in length "
        "(voice 1 lasts 13/16, voice 2 lasts 3/4, voice 3 lasts 3/4, voice 4 lasts 3/4))")
    assert "1 left out (voices misaligned)" in strict.summary()
    assert len(load_manifest(out)["pieces"]) == 1 and "haydn" not in _text(out / "train.jsonl")
    saved = json.loads(_text(out / "report.json"))["files"][1]
    assert saved["status"] == "excluded" and saved["reason"] == haydn.reason
    # converted all the same: allowing it again indexes it from the cache, without converting
    allowed = build_dataset(inputs, out, DatasetConfig(workers=0, eval_split=0, max_unaligned_share=0.01))
    assert [f.status for f in allowed.files] == ["cached", "cached"]
    assert allowed.train == ["bach_bwv66.6", "haydn_opus74no1_movement3"]
    with pytest.raises(DatasetError, match="largest unaligned share 1.5 must be between 0 and 1"):
        DatasetConfig(max_unaligned_share=1.5)


def test_reannotation_rewrites_headers_only(tmp_path, fixtures):
    out = tmp_path / "out"
    source = fixtures / "preprocess"
    build_dataset([source / "bach_bwv66.6.musicxml", source / "bach_bwv7.7.musicxml"], out,
                  DatasetConfig(workers=0, labels=CHORALE))
    before = {k: _text(out / "augmented" / k / "bach_bwv7.7_C.abc") for k in ("C",)}
    manifest = reannotate(out, {"bach_bwv7.7": Labels(period="Modern", composer="Frederic Chopin")})
    for key in KEYS:
        assert _header(out, "bach_bwv7.7", key) == ["%Modern", "%Chopin, Frederic", "%Choral", "%end"]
        assert _header(out, "bach_bwv66.6", key) == ["%Baroque", "%Bach, Johann Sebastian", "%Choral", "%end"]
    after = _text(out / "augmented" / "C" / "bach_bwv7.7_C.abc")
    assert after.split("\n", 4)[4] == before["C"].split("\n", 4)[4]
    entry = manifest["pieces"]["bach_bwv7.7"]
    assert (entry["period"], entry["composer"]) == ("Modern", "Chopin, Frederic")
    assert any("period 'Modern' is outside NotaGen-X's vocabulary" in w for w in entry["warnings"])
    assert {p.line for p in read_prompts(out / "prompts.txt")} == {
        "Baroque_Bach, Johann Sebastian_Choral", "Modern_Chopin, Frederic_Choral"}
    # a rebuild keeps the re-annotation of an unchanged piece
    build_dataset([source / "bach_bwv66.6.musicxml", source / "bach_bwv7.7.musicxml"], out, DatasetConfig(workers=0))
    assert _header(out, "bach_bwv7.7", "D")[:2] == ["%Modern", "%Chopin, Frederic"]
    with pytest.raises(DatasetError, match="no piece"):
        reannotate(out, {"nonesuch": Labels(period="Romantic")})


def _fixture_header(source: Path, piece: str, field: str) -> set[str]:
    """The values of a header field in upstream's augmented files of a piece, read plainly."""
    return {line[2:] for key in KEYS
            for line in _text(source / "augmented" / key / f"{piece}_{key}.abc").split("\n") if line.startswith(field)}


def test_the_build_records_each_prompts_meters_and_keys(tmp_path, fixtures):
    source = fixtures / "preprocess"
    out = tmp_path / "out"
    pieces = ("bach_bwv66.6", "bach_bwv7.7", "mozart_k155_movement2")
    config = DatasetConfig(workers=0, labels=CHORALE, piece_labels={
        "mozart_k155_movement2": Labels("Classical", "Mozart, Wolfgang Amadeus", "Chamber")})
    build_dataset([source / f"{p}.musicxml" for p in pieces], out, config)
    bach, mozart = "Baroque_Bach, Johann Sebastian_Choral", "Classical_Mozart, Wolfgang Amadeus_Chamber"
    meters = {p: _fixture_header(source, p, "M:") for p in pieces}
    keys = {p: _fixture_header(source, p, "K:") for p in pieces}
    # one meter; every augmented key (a minor piece's C# and Db versions are both written Bbmin)
    assert all(len(m) == 1 for m in meters.values()) and all(len(k) >= 12 for k in keys.values())

    def expected(of):
        counted = {}
        for line, group in of.items():
            record = counted.setdefault(line, {"meters": {}, "keys": {}})
            for piece in group:
                for kind, values in (("meters", meters[piece]), ("keys", keys[piece])):
                    for value in values:
                        record[kind][value] = record[kind].get(value, 0) + 1
        return counted

    assert load_header_choices(out) == expected({bach: pieces[:2], mozart: pieces[2:]})
    record = json.loads(_text(out / "header_choices.json"))
    assert record["version"] == 1 and list(record["prompts"]) == [bach, mozart]
    # the record follows a re-annotation
    reannotate(out, {"bach_bwv7.7": Labels(period="Romantic", composer="Chopin, Frederic", instrumentation="Keyboard")})
    assert load_header_choices(out) == expected({bach: pieces[:1], mozart: pieces[2:],
                                                 "Romantic_Chopin, Frederic_Keyboard": pieces[1:2]})
    # a piece converted before the record existed gets it from its files when it is reused
    stamp_file = out / "cache" / "mozart_k155_movement2.json"
    stamp = json.loads(_text(stamp_file))
    del stamp["header"]
    stamp_file.write_text(json.dumps(stamp), encoding="utf-8")
    again = build_dataset([source / f"{p}.musicxml" for p in pieces], out, config)
    assert [f.status for f in again.files] == ["cached"] * 3
    assert load_header_choices(out)[mozart] == expected({mozart: pieces[2:]})[mozart]
    assert "header" in json.loads(_text(stamp_file))
    assert load_header_choices(tmp_path) == {}  # a folder without a record


def test_labels_csv_per_piece(tmp_path, fixtures):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("file,period,composer,instrumentation\n"
                        "bach_bwv66.6.musicxml,Baroque,J.S. Bach,Keyboard\n"
                        "bach_bwv7.7,Romantic,Antonín Dvořák,\n", encoding="utf-8")
    labels = read_labels_csv(csv_file)
    source = fixtures / "preprocess"
    out = tmp_path / "out"
    build_dataset([source / "bach_bwv66.6.musicxml", source / "bach_bwv7.7.musicxml"], out,
                  DatasetConfig(workers=0, piece_labels=labels))
    assert _header(out, "bach_bwv66.6", "G") == ["%Baroque", "%Bach, Johann Sebastian", "%Keyboard", "%end"]
    assert _header(out, "bach_bwv7.7", "G") == ["%Romantic", "%Dvorak, Antonin", "%Choral", "%end"]
    excel = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" starts with a byte order mark
    excel.write_text(csv_file.read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert read_labels_csv(excel) == labels
    bad = tmp_path / "bad.csv"
    bad.write_text("name,x\na,b\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="header row"):
        read_labels_csv(bad)


def test_cancel_leaves_the_index_alone(tmp_path, fixtures):
    source = fixtures / "preprocess"
    files = [source / f"{p}.musicxml" for p in ("bach_bwv66.6", "bach_bwv7.7", "mozart_k155_movement2")]
    report = build_dataset(files, tmp_path / "out", DatasetConfig(workers=0), should_stop=lambda: True)
    assert report.cancelled and report.count("cancelled") == 2
    assert not (tmp_path / "out" / "train.jsonl").exists()
    assert json.loads(_text(tmp_path / "out" / "report.json"))["cancelled"] is True


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        build_dataset([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no score files"):
        build_dataset([tmp_path / "empty"], tmp_path / "out")


def test_other_formats_go_through_music21_and_are_marked_lossy(tmp_path):
    from pipelines.dataset.corpus import corpus_root

    report = build_dataset([corpus_root() / "bach" / "bwv366.krn"], tmp_path / "out", DatasetConfig(workers=0))
    (result,) = report.files
    assert result.status == "ok" and result.lossy and result.voices == 4
    assert load_manifest(tmp_path / "out")["pieces"]["bwv366"]["lossy"] is True


def test_a_rebuild_keeps_the_labels_saved_by_reannotating(tmp_path, fixtures):
    source = fixtures / "preprocess"
    files = [source / "bach_bwv66.6.musicxml", source / "bach_bwv7.7.musicxml"]
    out = tmp_path / "out"
    build_dataset(files, out, DatasetConfig(workers=0, labels=CHORALE))
    reannotate(out, {"bach_bwv7.7": Labels(period="Modern", composer="Frederic Chopin")})
    assert load_manifest(out)["pieces"]["bach_bwv7.7"]["annotated"] == {"period": "Modern",
                                                                        "composer": "Chopin, Frederic"}
    # the same labels given to the build again, every file converted again: the saved labels still win
    build_dataset(files, out, DatasetConfig(workers=0, labels=CHORALE, use_cache=False))
    pieces = load_manifest(out)["pieces"]
    assert (pieces["bach_bwv7.7"]["period"], pieces["bach_bwv7.7"]["composer"]) == ("Modern", "Chopin, Frederic")
    assert pieces["bach_bwv7.7"]["instrumentation"] == "Choral"  # not re-annotated: the build's label
    assert pieces["bach_bwv7.7"]["annotated"] == {"period": "Modern", "composer": "Chopin, Frederic"}
    assert pieces["bach_bwv66.6"]["period"] == "Baroque" and pieces["bach_bwv66.6"]["annotated"] == {}
    for key in KEYS:
        assert _header(out, "bach_bwv7.7", key) == ["%Modern", "%Chopin, Frederic", "%Choral", "%end"]
    # a cached rebuild with other labels for every piece keeps them too
    build_dataset(files, out, DatasetConfig(workers=0, labels=Labels(period="Romantic")))
    pieces = load_manifest(out)["pieces"]
    assert (pieces["bach_bwv7.7"]["period"], pieces["bach_bwv66.6"]["period"]) == ("Modern", "Romantic")
    assert _header(out, "bach_bwv7.7", "C")[0] == "%Modern"


def test_a_build_with_no_usable_piece_builds_nothing_and_says_why_per_file(tmp_path, fixtures):
    out = tmp_path / "out"
    build_dataset([fixtures / "preprocess" / "bach_bwv66.6.musicxml"], out, DatasetConfig(workers=0))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "shopping.abc").write_text("This is my shopping list\n", encoding="utf-8")
    (junk / "broken.abc").write_text("X:1\nT:bad\nM:4/4\nK:C\n|: [[[ zz8 ::: \n", encoding="utf-8")
    (junk / "notes.xml").write_text("garbage", encoding="utf-8")
    report = build_dataset([junk], out, DatasetConfig(workers=0))
    assert report.empty and [f.status for f in report.files] == ["failed"] * 3
    by_piece = {f.piece: f for f in report.files}
    assert by_piece["shopping"].reason == "shopping.abc is not ABC notation: it has no K: (key) line, so it holds no tune"
    assert by_piece["broken"].reason.startswith("broken.abc is not readable ABC notation (")
    assert all("Exception" not in f.reason and "music21" not in f.reason for f in report.files)
    summary = report.summary()
    assert "nothing built: no piece could be converted from the 3 file(s)" in summary
    assert "shopping.abc is not ABC notation" in summary and "notes.xml: not well-formed MusicXML" in summary
    assert list(load_manifest(out)["pieces"]) == ["bach_bwv66.6"]  # the dataset is left as it was
    assert json.loads(_text(out / "report.json"))["counts"]["failed"] == 3


def _all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_scores_whose_names_differ_only_in_case_become_two_pieces_apart(tmp_path, fixtures):
    folder = tmp_path / "scores"
    folder.mkdir()
    shutil.copy(fixtures / "preprocess" / "bach_bwv66.6.musicxml", folder / "Bach.xml")
    shutil.copy(fixtures / "preprocess" / "bach_bwv7.7.musicxml", folder / "bach.xml")
    out = tmp_path / "out"
    report = build_dataset([folder], out, DatasetConfig(workers=0, eval_split=0, labels=CHORALE))
    assert sorted(f.piece for f in report.files) == ["Bach", "bach_xml"]
    assert all(f.status == "ok" for f in report.files)
    files = _all_files(out)
    assert len({f.casefold() for f in files}) == len(files)  # no two files Windows would take for one
    # each piece holds its own score (the second did not overwrite the first)
    assert _text(out / "interleaved" / "Bach.abc") != _text(out / "interleaved" / "bach_xml.abc")


def test_a_build_refuses_pieces_named_alike_but_for_case(tmp_path, fixtures):
    from pipelines.dataset.build import build_named

    score = fixtures / "preprocess" / "bach_bwv66.6.musicxml"
    with pytest.raises(DatasetError, match="'Bach' and 'bach'.*differ only in capitals"):
        build_named([(score, "Bach"), (score, "bach")], tmp_path / "out", DatasetConfig(workers=0))


def test_a_deep_source_tree_gives_short_paths(tmp_path, fixtures):
    deep = tmp_path / "scores"
    for n in range(6):
        deep = deep / f"Collected works volume {n} {'(complete edition) ' * 2}".strip()
    deep.mkdir(parents=True)
    long_name = "Chorale " + "with a very long descriptive title " * 3
    shutil.copy(fixtures / "preprocess" / "bach_bwv66.6.musicxml", deep / f"{long_name}1.musicxml")
    shutil.copy(fixtures / "preprocess" / "bach_bwv7.7.musicxml", deep / f"{long_name}2.musicxml")
    out = tmp_path / "out"
    report = build_dataset([tmp_path / "scores"], out, DatasetConfig(workers=0, eval_split=0, labels=CHORALE))
    pieces = [f.piece for f in report.files]
    assert all(f.status == "ok" for f in report.files) and len(set(pieces)) == 2
    assert all(len(p) <= NAME_LIMIT for p in pieces)
    assert len(str(deep.relative_to(tmp_path))) > 300  # the source path alone is over Windows' 260
    # inside the dataset folder: augmented/<key>/<piece>_<key>.abc at most, about 80 characters
    assert max(len(f) for f in _all_files(out) if "/" in f) <= 10 + 3 + NAME_LIMIT + 7


def test_an_abc_file_saved_with_a_byte_order_mark_gives_the_same_piece(tmp_path, chorale):
    for name, encoding in (("plain", "utf-8"), ("notepad", "utf-8-sig")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "chorale.abc").write_text(chorale, encoding=encoding)
        build_dataset([tmp_path / name], tmp_path / f"out_{name}", DatasetConfig(workers=0, labels=CHORALE))
    assert (tmp_path / "notepad" / "chorale.abc").read_bytes().startswith(b"\xef\xbb\xbf")
    for rel in ("interleaved/chorale.abc", "augmented/C/chorale_C.abc"):
        assert _text(tmp_path / "out_notepad" / rel) == _text(tmp_path / "out_plain" / rel)


def test_worker_processes_are_at_most_61_however_many_cores(monkeypatch):
    from pipelines.dataset.workers import default_workers
    from pipelines.training import TrainConfig

    monkeypatch.setattr("os.cpu_count", lambda: 128)
    assert default_workers() == 61 and DatasetConfig().workers == 61
    with pytest.raises(DatasetError, match="workers must be 0 to 61"):
        DatasetConfig(workers=62)
    with pytest.raises(TrainingError, match="61"):
        TrainConfig(data_dir=Path("data"), out_dir=Path("run"), preset="tiny", data_workers=62)


def test_a_score_file_over_the_size_cap_fails_by_name_and_the_others_go_on(tmp_path, fixtures):
    folder = tmp_path / "scores"
    folder.mkdir()
    shutil.copy(fixtures / "preprocess" / "bach_bwv66.6.musicxml", folder)
    with (folder / "opera.musicxml").open("wb") as f:
        f.truncate(21 * 2**20)
    report = build_dataset([folder], tmp_path / "out", DatasetConfig(workers=0, eval_split=0, labels=CHORALE))
    failed = {f.piece: f for f in report.files if f.status == "failed"}
    assert list(failed) == ["opera"] and failed["opera"].stage == "read"
    assert failed["opera"].reason == "opera.musicxml is 21.0 MB; score files of up to 20 MB are read"
    assert report.train == ["bach_bwv66.6"]
