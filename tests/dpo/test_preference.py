"""Preference selection: the chosen set's filters on crafted pieces, ranking, rated pieces."""

import pytest

from pipelines.abc.prompts import Prompt
from pipelines.dpo.loop import score_candidates
from pipelines.dpo.preference import (
    Candidate,
    HumanRating,
    alignment_problem,
    grouping_problem,
    merge_ratings,
    select_preferences,
)
from pipelines.dpo.scorers import BuiltinScorer
from pipelines.errors import DPOError
from tests.paths import PREPROCESS

PRE = PREPROCESS


def piece(name: str) -> str:
    return (PRE / "interleaved" / f"{name}.abc").read_text(encoding="utf-8")


def misaligned(text: str) -> str:
    """Voice 2 of the second bar one quaver longer than the others."""
    lines = text.split("\n")
    i = [n for n, line in enumerate(lines) if line.startswith("[V:1]")][1]
    head, tail = lines[i].split("[V:2]", 1)
    lines[i] = head + "[V:2]F" + tail
    return "\n".join(lines)


def test_alignment_filter():
    text = "X:1\n" + piece("bach_bwv66.6")
    assert alignment_problem(text) is None
    problem = alignment_problem(misaligned(text))
    assert problem and "bar 2" in problem and "voice" in problem


def test_grouping_filter_on_score_layout_and_voice_order():
    quartet = piece("beethoven_opus18no1_movement4")  # Violin, Violin, Viola, Violoncello
    assert grouping_problem(quartet) is None
    split_layout = quartet.replace("%%score 1 2 3 4", "%%score 1 3 2 4")
    problem = grouping_problem(split_layout)
    assert problem and "'Violin'" in problem and "%%score" in problem
    swapped = quartet.replace('V:2 treble nm="Violin"', 'V:2 treble nm="Viola"').replace(
        'V:3 alto nm="Viola"', 'V:3 alto nm="Violin"')
    problem = grouping_problem(swapped)
    assert problem and "voices 1 and 3" in problem
    assert grouping_problem(piece("mozart_k155_movement2")) is None  # four different names


def candidates_and_references():
    references = [(n, piece(n)) for n in ("bach_bwv66.6", "bach_bwv7.7")]
    texts = {
        "copy": "X:1\n" + (PRE / "augmented" / "E" / "bach_bwv66.6_E.abc").read_text(encoding="utf-8"),
        "broken": misaligned("X:1\n" + piece("bach_bwv7.7").replace("K:Bmin", "K:Amin")),
        "haydn": piece("haydn_opus74no1_movement3"),
        "mozart": piece("mozart_k155_movement2"),
        "schumann": piece("schumann_robert_opus41no1_movement2"),
        "beethoven": piece("beethoven_opus18no1_movement4"),
    }
    cands = [Candidate(name=k, text=v, abc=v, seed=i) for i, (k, v) in enumerate(texts.items())]
    cands.append(Candidate(name="failed", text="%Baroque\n", abc=None, status="limit", reason="hit the patch limit"))
    scorer = BuiltinScorer()
    mean = score_candidates(cands, scorer, references, scorer.features([t for _, t in references]))
    return cands, mean


def test_selection_skips_plagiarism_and_misalignment():
    cands, mean = candidates_and_references()
    by = {c.name: c for c in cands}
    assert by["copy"].nearest_reference == "bach_bwv66.6" and by["copy"].nearest_similarity > 0.985
    assert by["copy"].score > by["haydn"].score  # chorale-like pieces score higher against chorales
    assert mean == pytest.approx(sum(c.score for c in cands if c.score is not None) / 6)
    pref = select_preferences(cands, portion=0.34, plagiarism_threshold=0.985)  # 6 scored -> 2 each
    ranked = sorted((c for c in cands if c.score is not None), key=lambda c: -c.score)
    assert [c.name for c in pref.rejected] == [c.name for c in ranked[-2:]]
    assert {"copy", "broken"} <= {c.name for c in pref.skipped}
    # the walk down the ranking stops before the rejected pieces: haydn's fixture has an odd bar (58) too,
    # so only one piece is chosen
    assert [c.name for c in pref.chosen] == ["mozart"]
    assert "plagiarism" in by["copy"].reason and "align" in by["broken"].reason
    assert by["failed"].decision == "failed" and "patch limit" in by["failed"].reason
    assert all(c.decision in ("chosen", "rejected", "skipped", "unused", "failed") for c in cands)
    assert len(pref.pairs()) == 2
    record = pref.record(portion=0.34)
    assert record["pairs"] == 2 and all("reason" in c and "score" in c for c in record["chosen"])


def test_rated_pieces_join_or_make_the_pairs():
    prompt = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")
    ratings = [HumanRating(piece("bach_bwv66.6"), 1, prompt), HumanRating(piece("bach_bwv7.7"), -1, prompt),
               HumanRating(piece("haydn_opus74no1_movement3"), -1, prompt)]
    from pipelines.dpo.preference import Preference

    pref = merge_ratings(Preference(), ratings)
    assert [c.rating for c in pref.chosen] == [1] and len(pref.rejected) == 2 and len(pref.pairs()) == 2
    assert pref.chosen[0].reason == "rated +1 by the user"
    with pytest.raises(DPOError, match="must be \\+1 or -1"):
        HumanRating("x", 0)
