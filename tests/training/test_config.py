"""TrainConfig: its defaults and ranges (the CLI's agreement with them: tests/test_defaults.py), the learning
rate it picks, the checks across fields, and the round trip through a checkpoint's dict."""
import json

import pytest

from pipelines.errors import TrainingError
from pipelines.training.config import FINETUNE_LR, SCRATCH_LR, TrainConfig


def test_learning_rate_follows_where_the_weights_start(tmp_path):
    assert TrainConfig(data_dir=tmp_path, out_dir=tmp_path, base="x.pth").lr == FINETUNE_LR
    assert TrainConfig(data_dir=tmp_path, out_dir=tmp_path, preset="tiny").lr == SCRATCH_LR
    assert TrainConfig(data_dir=tmp_path, out_dir=tmp_path, preset="tiny", lr=1e-3).lr == 1e-3


@pytest.mark.parametrize("changes, message", [
    (dict(epochs=0), "epochs must be at least 1, not 0"),
    (dict(grad_accum=0), "gradient accumulation must be at least 1, not 0"),
    (dict(lr=0.0), "learning rate must be over 0, not 0"),
    (dict(min_lr_ratio=1.5), "min lr ratio must be 0 to 1, not 1.5"),
    (dict(dropout=1.0), "dropout must be at least 0 and below 1, not 1"),
    (dict(schedule="step"), "schedule must be one of cosine, linear, constant, not 'step'"),
    (dict(lora_targets=("c_attn", "wte")), "LoRA targets must be among"),
])
def test_refused_settings_say_why(tmp_path, changes, message):
    with pytest.raises(TrainingError, match=message.replace("(", r"\(")):
        TrainConfig(data_dir=tmp_path, out_dir=tmp_path, base="x.pth", **changes)


def test_round_trip_through_a_checkpoints_dict(tmp_path):
    config = TrainConfig(data_dir=tmp_path / "data", out_dir=tmp_path / "run", base="notagen-x",
                         models_dirs=[tmp_path / "models"], lora_rank=8, dropout=0.0, freeze_patch_decoder=True)
    data = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.from_dict(data) == config
    assert TrainConfig.from_dict({**data, "an_old_field": 1}) == config  # unknown keys of older runs are ignored
