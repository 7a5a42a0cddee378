"""From scored pieces to preference pairs: what each piece is (usable or why not), the chosen and rejected sets,
and which chosen piece each rejected one is paired with.

Every generated piece counts. A piece is *usable* when the model ended it, it post-processes, its voices' bars
align, it is no near-copy of one reference piece and the staves of one instrument are grouped together.

- Chosen (NotaGen's CLaMP-DPO rule): the top `portion` of the scored pieces, walking down the ranking and
  taking only usable pieces, above the bottom `portion`.
- Rejected: the bottom `portion` by score (as upstream), and every piece that is not usable: one that hit
  the patch, character or time limit, one that ended but cannot be post-processed, is misaligned, copies a
  reference or splits an instrument's staves. Upstream drops those, so nothing teaches the model to end
  a piece; here they are what the model is pushed away from.
- Pairs: a piece rejected by score is paired with every chosen piece (as upstream); a piece rejected for what
  it is, with the chosen pieces of its own prompt, or with every chosen piece where its prompt has none.
  Pieces the user rated in the library (+1 / -1) join the chosen / rejected sets and pair with every piece
  of the other set. A pair the user judged ("A is better than B", two pieces of one prompt) is one pair
  as it stands: A chosen, B rejected, paired with each other only.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pipelines.abc.prompts import Prompt
from pipelines.abc.report import report_piece
from pipelines.errors import AbcError, DPOError

_SCORE_VOICES = re.compile(r"[^\s{}()\[\]|]+")
# The engine's words for a piece that ended but could not be post-processed (GeneratedPiece.reason).
POSTPROCESS_FAILED = "post-processing failed"

# Why a piece is not usable, from the least to the most finished; and how a line of figures names each.
UNFINISHED, BROKEN, MISALIGNED, COPY, UNGROUPED = "unfinished", "broken", "misaligned", "copy", "ungrouped"
PROBLEM_WORDS = {BROKEN: "ended but could not be post-processed",
                 MISALIGNED: "ended with voices whose bars do not align",
                 COPY: "ended as a near-copy of a reference piece",
                 UNGROUPED: "ended with an instrument's staves apart"}


@dataclass
class Candidate:
    """One piece that may enter a preference pair."""

    name: str
    text: str  # what log-probs are measured on: generated text or any ABC `training_text` reads
    abc: str | None  # post-processed ABC that scorers and filters read; None when generation failed
    prompt: Prompt | None = None
    seed: int | None = None
    source: str = "generated"  # generated | human | given
    status: str = "ok"  # the generation status (ok | limit | cancelled | invalid)
    reason: str = ""  # the preference decision's reason
    score: float | None = None
    nearest_similarity: float | None = None
    nearest_reference: str = ""
    decision: str = ""  # chosen | rejected | unused | scored
    rating: int | None = None
    problem_kind: str = ""  # why the piece is not usable: unfinished | broken | misaligned | copy | ungrouped
    problem: str = ""  # the same in words: the engine's reason, or the filters' findings
    # a rejected piece's partners: "any" chosen piece, or those of its "prompt" first; "judged": a piece of the
    # user's pairwise judgements, in the pairs the user made (`Preference.judged`) and no others
    pairs_with: str = "any"
    chars: int = 0  # generated chars (the prompt's excluded)

    @property
    def ended(self) -> bool:
        """Whether the model wrote the piece's end (post-processed or not)."""
        return self.abc is not None or (self.status == "invalid" and self.problem.startswith(POSTPROCESS_FAILED))

    @property
    def usable(self) -> bool:
        """Ended, post-processed and through every filter (`classify` sets the filters' findings)."""
        return self.abc is not None and not self.problem_kind

    def record(self) -> dict:
        return {"name": self.name, "source": self.source, "prompt": self.prompt.line if self.prompt else None,
                "seed": self.seed, "status": self.status, "ended": self.ended, "usable": self.usable,
                "problem": self.problem, "score": self.score, "nearest_reference": self.nearest_reference,
                "nearest_similarity": self.nearest_similarity, "rating": self.rating, "decision": self.decision,
                "reason": self.reason}


