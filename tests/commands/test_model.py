import json

import torch

from launch import cli


def test_eval_prints_upstream_loss(fixtures, tmp_path, capsys):
    # The fixture's training input is this chorale cut to the tiny model's 64 patches;
    # `notagen eval` cuts with a fixed seed and reproduces upstream's loss for it.
    case = json.loads((fixtures / "tokenizer.json").read_text(encoding="utf-8"))[0]
    abc = tmp_path / "chorale.abc"
    abc.write_text(case["abc"], encoding="utf-8")
    code = cli(["eval", "--model", str(fixtures / "tiny_model.pth"), "--abc", str(abc), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    expected = torch.load(fixtures / "tiny_model_outputs.pt", weights_only=True)
    assert abs(result["loss"] - expected["loss"].item()) < 1e-5
    assert result["chars"] == int((expected["patches"][0, 1:] != 0).sum())


def test_inspect_reports_config_and_parameters(fixtures, capsys):
    assert cli(["inspect", "--model", str(fixtures / "tiny_model.pth"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 1_082_752 and info["config"]["hidden_size"] == 128
    assert info["format"] == "upstream" and info["prompts"] == []


def test_errors_are_reported_not_raised(tmp_path, capsys):
    code = cli(["eval", "--model", str(tmp_path / "missing.pth"), "--abc", str(tmp_path / "x.abc")])
    assert code == 2
    assert "missing.pth: no such checkpoint file" in capsys.readouterr().err
