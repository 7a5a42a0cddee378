import pytest
import torch

from pipelines.errors import NotaGenError
from pipelines.model.config import preset
from pipelines.model.runtime import bytes_per_piece, max_batch, pick_runtime, weight_bytes


def test_notagen_x_sizes_for_a_24_gb_card():
    x = preset("notagen-x")
    assert weight_bytes(x, torch.float16) == 2 * 515_738_880
    kv = 2 * 20 * 1024 * 1280 * 2  # keys and values of 20 layers, 1024 patches, fp16
    assert kv < bytes_per_piece(x, torch.float16) < 2 * kv
    free = 22 * 2**30  # what a 24 GB RTX 4090 leaves free
    n = max_batch(x, torch.float16, free, weights_loaded=False)
    assert 32 <= n < 200
    assert max_batch(x, torch.float16, free, weights_loaded=True) > n
    assert max_batch(x, torch.float16, 2**30, weights_loaded=False) == 0  # the weights alone do not fit


def test_cpu_runs_fp32_and_refuses_fp16():
    runtime = pick_runtime("cpu")
    assert runtime.dtype == torch.float32 and runtime.dtype_name == "fp32"
    with pytest.raises(NotaGenError, match="fp16"):
        pick_runtime("cpu", "fp16")
    with pytest.raises(NotaGenError, match="not one of"):
        pick_runtime("cpu", "int8")
