import json
import random

import pytest

from pipelines.abc.tokenizer import Patchilizer, readable, split_bars

P = Patchilizer()


@pytest.fixture(scope="module")
def cases(fixtures):
    return json.loads((fixtures / "tokenizer.json").read_text(encoding="utf-8"))


def test_encode_train_equals_upstream(cases):
    assert len(cases) == 18
    for case in cases:
        assert P.encode_train(case["abc"], patch_length=100000) == case["encode_train"], case["name"]


def test_encode_generate_equals_upstream(cases):
    for case in cases:
        assert P.encode_generate(case["generate_prefix"], patch_length=100000) == case["encode_generate"], case["name"]


def test_special_patches_and_stream_prefixes(cases):
    ids = P.encode_train(cases[0]["abc"], patch_length=100000)
    assert ids[0] == [1] * 15 + [2]
    assert ids[-1] == [1] + [2] * 15
    text = P.decode(ids)
    assert "[r:0/" in text and text.count("[r:") == cases[0]["abc"].count("[V:1]")


def test_decode_inverts_encode_without_stream_prefixes(cases):
    plain = Patchilizer(stream=False)
    for case in cases[:6]:
        assert plain.decode(plain.encode_train(case["abc"], 100000)) == case["abc"]


def test_bars_start_with_their_barline():
    assert split_bars(["[V:1]ab|cd|\n"]) == ["[V:1]ab", "|cd|\n"]
    assert split_bars(["[V:1]ab|[V:2]cd|\n"]) == ["[V:1]ab", "|[V:2]cd|\n"]
    assert split_bars(["[V:1]ab|:cd:|\n"]) == ["[V:1]ab", "|:cd:|\n"]


def test_long_piece_cut_at_line_boundaries_keeps_metadata(cases):
    abc = next(c["abc"] for c in cases if c["name"].startswith("beethoven"))
    full = P.encode_train(abc, 100000)
    seen = set()
    for seed in range(12):
        ids = P.encode_train(abc, patch_length=200, rng=random.Random(seed))
        assert len(ids) <= 200
        assert len(ids) == 200 or ids[-1] == [1] + [2] * 15  # a tail cut ends with the eos patch
        text = P.decode(ids)
        meta_end = text.index("[r:")
        assert text[:meta_end] == P.decode(full)[:meta_end]  # metadata always kept
        seen.add(text[meta_end:meta_end + 12])
    assert len(seen) > 1  # head, tail and middle cuts start at different lines


def test_generation_prefix_leaves_last_patch_open():
    abc = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\nL:1/8\nM:4/4\nK:C\nV:1 treble\n[r:0/3][V:1]ab"
    ids = P.encode_generate(abc, 100000)
    assert ids[-1] == [ord(c) for c in "[r:0/3][V:1]ab"]


def test_readable_text_drops_the_prompt_lines_and_the_bar_counters_only():
    raw = ("%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n%%score { 1 | 2 }\nL:1/8\nM:4/4\nK:G\n"
           "[r:0/2][V:1]G2 A2|[V:2]B,4|\n[r:1/1][V:1]B2 c2|[V:2]D4|\n[r:2/0][V:1]d4")
    assert readable(raw) == ("%%score { 1 | 2 }\nL:1/8\nM:4/4\nK:G\n"
                             "[V:1]G2 A2|[V:2]B,4|\n[V:1]B2 c2|[V:2]D4|\n[V:1]d4")