@dataclass
class HumanRating:
    """A piece the user rated in the library: +1 (chosen) or -1 (rejected)."""

    abc: str  # generated text or post-processed ABC
    rating: int
    prompt: Prompt | None = None
    name: str = ""

    def __post_init__(self):
        if self.rating not in (1, -1):
            raise DPOError(f"rating {self.rating!r} of {self.name or 'a piece'} must be +1 or -1")


@dataclass
class HumanPair:
    """Two pieces of one prompt the user compared: `better` is chosen, `worse` rejected, one pair."""

    better: str  # generated text or post-processed ABC
    worse: str
    prompt: Prompt | None = None
    better_name: str = ""
    worse_name: str = ""

    def __post_init__(self):
        if self.better_name and self.better_name == self.worse_name:
            raise DPOError(f"{self.better_name} cannot be judged better than itself")


HumanJudgement = HumanRating | HumanPair  # what the user said about pieces: a thumbs up / down, or A over B
JUDGED = "judged"  # the pairs_with of a piece in the user's pairwise judgements


def describe_judgements(judgements: list[HumanJudgement]) -> str:
    """E.g. "2 pieces rated up, 1 rated down and 3 pairwise judgements"."""
    up = sum(isinstance(j, HumanRating) and j.rating > 0 for j in judgements)
    down = sum(isinstance(j, HumanRating) and j.rating < 0 for j in judgements)
    pairs = sum(isinstance(j, HumanPair) for j in judgements)
    return (f"{up} piece{'s' if up != 1 else ''} rated up, {down} rated down and {pairs} pairwise "
            f"judgement{'s' if pairs != 1 else ''}")


@dataclass
class Preference:
    chosen: list[Candidate] = field(default_factory=list)
    rejected: list[Candidate] = field(default_factory=list)
    judged: list[tuple[int, int]] = field(default_factory=list)  # (chosen, rejected) indices the user paired

    def pairs(self) -> list[tuple[int, int]]:
        """(chosen index, rejected index) of every pair, by the pairing rule of the module's docstring; each once."""
        out = set(self.judged)
        open_chosen = [i for i, c in enumerate(self.chosen) if c.pairs_with != JUDGED]
        for j, r in enumerate(self.rejected):
            if r.pairs_with == JUDGED:
                continue
            same = ([i for i in open_chosen if self.chosen[i].prompt is not None
                     and self.chosen[i].prompt == r.prompt] if r.pairs_with == "prompt" else [])
            out.update((i, j) for i in (same or open_chosen))
        return sorted(out)

    def named_pairs(self) -> list[tuple[str, str]]:
        """(chosen name, rejected name) of every pair."""
        return [(self.chosen[i].name, self.rejected[j].name) for i, j in self.pairs()]

    def record(self, **settings) -> dict:
        return {**settings, "pairs": len(self.pairs()), "paired": [list(p) for p in self.named_pairs()],
                "chosen": [c.record() for c in self.chosen], "rejected": [c.record() for c in self.rejected]}


# ---------------------------------------------------------------- filters

def alignment_problem(abc: str) -> str | None:
    """Why the voices' bars do not line up (abctoolkit's check, via the piece report), or None."""
    try:
        report = report_piece(abc)
    except AbcError as e:
        return f"cannot be read ({e})"
    if report.aligned:
        return None
    more = f" (and {len(report.findings) - 1} more)" if len(report.findings) > 1 else ""
    return f"voices' bars do not align: {report.findings[0]}{more}"


def score_order(abc: str) -> list[str]:
    """Voice ids in the order the `%%score` line lays them out ([] when there is none)."""
    for line in abc.split("\n"):
        if line.startswith("%%score"):
            return _SCORE_VOICES.findall(line[len("%%score"):])
    return []


