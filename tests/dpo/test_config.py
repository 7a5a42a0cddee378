"""DPOConfig: its checks and its round trip through summary.json (its agreement with the CLI and the
generator's sampling defaults: tests/test_defaults.py)."""
import json

import pytest

from pipelines.dpo.config import DPOConfig
from pipelines.errors import DPOError
from pipelines.generation.options import GenerationLimits, SamplingConfig


def test_sampling_defaults_are_the_generators(tmp_path):
    config = DPOConfig(model=tmp_path / "m.pth", data_dir=tmp_path, out_dir=tmp_path)
    assert SamplingConfig(config.top_k, config.top_p, config.temperature) == SamplingConfig()
    assert (config.max_patches, config.max_seconds) == (GenerationLimits().max_patches, GenerationLimits().max_seconds)


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
