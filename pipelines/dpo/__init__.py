"""CLaMP-DPO: preference optimisation of NotaGen against a scorer and/or the user's judgements
(thumbs up / down and "A is better than B").

Front doors: `run_dpo(DPOConfig(...))` and `evaluate_model` (loop.py), `dpo_loss` (loss.py),
`sequence_logprobs` / `training_text` (logprobs.py), `BuiltinScorer` / `Scorer` (scorers.py),
`Clamp2Scorer` / `load_clamp2` (clamp2.py), `select_preferences` / `HumanRating` /
`HumanPair` (preference.py),
`SampleFigures` / `best_model` (report.py), `estimate_dpo_memory` (memory.py), `estimate_dpo_time`
(estimate.py). They are imported on first use, so `pipelines.dpo.config` (what the CLI parser
reads) does not load the model, generation and training stack.
"""
from importlib import import_module

_HOMES = {"DPOConfig": ".config", "DPOResult": ".loop", "run_dpo": ".loop", "evaluate_model": ".loop",
          "dpo_loss": ".loss", "sequence_logprobs": ".logprobs", "training_text": ".logprobs",
          "estimate_dpo_memory": ".memory", "estimate_dpo_time": ".estimate", "Candidate": ".preference",
          "HumanRating": ".preference", "HumanPair": ".preference", "select_preferences": ".preference",
          "SampleFigures": ".report", "best_model": ".report", "BuiltinScorer": ".scorers", "Scorer": ".scorers"}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