def grouping_problem(abc: str) -> str | None:
    """Why the staves of one instrument are not together, or None.

    An instrument is a voice's `nm="..."` name; voices without a name are not counted.
    Checked in the order the voices are defined (as upstream) and in the `%%score` layout.
    """
    try:
        report = report_piece(abc)
    except AbcError as e:
        return f"cannot be read ({e})"
    names = dict(zip(report.voices, report.voice_names))
    layout = score_order(abc)
    orders = [("defined", report.voices)]
    if layout:
        orders.append(("laid out by %%score", layout + [v for v in report.voices if v not in layout]))
    for label, order in orders:
        seen, last = {}, None
        for voice in order:
            name = names.get(voice, "")
            if not name:
                continue
            if name != last and name in seen:
                return (f"staves of {name!r} are not grouped together: voices {seen[name]} and {voice} "
                        f"({label}) have {last!r} between them")
            seen.setdefault(name, voice)
            last = name
    return None


def plagiarism_problem(candidate: Candidate, threshold: float) -> str | None:
    if candidate.nearest_similarity is not None and candidate.nearest_similarity > threshold:
        return (f"plagiarism: {candidate.nearest_similarity:.3f} similar to reference "
                f"{candidate.nearest_reference} (above {threshold})")
    return None


def classify(candidates: list[Candidate], plagiarism_threshold: float) -> None:
    """Set `problem_kind` and `problem` on every candidate (empty on a usable one); scores must be set first."""
    for c in candidates:
        if c.abc is None:
            c.problem = c.problem or f"generation ended with status {c.status}"
            c.problem_kind = BROKEN if c.ended else UNFINISHED
            continue
        found = [(kind, p) for kind, p in ((MISALIGNED, alignment_problem(c.abc)),
                                           (COPY, plagiarism_problem(c, plagiarism_threshold)),
                                           (UNGROUPED, grouping_problem(c.abc))) if p]
        c.problem_kind = found[0][0] if found else ""
        c.problem = "; ".join(p for _, p in found)


# ---------------------------------------------------------------- selection

def select_preferences(candidates: list[Candidate], portion: float, plagiarism_threshold: float) -> Preference:
    """Chosen and rejected candidates by the rules of the module's docstring.

    Sets `decision` and `reason` on every candidate. Candidates must be scored (those with ABC);
    a piece cut short by the user (status cancelled) is left out.
    """
    classify(candidates, plagiarism_threshold)
    live = [c for c in candidates if c.status != "cancelled"]
    for c in candidates:
        if c.status == "cancelled":
            c.decision, c.reason = "unused", "stopped by the user before it ended"
    ranked = sorted((c for c in live if c.abc is not None and c.score is not None), key=lambda c: -c.score)
    n = len(ranked)
    k = max(1, int(n * portion)) if n else 0
    bottom = ranked[n - k:] if n >= 2 else []
    preference = Preference()
    for rank, c in enumerate(ranked, 1):
        c.decision, c.reason = "unused", f"rank {rank} of {n} by score: neither in the top {k} nor the bottom {k}"
    for rank, c in enumerate(ranked[:n - len(bottom)], 1):
        if len(preference.chosen) == k:
            break
        if c.usable:
            c.decision = "chosen"
            c.reason = (f"rank {rank} of {n} by score, usable: ended, bars align, staves grouped, nearest reference "
                        f"{c.nearest_similarity:.3f} (limit {plagiarism_threshold})")
            preference.chosen.append(c)
    for rank, c in enumerate(bottom, n - len(bottom) + 1):
        c.decision, c.pairs_with = "rejected", "any"
        c.reason = f"rank {rank} of {n} by score: in the bottom {len(bottom)}" + (f"; {c.problem}" if c.problem
                                                                                     else "")
        preference.rejected.append(c)
    for c in live:
        if c.problem_kind and c.decision != "rejected":
            c.decision, c.pairs_with = "rejected", "prompt"
            c.reason = f"not usable: {c.problem}"
            preference.rejected.append(c)
    return preference


