"""Upstream's key draw, split reading and the epoch order."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from pipelines.errors import TrainingError
from pipelines.training.data import (
    KEYS,
    choose_key,
    dataset_prompts,
    epoch_groups,
    epoch_order,
    major_key,
    read_split,
    shard,
    union_prompts,
)
from tests.training_data import build_dataset, single_thread_torch  # noqa: F401 (autouse)


def test_key_draw_follows_upstream_weights():
    rng = random.Random(0)
    n = 32000
    counts = Counter(choose_key("C", rng) for _ in range(n))
    assert set(counts) == {"A", "Bb", "B", "Cb", "C", "Db", "C#", "D", "Eb"}
    expected = {"A": 1, "Bb": 2, "B": 3 * 0.8, "Cb": 3 * 0.2, "C": 4, "Db": 3 * 0.8, "C#": 3 * 0.2, "D": 2, "Eb": 1}
    for key, weight in expected.items():
        assert counts[key] / n == pytest.approx(weight / 16, abs=0.01), key


def test_key_draw_around_f_sharp_splits_gb_evenly():
    rng = random.Random(1)
    counts = Counter(choose_key("Eb", rng) for _ in range(16000))  # +3 semitones of Eb is pitch class 6
    assert counts["F#"] / 16000 == pytest.approx(0.5 / 16, abs=0.006)
    assert counts["Gb"] / 16000 == pytest.approx(0.5 / 16, abs=0.006)
    assert set(counts) <= set(KEYS)


def test_modes_map_to_key_signatures():
    assert major_key("F#min") == "A" and major_key("Bmin") == "D" and major_key("Cb") == "Cb"
    with pytest.raises(TrainingError, match="H#"):
        major_key("H#")


def test_epoch_order_is_a_pure_function_and_shards_evenly():
    assert epoch_order(10, 0, 3) == epoch_order(10, 0, 3) != epoch_order(10, 0, 4)
    order = epoch_order(11, 5, 0)
    parts = [shard(order, r, 3) for r in range(3)]
    assert all(len(p) == 3 for p in parts) and len({i for p in parts for i in p}) == 9
    assert epoch_groups(list(range(7)), 2, 2) == [[[0, 1], [2, 3]], [[4, 5], [6]]]


def test_read_split_and_prompts(tmp_path):
    data = build_dataset(tmp_path)
    pieces = read_split(data, "train")
    assert [p.key for p in pieces] == ["A", "D", "C", "A"]
    (data / "prompts.txt").unlink()  # then the headers of the pieces tell
    lines = [p.line for p in dataset_prompts(data, pieces)]
    assert lines == ["Baroque_Bach, Johann Sebastian_Choral", "Classical_Haydn, Joseph_Chamber",
                     "Classical_Mozart, Wolfgang Amadeus_Chamber"]
    assert [p.line for p in union_prompts(lines[:1], ["Baroque_Bach, Johann Sebastian_Choral", "A_B_C"])] == \
        ["A_B_C", "Baroque_Bach, Johann Sebastian_Choral"]
    (data / "train.jsonl").write_text('{"path": "x"}\n', encoding="utf-8")
    with pytest.raises(TrainingError, match="train.jsonl:1"):
        read_split(data, "train")
    assert read_split(tmp_path / "nowhere", "eval") == []
