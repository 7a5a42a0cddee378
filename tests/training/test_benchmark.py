"""The training benchmark runs end to end in its CPU smoke mode."""
from __future__ import annotations

import pytest

from tests.paths import load_benchmark
from tests.training_data import single_thread_torch  # noqa: F401 (autouse)


def test_benchmark_smoke_on_cpu(tmp_path, capsys):
    bench = load_benchmark("training")
    results = bench.main(["--preset", "micro", "--device", "cpu", "--patches", "16", "--steps", "1", "--warmup", "1",
                          "--variant", "upstream", "--variant", "studio:checkpointing=both,dropout=0",
                          "--variant", "lora:lora_rank=2", "--json", str(tmp_path / "out.json")])
    assert [r["recipe"] for r in results] == ["upstream", "studio", "lora"]
    assert all(r["median_step_s"] > 0 and r["peak_gib"] is None for r in results)
    assert results[2]["trainable_parameters"] < results[1]["trainable_parameters"] / 4
    assert "ckpt=both" in results[1]["detail"] and (tmp_path / "out.json").is_file()
    assert "studio:checkpointing=both,dropout=0" in capsys.readouterr().out


def test_benchmark_rejects_unknown_levers():
    bench = load_benchmark("training")
    with pytest.raises(SystemExit, match="not a TrainConfig field"):
        bench.parse_variant("studio:warp_speed=1")
    assert bench.parse_variant("studio:compile=1,dropout=0.0") == ("studio", {"compile": True, "dropout": 0.0})
