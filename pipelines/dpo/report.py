"""What a DPO run measures of each model it makes: of a sample of its pieces, the share that end, the share that
is usable and the mean score; the flag on an iteration that lowers the usable share; the keep-best rule.

Each iteration's samples measure the model it starts from; the final samples measure the last model. So
iteration k's model is measured by iteration k+1's samples (or the final ones), and iteration k *lowered the
usable share* when that measurement is below iteration k's own. Torch-free.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from pipelines.dpo.preference import Candidate


@dataclass
class SampleFigures:
    """One model's sample: how many pieces, how many ended, how many are usable, their mean score."""

    model: str  # the checkpoint's path
    label: str  # "starting model", "after iteration 1", ...
    pieces: int
    ended: int
    usable: int
    mean_score: float | None  # of the scored pieces (ended and post-processed); None when none was

    @property
    def ended_share(self) -> float:
        return self.ended / self.pieces if self.pieces else 0.0

    @property
    def usable_share(self) -> float:
        return self.usable / self.pieces if self.pieces else 0.0

    @property
    def quality(self) -> float:
        """The keep-best measure: usable share x mean score (0 without a score)."""
        return self.usable_share * (self.mean_score or 0.0)

    def describe(self) -> str:
        score = "no mean score" if self.mean_score is None else f"mean score {self.mean_score:.3f}"
        return (f"{self.pieces} pieces: {self.ended} ended ({self.ended_share:.0%}), {self.usable} usable "
                f"({self.usable_share:.0%}), {score}")

    def to_dict(self) -> dict:
        return {**asdict(self), "ended_share": self.ended_share, "usable_share": self.usable_share,
                "quality": self.quality}

    @classmethod
    def from_dict(cls, data: dict) -> SampleFigures:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def measure(candidates: list[Candidate], model: str, label: str, mean_score: float | None) -> SampleFigures:
    """The figures of a model's generated pieces (rated library pieces and pieces the user stopped left out);
    `classify` must have run on them."""
    mine = [c for c in candidates if c.source != "human" and c.status != "cancelled"]
    return SampleFigures(model=str(model), label=label, pieces=len(mine), ended=sum(c.ended for c in mine),
                         usable=sum(c.usable for c in mine), mean_score=mean_score)


def lowered_usable(before: SampleFigures, after: SampleFigures) -> bool:
    """Whether the model measured by `after` writes a smaller share of usable pieces than the one before."""
    return after.usable_share < before.usable_share


def flag_text(iteration: int, before: SampleFigures, after: SampleFigures) -> str:
    return (f"iteration {iteration} lowered the usable share: {before.usable_share:.0%} of its starting model's "
            f"pieces were usable, {after.usable_share:.0%} of its own")


def best_model(measured: list[SampleFigures]) -> SampleFigures | None:
    """The measured model with the highest usable share x mean score; on a tie, the earliest (the one DPO moved
    least). None when nothing was measured."""
    best = None
    for figures in measured:
        if best is None or figures.quality > best.quality:
            best = figures
    return best
