"""How long a DPO run may take, before it starts: an upper bound from the device's recorded or measured speeds."""
import pytest

from pipelines.dpo.config import sized_settings
from pipelines.dpo.estimate import (
    CHARS_PER_PATCH,
    DEMO_PARAMETERS,
    NOTAGEN_X_PARAMETERS,
    describe_seconds,
    estimate_dpo_time,
    gpu_chars_per_second,
    measured_rates,
    recorded_rates,
)


def test_the_cpu_sizes_take_a_minute_or_two_with_the_demo_model():
    settings = sized_settings("cpu")
    estimate = estimate_dpo_time(settings, DEMO_PARAMETERS, 1024, "cpu")
    pieces = settings["samples"] * settings["max_patches"] * CHARS_PER_PATCH / 300.0  # one stage, one batch
    assert estimate.generation_seconds == pytest.approx(pieces)
    assert estimate.optimise_seconds == pytest.approx(settings["steps"] * 3.7 / 128 * settings["max_patches"])
    assert 45 <= estimate.seconds <= 120
    assert estimate.text.startswith("at most about 90 s on this CPU: 1 x 8 pieces of up to 160 patches")
    judged_only = estimate_dpo_time({**settings, "scorer": "none"}, DEMO_PARAMETERS, 1024, "cpu")
    assert judged_only.generation_seconds == 0 and judged_only.optimise_seconds == estimate.optimise_seconds
    assert "on this CPU: no pieces written, up to 8 steps per iteration" in judged_only.text


def test_the_gpu_defaults_and_what_the_bound_counts():
    settings = sized_settings("cuda")
    x = estimate_dpo_time(settings, NOTAGEN_X_PARAMETERS, 1024, "cuda")
    # two sample sets (the iteration's and the final model's) of 4 batches of 64 pieces at ~48,000 chars/s
    assert x.generation_seconds == pytest.approx(2 * 4 * 64 * 800 * CHARS_PER_PATCH / 48_165.0)
    assert x.optimise_seconds == pytest.approx(500 * 0.14 * 800 / 1024)
    assert "this GPU: 2 x 256 pieces of up to 800 patches" in x.text
    small = estimate_dpo_time(settings, DEMO_PARAMETERS, 1024, "cuda")
    assert small.generation_seconds == x.generation_seconds  # a small model is not faster on a GPU
    assert small.optimise_seconds == pytest.approx(500 * 0.03)  # nor its step under the floor
    unlimited = estimate_dpo_time({**settings, "max_patches": 0, "score_final": False}, DEMO_PARAMETERS, 1024,
                                  "cuda")
    assert unlimited.generation_seconds == 4 * 600.0  # a piece that never ends holds its batch to the time limit
    assert "with no patch limit" in unlimited.text
    assert gpu_chars_per_second(1) == 5_106.0 and gpu_chars_per_second(64) == 48_165.0
    assert 8_919.0 < gpu_chars_per_second(4) < 17_063.0


def test_a_run_s_measured_speeds_replace_the_recorded_ones():
    summary = {"config": {"pairs_per_step": 1}, "rates": {"device": "cpu", "chars": 12_000,
                                                          "generation_seconds": 20.0, "seconds_per_step": 2.0,
                                                          "step_patches": 100.0, "parameters": DEMO_PARAMETERS}}
    rates = measured_rates(summary)
    assert rates.chars_per_second == 600.0 and rates.seconds_per_step_patch == pytest.approx(0.02)
    estimate = estimate_dpo_time(sized_settings("cpu"), DEMO_PARAMETERS, 1024, "cpu", rates)
    assert estimate.text.endswith("(measured by the last run here)")
    assert measured_rates({"rates": {"device": "cpu", "chars": 0}}) is None  # a run that generated nothing
    assert recorded_rates("mps", 8).source == "recorded on a 2-core CPU"


def test_durations_read_as_a_musician_says_them():
    assert [describe_seconds(s) for s in (3, 44, 89, 95, 3000, 7200)] == ["10 s", "40 s", "90 s", "2 min",
                                                                        "50 min", "2.0 h"]
