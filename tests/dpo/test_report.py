"""What a run measures of its models: the usable share, the flag on an iteration that lowers it, keep-best."""
import pytest

from pipelines.abc.prompts import Prompt
from pipelines.dpo.preference import Candidate, classify
from pipelines.dpo.report import SampleFigures, best_model, flag_text, lowered_usable, measure
from tests.paths import PREPROCESS


def figures(label: str, usable: int, score: float | None, pieces: int = 10) -> SampleFigures:
    return SampleFigures(model=f"{label}.pth", label=label, pieces=pieces, ended=usable + 1, usable=usable,
                         mean_score=score)


def test_a_sample_counts_ended_and_usable_pieces():
    prompt = Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber")
    text = "X:1\n" + (PREPROCESS / "interleaved" / "mozart_k155_movement2.abc").read_text(encoding="utf-8")
    cands = [Candidate(name="ok", text=text, abc=text, prompt=prompt, score=0.9, nearest_similarity=0.5),
             Candidate(name="copy", text=text, abc=text, prompt=prompt, score=0.99, nearest_similarity=0.999),
             Candidate(name="long", text="%x\n", abc=None, status="limit", problem="reached the 9-patch limit"),
             Candidate(name="stopped", text="%x\n", abc=None, status="cancelled", problem="stopped by the user"),
             Candidate(name="rated", text=text, abc=text, source="human", rating=1)]
    classify(cands, 0.985)
    got = measure(cands, "m.pth", "starting model", 0.945)
    assert (got.pieces, got.ended, got.usable) == (3, 2, 1)  # the rated and the stopped piece do not count
    assert got.usable_share == pytest.approx(1 / 3) and got.quality == pytest.approx(0.945 / 3)
    assert got.describe() == "3 pieces: 2 ended (67%), 1 usable (33%), mean score 0.945"
    assert SampleFigures.from_dict(got.to_dict()) == got


def test_an_iteration_that_lowers_the_usable_share_is_flagged():
    start, after = figures("starting model", 4, 0.90), figures("after iteration 1", 2, 0.95)
    assert lowered_usable(start, after) and not lowered_usable(after, start)
    assert not lowered_usable(start, figures("same", 4, 0.5))  # a lower score alone is no flag
    assert flag_text(1, start, after) == ("iteration 1 lowered the usable share: 40% of its starting model's "
                                          "pieces were usable, 20% of its own")


def test_keep_best_takes_the_highest_usable_share_times_mean_score():
    start = figures("starting model", 3, 0.90)  # 0.27
    one = figures("after iteration 1", 5, 0.80)  # 0.40: fewer points per piece, many more usable pieces
    two = figures("after iteration 2", 4, 0.95)  # 0.38
    assert best_model([start, one, two]) is one
    assert best_model([start, figures("after iteration 1", 0, None)]) is start  # no score counts as 0
    tie = figures("after iteration 1", 3, 0.90)
    assert best_model([start, tie]) is start  # on a tie, the model DPO moved least
    assert best_model([]) is None
