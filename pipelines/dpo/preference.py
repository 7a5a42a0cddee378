"""From scored pieces to preference pairs: the chosen and rejected sets, each with its reason.

As NotaGen's CLaMP-DPO: pieces are ranked by score; the chosen set is the top
`portion`, walking down the ranking and skipping any piece whose voices' bars do not
align, that is closer than the plagiarism threshold to one reference piece, or
whose staves of one instrument are not grouped together; the rejected set is the
bottom `portion`, unfiltered. Pieces the user rated in the library (+1 / -1) join
the chosen / rejected sets, alone or with a scorer's. Every piece of every set is
paired with every piece of the other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipelines.abc.prompts import Prompt
from pipelines.abc.report import report_piece
from pipelines.errors import AbcError, DPOError

_SCORE_VOICES = re.compile(r"[^\s{}()\[\]|]+")


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
    reason: str = ""  # why generation failed, or the preference decision's reason
    score: float | None = None
    nearest_similarity: float | None = None
    nearest_reference: str = ""
    decision: str = ""  # chosen | rejected | skipped | unused | failed
    rating: int | None = None

    def record(self) -> dict:
        return {"name": self.name, "source": self.source, "prompt": self.prompt.line if self.prompt else None,
                "seed": self.seed, "status": self.status, "score": self.score,
                "nearest_reference": self.nearest_reference, "nearest_similarity": self.nearest_similarity,
                "rating": self.rating, "decision": self.decision, "reason": self.reason}


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
class Preference:
    chosen: list[Candidate] = field(default_factory=list)
    rejected: list[Candidate] = field(default_factory=list)
    skipped: list[Candidate] = field(default_factory=list)

    def pairs(self) -> list[tuple[int, int]]:
        """Every (chosen index, rejected index)."""
        return [(i, j) for i in range(len(self.chosen)) for j in range(len(self.rejected))]

    def record(self, **settings) -> dict:
        return {**settings, "pairs": len(self.pairs()), "chosen": [c.record() for c in self.chosen],
                "rejected": [c.record() for c in self.rejected], "skipped": [c.record() for c in self.skipped]}


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


# ---------------------------------------------------------------- selection

def select_preferences(candidates: list[Candidate], portion: float, plagiarism_threshold: float) -> Preference:
    """Chosen (top `portion`, filtered) and rejected (bottom `portion`) among scored candidates.

    Sets `decision` and `reason` on every candidate; candidates without a score (failed
    generations) are marked failed.
    """
    scored = [c for c in candidates if c.abc is not None and c.score is not None]
    for c in candidates:
        if c.abc is None or c.score is None:
            c.decision = "failed"
            c.reason = c.reason or f"generation ended with status {c.status}"
    ranked = sorted(scored, key=lambda c: c.score, reverse=True)
    n = len(ranked)
    k = max(1, int(n * portion)) if n >= 2 else 0
    preference = Preference()
    rejected = ranked[n - k:] if k else []
    for rank, c in enumerate(ranked, 1):
        c.decision, c.reason = "unused", f"rank {rank} of {n}: neither in the top nor the bottom {portion:g}"
    for rank, c in enumerate(rejected, n - k + 1):
        c.decision, c.reason = "rejected", f"rank {rank} of {n}: in the bottom {k} by score"
        preference.rejected.append(c)
    for rank, c in enumerate(ranked[:n - k], 1):
        if len(preference.chosen) == k:
            break
        problems = [p for p in (alignment_problem(c.abc), plagiarism_problem(c, plagiarism_threshold),
                                grouping_problem(c.abc)) if p]
        if problems:
            c.decision, c.reason = "skipped", f"rank {rank} of {n}: " + "; ".join(problems)
            preference.skipped.append(c)
        else:
            c.decision = "chosen"
            c.reason = (f"rank {rank} of {n}: bars align, staves grouped, nearest reference "
                        f"{c.nearest_similarity:.3f} (limit {plagiarism_threshold})")
            preference.chosen.append(c)
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


def merge_ratings(preference: Preference, ratings: list[HumanRating]) -> Preference:
    """Add the user's rated pieces to a scorer's preference (or to an empty one)."""
    for c in rated_candidates(ratings):
        (preference.chosen if c.rating > 0 else preference.rejected).append(c)
    return preference
