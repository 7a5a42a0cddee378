"""pipelines/files.py: atomic writes that survive a file held for a moment, BOM-tolerant reading, portable names."""
from __future__ import annotations

import os

import pytest

from pipelines import files
from pipelines.errors import FileInUseError
from pipelines.files import (
    atomic_write_text,
    case_twin,
    claim_name,
    read_text,
    safe_stem,
    shorten,
    without_bom,
)


def flaky_replace(monkeypatch, failures: int) -> list[str]:
    """os.replace that refuses the first `failures` calls as Windows does while an antivirus holds the file."""
    real, calls = os.replace, []

    def replace(source, target, **kw):
        calls.append(os.fspath(target))
        if len(calls) <= failures:
            raise PermissionError(13, "Access is denied", os.fspath(target))
        return real(source, target, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(files, "REPLACE_RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    return calls


def test_a_replace_refused_once_is_tried_again(tmp_path, monkeypatch):
    target = tmp_path / "last.json"
    target.write_text("old", encoding="utf-8")
    calls = flaky_replace(monkeypatch, failures=1)
    atomic_write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert len(calls) == 2 and os.listdir(tmp_path) == ["last.json"]  # no temp file left


def test_a_file_held_for_good_is_reported_by_name_and_left_as_it_was(tmp_path, monkeypatch):
    target = tmp_path / "last.json"
    target.write_text("old", encoding="utf-8")
    calls = flaky_replace(monkeypatch, failures=100)
    with pytest.raises(FileInUseError, match=r"last\.json: cannot be replaced because another program holds it open"):
        atomic_write_text(target, "new")
    assert len(calls) == 4  # the first try and one per delay
    assert target.read_text(encoding="utf-8") == "old" and os.listdir(tmp_path) == ["last.json"]


def test_the_retry_waits_about_a_second_and_a_half_in_all():
    assert 1.0 <= sum(files.REPLACE_RETRY_DELAYS_S) <= 2.0


def test_text_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    (tmp_path / "bom.abc").write_bytes(b"\xef\xbb\xbfX:1\nK:C\n")
    (tmp_path / "plain.abc").write_bytes(b"X:1\nK:C\n")
    assert read_text(tmp_path / "bom.abc") == read_text(tmp_path / "plain.abc") == "X:1\nK:C\n"
    assert without_bom("\ufeffX:1") == "X:1" and without_bom("X:1\ufeff") == "X:1\ufeff"


def test_long_names_are_shortened_and_stay_apart():
    a, b = "x" * 100 + "-seed1", "x" * 100 + "-seed2"
    assert len(shorten(a)) == len(shorten(b)) == 80 and shorten(a) != shorten(b)
    assert shorten("short") == "short" and shorten(a) == shorten(a)
    assert len(safe_stem("Romantic " * 20)) <= 80


def test_case_twins_are_found(tmp_path):
    (tmp_path / "Bach").mkdir()
    assert case_twin(tmp_path, "bach") == "Bach" and case_twin(tmp_path, "BACH") == "Bach"
    assert case_twin(tmp_path, "Bach") is None and case_twin(tmp_path, "Haydn") is None
    assert case_twin(tmp_path / "missing", "x") is None


def test_claimed_names_differ_in_more_than_case():
    used = {"bach"}
    assert claim_name("Bach", used, "_xml") == "Bach_xml"
    assert claim_name("BACH", used, "_xml") == "BACH_xml3"
    assert claim_name("bach", used) == "bach2"
    assert claim_name("haydn", used) == "haydn"
    assert used == {"bach", "bach_xml", "bach_xml3", "bach2", "haydn"}
