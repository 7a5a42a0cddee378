"""The settings of a dataset build, as a typed dataclass: the one home of their defaults and ranges."""
from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.dataset.annotate import Labels
from pipelines.dataset.workers import default_workers
from pipelines.errors import DatasetError
from pipelines.fields import MAX_WORKERS, check_ranges, option, problem_with, range_of


@dataclass
class DatasetConfig:
    labels: Labels = field(default_factory=Labels)  # applied to every piece (unset fields: from the score)
    piece_labels: dict[str, Labels] = field(default_factory=dict)  # by piece, file name or path; wins over `labels`
    eval_split: float = option(0.1, low=0.0, high=1.0, high_open=True, label="eval split",
                               help="share of pieces held out (at least one when there are two or more pieces)")
    seed: int = option(0, help="seed of the train/eval split")
    workers: int = option(default_factory=default_workers, low=0, high=MAX_WORKERS,
                          help=f"worker processes (default: one per core, at most {MAX_WORKERS}; "
                               "0: in this process, no time limit)")
    time_limit_s: float | None = option(60.0, low=0.0, low_open=True, label="time limit",
                                        help="seconds per file")
    use_cache: bool = option(True, label="reuse unchanged pieces",
                             help="reuse pieces whose source is unchanged since the last build into this folder "
                                  "(off: convert every file again)")
    # A piece whose voices differ in length or barline in more than this share of its bars is
    # converted but left out of the index (1.0 keeps every piece, as upstream does; 0 keeps only
    # pieces with no such bar). A model learns misalignment from such pieces.
    max_unaligned_share: float = option(
        1.0, low=0.0, high=1.0, label="largest unaligned share",
        help="leave out pieces whose voices differ in length or barline in more than this share of their bars "
             "(1.0: keep all, as upstream; 0: only fully aligned pieces)")

    def __post_init__(self):
        if problem_with(DatasetConfig, "max_unaligned_share", self.max_unaligned_share):
            low, high = range_of(DatasetConfig, "max_unaligned_share")  # worded as the build has always said it
            raise DatasetError(f"largest unaligned share {self.max_unaligned_share} must be between {low:g} and {high:g}")
        check_ranges(self, DatasetError)
