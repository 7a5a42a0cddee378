"""Training NotaGen: fine-tuning (full or LoRA), training from scratch, resume, NotaGen-X download.

Front doors: `train(TrainConfig(...))` (loop.py), `merge_lora(...)` (lora.py),
`download_notagenx(...)` / `find_notagenx(...)` (notagenx.py), `read_train_log(...)` (runlog.py).
"""
from .config import TrainConfig
from .loop import TrainResult, train
from .lora import load_adapter, merge_lora
from .notagenx import download_notagenx, find_notagenx
from .runlog import read_train_log

__all__ = ["TrainConfig", "TrainResult", "train", "load_adapter", "merge_lora", "download_notagenx",
           "find_notagenx", "read_train_log"]
