"""Where a model runs: device and dtype choice, memory estimates, and freeing the GPU.

Devices are tried cuda > mps > cpu. On a GPU inference runs in fp16 by default
(as upstream runs NotaGen-X), bf16 where the card supports it on request; the
CPU runs fp32.
"""
from __future__ import annotations

import gc
import importlib.util
from dataclasses import dataclass

import torch

from pipelines.errors import NotaGenError
from pipelines.model.config import NotaGenConfig
from pipelines.model.network import count_parameters

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class OutOfMemoryError(NotaGenError):
    """The model (or the asked batch) does not fit the device's free memory."""


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return next(k for k, v in DTYPES.items() if v == self.dtype)


def configure_cuda() -> None:
    """Process-wide CUDA settings every GPU path of the studio wants.

    cuDNN's attention builds an execution plan for every new shape on the host,
    about 10 ms forward and 14 ms backward per call on an H100 machine; training
    batches change shape every step, which made a demo-preset step take ~210 ms
    of host time for ~45 ms of GPU work. Flash / memory-efficient SDPA kernels
    need no plan and are as fast on the GPU.
    """
    torch.backends.cuda.enable_cudnn_sdp(False)


def triton_available() -> bool:
    """Whether Triton is installed: torch.compile's GPU code and the fused decode kernels need it
    (Linux CUDA builds of PyTorch bring it; on Windows it is a separate package)."""
    return importlib.util.find_spec("triton") is not None


def pick_device(name: str | None = None) -> torch.device:
    if name and name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise NotaGenError("device 'cuda' asked for, but this PyTorch build sees no CUDA GPU")
        if device.type == "cuda":
            configure_cuda()
            if device.index is not None:
                # Compiled steps, CUDA graphs and their streams use the current device: make it this one.
                torch.cuda.set_device(device)
        return device
    if torch.cuda.is_available():
        configure_cuda()
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_runtime(device: str | None = None, dtype: str | None = None) -> Runtime:
    dev = pick_device(device)
    if dtype in (None, "auto"):
        dtype = "fp32" if dev.type == "cpu" else "fp16"
    if dtype not in DTYPES:
        raise NotaGenError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise NotaGenError("this GPU does not support bf16; use fp16")
    if dtype == "fp16" and dev.type == "cpu":
        raise NotaGenError("fp16 on the CPU is not supported; use fp32 (or bf16)")
    return Runtime(dev, DTYPES[dtype])


def free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device; None where it cannot be known."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free


def weight_bytes(config: NotaGenConfig, dtype: torch.dtype) -> int:
    return count_parameters(config) * torch.finfo(dtype).bits // 8


def bytes_per_piece(config: NotaGenConfig, dtype: torch.dtype) -> int:
    """KV caches of both decoders plus working memory for one piece in a generation batch."""
    width = torch.finfo(dtype).bits // 8
    patch_kv = 2 * config.patch_layers * config.patch_length * config.hidden_size * width
    char_kv = 2 * config.char_layers * (config.patch_size + 1) * config.hidden_size * width
    # prefill of a whole context: ~8 hidden-sized activations per patch plus the attention mask
    prefill = 8 * config.patch_length * config.hidden_size * width + config.patch_length ** 2
    return patch_kv + char_kv + prefill


def max_batch(config: NotaGenConfig, dtype: torch.dtype, free_bytes: int, weights_loaded: bool,
              reserve: float = 0.1, limit: int = 256) -> int:
    """How many pieces fit in `free_bytes` (keeping `reserve` of it spare)."""
    usable = free_bytes * (1 - reserve) - (0 if weights_loaded else weight_bytes(config, dtype))
    return max(0, min(limit, int(usable // bytes_per_piece(config, dtype))))


def check_fits(config: NotaGenConfig, runtime: Runtime, batch: int = 1, weights_loaded: bool = False):
    free = free_memory(runtime.device)
    if free is None:
        return
    if max_batch(config, runtime.dtype, free, weights_loaded) < batch:
        need = (0 if weights_loaded else weight_bytes(config, runtime.dtype)) + batch * bytes_per_piece(
            config, runtime.dtype)
        raise OutOfMemoryError(
            f"{batch} piece(s) of this model need about {need / 2**30:.1f} GiB on {runtime.device}, "
            f"but only {free / 2**30:.1f} GiB is free; close other GPU programs, unload other models "
            f"or generate fewer pieces at once")


def release(device: torch.device):
    """Return cached GPU memory to the driver after a model is dropped."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
