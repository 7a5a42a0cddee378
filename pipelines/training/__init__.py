"""Training NotaGen: fine-tuning (full or LoRA), training from scratch, resume.

Front doors: `train(TrainConfig(...))` (loop.py) and `read_train_log(...)` (runlog.py). LoRA
adapter files and NotaGen-X's lookup and download are model files: `pipelines.model.lora`,
`pipelines.model.notagenx`.
They are imported on first use, so `pipelines.training.config` (what the CLI parser
reads) does not load torch, accelerate and peft.
"""
from importlib import import_module

_HOMES = {"TrainConfig": ".config", "TrainResult": ".loop", "train": ".loop", "read_train_log": ".runlog"}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