def rated_candidates(ratings: list[HumanRating]) -> list[Candidate]:
    """The user's rated pieces as candidates, decided by their rating."""
    out = []
    for i, r in enumerate(ratings):
        c = Candidate(name=r.name or f"rated_{i + 1:04d}", text=r.abc, abc=r.abc, prompt=r.prompt,
                      source="human", rating=r.rating)
        c.decision = "chosen" if r.rating > 0 else "rejected"
        c.reason = f"rated {r.rating:+d} by the user"
        out.append(c)
    return out


def merge_ratings(preference: Preference, judgements: list[HumanJudgement]) -> Preference:
    """Add the user's judgements to a scorer's preference (or to an empty one): rated pieces to the chosen or
    rejected set, each judged pair as one pair (a piece judged several times, or also rated, enters a side once)."""
    for c in rated_candidates([j for j in judgements if isinstance(j, HumanRating)]):
        (preference.chosen if c.rating > 0 else preference.rejected).append(c)
    for n, pair in enumerate((j for j in judgements if isinstance(j, HumanPair)), 1):
        better, worse = pair.better_name or f"pair_{n:04d}_better", pair.worse_name or f"pair_{n:04d}_worse"
        i = _judged_piece(preference.chosen, better, pair.better, pair.prompt, "chosen", f"better than {worse}")
        j = _judged_piece(preference.rejected, worse, pair.worse, pair.prompt, "rejected", f"worse than {better}")
        preference.judged.append((i, j))
    return preference


def _judged_piece(side: list[Candidate], name: str, text: str, prompt: Prompt | None, decision: str,
                  judged: str) -> int:
    """The index in `side` of the user's piece `name`, added there if it is not yet."""
    for i, c in enumerate(side):
        if c.source == "human" and c.name == name:
            c.reason += f"; judged {judged}"
            return i
    side.append(Candidate(name=name, text=text, abc=text, prompt=prompt, source="human", decision=decision,
                          reason=f"judged {judged} by the user", pairs_with=JUDGED))
    return len(side) - 1


# ---------------------------------------------------------------- in words

def outcomes(candidates: list[Candidate]) -> str:
    """What became of the pieces, e.g. "3 reached the 96-patch limit without an ending, 1 usable"."""
    counts = Counter()
    for c in candidates:
        if c.status == "cancelled":
            counts["stopped by the user"] += 1
        elif c.problem_kind == UNFINISHED:
            counts[c.problem] += 1
        elif c.problem_kind:
            counts[PROBLEM_WORDS[c.problem_kind]] += 1
        else:
            counts["usable"] += 1
    return ", ".join(f"{n} {what}" for what, n in counts.most_common())


def why_few_pairs(candidates: list[Candidate], preference: Preference) -> str:
    """Why a selection made the pairs it made, in words a musician can act on.

    E.g. "all 4 pieces reached the 300-patch limit without an ending; none ended, so none can be chosen".
    """
    generated = [c for c in candidates if c.source != "human"]
    n, pairs = len(generated), len(preference.pairs())
    if not n:
        what = "no pieces were written"
    elif len({(c.problem_kind, c.problem) for c in generated}) == 1:
        only = generated[0]
        words = (only.problem if only.problem_kind == UNFINISHED else PROBLEM_WORDS.get(only.problem_kind)
                 or ("are usable" if n > 1 else "is usable"))
        what = f"all {n} pieces {words}" if n > 1 else f"the only piece {words}"
    else:
        what = f"of {n} pieces, {outcomes(generated)}"
    if not preference.chosen:
        ended = sum(c.ended for c in generated)
        tail = ("none ended, so none can be chosen" if not ended
                else "none is usable, so none can be chosen")
    elif not preference.rejected:
        tail = f"{len(preference.chosen)} chosen but none rejected"
    else:
        tail = f"{len(preference.chosen)} chosen and {len(preference.rejected)} rejected make {pairs} pairs"
    return f"{what}; {tail}"
