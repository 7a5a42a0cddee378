"""CLaMP-DPO: preference optimisation of NotaGen against a scorer and/or the user's ratings.

Front doors: `run_dpo(DPOConfig(...))` (loop.py), `dpo_loss` (loss.py), `sequence_logprobs` /
`training_text` (logprobs.py), `BuiltinScorer` / `Scorer` (scorers.py), `Clamp2Scorer` /
`load_clamp2` (clamp2.py), `select_preferences` / `HumanRating` (preference.py),
`estimate_dpo_memory` (memory.py).
"""
from .config import DPOConfig
from .logprobs import sequence_logprobs, training_text
from .loop import DPOResult, run_dpo
from .loss import dpo_loss
from .memory import estimate_dpo_memory
from .preference import Candidate, HumanRating, select_preferences
from .scorers import BuiltinScorer, Scorer

__all__ = ["DPOConfig", "DPOResult", "run_dpo", "dpo_loss", "sequence_logprobs", "training_text",
           "estimate_dpo_memory", "Candidate", "HumanRating", "select_preferences", "BuiltinScorer", "Scorer"]
