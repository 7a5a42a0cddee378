"""Loading a model file into an engine, and the one slot that holds the loaded engine."""
from __future__ import annotations

import threading
from pathlib import Path

from pipelines.generation.engine import Engine
from pipelines.generation.plan import DecodeOptions
from pipelines.model.lora import load_model
from pipelines.model.registry import prompt_vocabulary
from pipelines.model.runtime import pick_runtime, release


def load_engine(path: Path, device: str | None = "auto", dtype: str | None = "auto",
                decode: DecodeOptions = DecodeOptions()) -> Engine:
    """An engine over the model file at `path`; `decode` as `Engine` takes it (default: decided by the runtime)."""
    runtime = pick_runtime(device, dtype)
    # Nothing may stay in the file's mapping, so the file can be saved over while the model is loaded
    # (Windows refuses to replace a mapped file): on a GPU the Engine's move copies the weights out at
    # once; on the CPU the loader copies what is still mapped.
    ckpt = load_model(path, device="cpu", leave_mapped=runtime.device.type != "cpu")
    ckpt.card.prompts = prompt_vocabulary(path, ckpt.card)
    return Engine(ckpt.model, runtime, name=Path(path).name, card=ckpt.card, compile=decode.compile,
                  fused=decode.fused, pair=decode.pair)


class ModelSlot:
    """Holds at most one loaded engine, so a 24 GB card never carries two models."""

    def __init__(self):
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._key: tuple | None = None

    def get(self, path: Path, device: str | None = "auto", dtype: str | None = "auto") -> Engine:
        """The engine of `path`, loaded again when the file changed (a run saved a new best.pth)."""
        stamp = (Path(path).stat().st_mtime_ns, Path(path).stat().st_size) if Path(path).is_file() else None
        key = (str(Path(path).resolve()), stamp, device, dtype)
        with self._lock:
            if self._key != key:
                self._drop()
                self._engine = load_engine(path, device, dtype)
                self._key = key
            return self._engine

    def loaded(self) -> Engine | None:
        return self._engine

    def unload(self):
        with self._lock:
            self._drop()

    def _drop(self):
        if self._engine is not None:
            device = self._engine.runtime.device
            self._engine.unload()
            self._engine, self._key = None, None
            release(device)
