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
    why_few_pairs,
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
    cands.append(Candidate(name="failed", text="%Baroque\n", abc=None, status="limit",
                           problem="reached the 300-patch limit without an ending"))
    scorer = BuiltinScorer()
    mean = score_candidates(cands, scorer, references, scorer.features([t for _, t in references]))
    return cands, mean


def test_selection_rejects_copies_misaligned_and_unfinished_pieces():
    """Upstream's chosen rule; every piece that is not usable is rejected, not skipped (rule changed on purpose)."""
    cands, mean = candidates_and_references()
    by = {c.name: c for c in cands}
    assert by["copy"].nearest_reference == "bach_bwv66.6" and by["copy"].nearest_similarity > 0.985
    assert by["copy"].score > by["haydn"].score  # chorale-like pieces score higher against chorales
    assert mean == pytest.approx(sum(c.score for c in cands if c.score is not None) / 6)
    pref = select_preferences(cands, portion=0.34, plagiarism_threshold=0.985)  # 6 scored -> 2 each way
    ranked = sorted((c for c in cands if c.score is not None), key=lambda c: -c.score)
    assert [c.name for c in pref.rejected[:2]] == [c.name for c in ranked[-2:]]  # the bottom two by score
    # the walk down the ranking stops before the bottom two: haydn's fixture has an odd bar (58) too,
    # so only one piece is chosen
    assert [c.name for c in pref.chosen] == ["mozart"]
    rejected = {c.name for c in pref.rejected}
    assert {"copy", "broken", "haydn", "failed"} <= rejected and "mozart" not in rejected
    assert "plagiarism" in by["copy"].reason and "align" in by["broken"].reason
    assert by["failed"].decision == "rejected" and "patch limit" in by["failed"].reason
    assert not by["failed"].ended and by["copy"].ended and not by["copy"].usable and by["mozart"].usable
    assert all(c.decision in ("chosen", "rejected", "unused") for c in cands)
    assert len(pref.pairs()) == len(pref.rejected)  # one chosen piece, paired with every rejected one
    record = pref.record(portion=0.34)
    assert record["pairs"] == len(pref.rejected) and all("reason" in c and "score" in c for c in record["chosen"])


def scored(name: str, text: str, prompt: Prompt, score: float) -> Candidate:
    return Candidate(name=name, text=text, abc=text, prompt=prompt, score=score, nearest_similarity=0.5)


def unfinished(name: str, prompt: Prompt, limit: int = 300) -> Candidate:
    return Candidate(name=name, text="%x\n", abc=None, prompt=prompt, status="limit",
                     problem=f"reached the {limit}-patch limit without an ending")


def test_an_unfinished_candidate_becomes_a_rejected_one_paired_within_its_prompt():
    p1, p2, p3 = (Prompt("Classical", c, "Chamber") for c in ("Mozart, Wolfgang Amadeus", "Haydn, Joseph",
                                                             "Beethoven, Ludwig van"))
    text = "X:1\n" + piece("mozart_k155_movement2")
    cands = [scored("a", text, p1, 0.9), scored("b", text, p2, 0.8), scored("c", text, p1, 0.3),
             scored("d", text, p2, 0.2), unfinished("u1", p1), unfinished("u2", p3)]
    pref = select_preferences(cands, portion=0.5, plagiarism_threshold=0.985)  # 4 scored -> 2 chosen, 2 rejected
    assert [c.name for c in pref.chosen] == ["a", "b"]
    assert [c.name for c in pref.rejected] == ["c", "d", "u1", "u2"]
    named = {(pref.chosen[i].name, pref.rejected[j].name) for i, j in pref.pairs()}
    # by score: with every chosen piece; unfinished: with its prompt's chosen piece, else with every one
    assert named == {("a", "c"), ("b", "c"), ("a", "d"), ("b", "d"), ("a", "u1"), ("a", "u2"), ("b", "u2")}
    u1 = cands[4]
    assert u1.decision == "rejected" and u1.reason == "not usable: reached the 300-patch limit without an ending"


def test_no_pairs_says_what_became_of_the_pieces():
    prompt = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")
    cands = [unfinished(f"u{i}", prompt) for i in range(4)]
    pref = select_preferences(cands, portion=0.1, plagiarism_threshold=0.985)
    assert not pref.chosen and len(pref.rejected) == 4 and pref.pairs() == []
    assert why_few_pairs(cands, pref) == (
        "all 4 pieces reached the 300-patch limit without an ending; none ended, so none can be chosen")
    broken = Candidate(name="b", text="%x\n", abc=None, prompt=prompt, status="invalid",
                       problem="post-processing failed: bar 3 cannot be read")
    mixed = cands[:3] + [broken]
    pref = select_preferences(mixed, portion=0.1, plagiarism_threshold=0.985)
    assert broken.ended and not broken.usable and broken.decision == "rejected"
    assert why_few_pairs(mixed, pref) == (
        "of 4 pieces, 3 reached the 300-patch limit without an ending, 1 ended but could not be post-processed; "
        "none is usable, so none can be chosen")


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


def test_judged_pairs_are_the_pairs_the_user_made_and_join_ratings_and_a_scorers_sets():
    from pipelines.dpo.preference import HumanPair, Preference, describe_judgements

    prompt = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")
    a, b, c = piece("bach_bwv66.6"), piece("bach_bwv7.7"), piece("haydn_opus74no1_movement3")
    judged = [HumanPair(a, b, prompt, "library-1", "library-2"), HumanPair(a, c, prompt, "library-1", "library-3"),
              HumanPair(b, c, prompt, "library-2", "library-3")]
    pref = merge_ratings(Preference(), judged)
    # a piece judged several times enters each side once; only the judged pairs are made
    assert [x.name for x in pref.chosen] == ["library-1", "library-2"]
    assert [x.name for x in pref.rejected] == ["library-2", "library-3"]
    assert pref.named_pairs() == [("library-1", "library-2"), ("library-1", "library-3"), ("library-2", "library-3")]
    assert pref.chosen[0].reason == "judged better than library-2 by the user; judged better than library-3"
    assert pref.record()["paired"] == [list(p) for p in pref.named_pairs()]
    # with a scorer's sets and thumbs: a generated rejected piece pairs with the scorer's chosen and the piece rated
    # up, never with a piece that is chosen only for one judgement; a piece rated up and judged pairs both ways
    scored = Preference(chosen=[Candidate("top", a, a, prompt)], rejected=[Candidate("low", c, c, prompt)])
    mixed = merge_ratings(scored, [HumanRating(a, 1, prompt, "library-1"), *judged])
    assert mixed.named_pairs() == [("top", "low"), ("library-1", "low"), ("library-1", "library-2"),
                                   ("library-1", "library-3"), ("library-2", "library-3")]
    assert [x.name for x in mixed.chosen] == ["top", "library-1", "library-2"]
    assert mixed.chosen[1].reason == "rated +1 by the user; judged better than library-2; judged better than library-3"
    said = describe_judgements([HumanRating(a, 1), *judged])
    assert said == "1 piece rated up, 0 rated down and 3 pairwise judgements"
    with pytest.raises(DPOError, match="library-1 cannot be judged better than itself"):
        HumanPair(a, a, prompt, "library-1", "library-1")
