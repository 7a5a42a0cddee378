"""A piece still being written, made engravable: whole lines only, without trailing lines whose voices differ."""
from pipelines.abc.postprocess import postprocess, postprocess_partial
from pipelines.abc.prompts import Prompt
from pipelines.generation.continuation import continuation_prefix

BACH = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")


def test_a_piece_being_written_is_cut_to_its_whole_lines_that_line_up(chorale):
    written = continuation_prefix(chorale, BACH, keep_lines=4)  # header, metadata, 4 `[r:i/j]` lines
    assert postprocess_partial(written) == postprocess(written)
    under_way = written + "[r:4/7][V:1]c2 d2"  # a line being written is left out
    assert postprocess_partial(under_way) == postprocess(written)
    misaligned = written + "[r:4/7][V:1]c2 d2|[V:2]A2|\n"  # the engine may draw it again: left out too
    assert postprocess_partial(misaligned) == postprocess(written)
    lines = postprocess_partial(written).splitlines()
    assert lines[0] == "X:1" and sum(line.startswith("[V:1]") for line in lines) == 4


def test_nothing_to_engrave_before_the_first_whole_line(chorale):
    written = continuation_prefix(chorale, BACH, keep_lines=4)
    header = written[:written.index("[r:0/")]
    assert postprocess_partial(header) is None
    assert postprocess_partial(header + "[r:0/11][V:1]ed|[V:2]G2") is None
    assert postprocess_partial(header + "[r:0/11][V:1]ed|[V:2]G2|\n") is not None
