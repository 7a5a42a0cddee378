"""Prompt files: a prompts.txt saved by Notepad (with a byte order mark) reads as the same prompts."""
from pipelines.abc.prompts import read_prompts


def test_a_prompts_file_with_a_byte_order_mark_reads_the_same(tmp_path):
    lines = "Baroque_Bach, Johann Sebastian_Choral\nRomantic_Chopin, Frederic_Keyboard\n"
    (tmp_path / "plain.txt").write_text(lines, encoding="utf-8")
    (tmp_path / "notepad.txt").write_text(lines, encoding="utf-8-sig")
    plain, marked = read_prompts(tmp_path / "plain.txt"), read_prompts(tmp_path / "notepad.txt")
    assert marked == plain and marked[0].period == "Baroque"
