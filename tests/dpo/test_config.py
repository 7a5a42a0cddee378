"""DPOConfig: its checks and its round trip through summary.json (its agreement with the CLI and the
generator's sampling defaults: tests/test_defaults.py)."""
import json

import pytest

from pipelines.dpo.config import DPOConfig, sized_settings
from pipelines.errors import DPOError
from pipelines.fields import default_of
from pipelines.generation.options import GenerationLimits, SamplingConfig


def test_sampling_defaults_are_the_generators(tmp_path):
    config = DPOConfig(model=tmp_path / "m.pth", data_dir=tmp_path, out_dir=tmp_path)
    assert SamplingConfig(config.top_k, config.top_p, config.temperature) == SamplingConfig()
    assert config.max_seconds == GenerationLimits().max_seconds
    # DPO's own patch limit (the generator has none): a piece that never ends becomes a rejected candidate at
    # 800 patches instead of holding its batch to the time limit
    assert config.max_patches == 800 and GenerationLimits().max_patches == 0
    GenerationLimits(max_patches=config.max_patches)  # a value the generator accepts


def test_sizes_per_device(tmp_path):
    """The GPU takes DPOConfig's defaults; a CPU's sizes finish in a minute or two and build a valid config."""
    gpu, cpu = sized_settings("cuda"), sized_settings("cpu")
    assert gpu["samples"] == default_of(DPOConfig, "samples") and gpu["max_patches"] == 800
    assert (cpu["samples"], cpu["max_patches"], cpu["iterations"], cpu["steps"]) == (8, 160, 1, 8)
    assert set(cpu) == set(gpu) and "model" not in cpu
    DPOConfig(model=tmp_path / "m.pth", data_dir=tmp_path, out_dir=tmp_path, **cpu)


@pytest.mark.parametrize("changes, message", [
    (dict(portion=0.6), "portion must be over 0 up to 0.5, not 0.6"),
    (dict(temperature=0.0), "temperature must be 0.05 to 5, not 0"),
    (dict(scorer="clamp2"), "the clamp2 scorer needs --clamp2-weights"),
    (dict(plagiarism_threshold=1.5), "plagiarism threshold must be over 0 up to 1, not 1.5"),
])
def test_refused_settings_say_why(tmp_path, changes, message):
    with pytest.raises(DPOError, match=message):
        DPOConfig(model=tmp_path / "m.pth", data_dir=tmp_path, out_dir=tmp_path, **changes)


def test_round_trip_through_the_summary(tmp_path):
    config = DPOConfig(model=tmp_path / "m.pth", data_dir=tmp_path / "d", out_dir=tmp_path / "o", scorer="clamp2",
                       clamp2_weights=tmp_path / "clamp2.pth", plagiarism_threshold=0.9, top_k=20, samples=8)
    assert DPOConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
