"""The CLI and the config dataclasses agree: every flag that sets a config field has the field's
default and choices, and the command line accepts and refuses the same values as the config,
with the config's message. (The studio's widgets against the configs: tests/studio.)"""
from __future__ import annotations

import argparse
import dataclasses
import functools

import pytest

from pipelines.cli import build_parser, main
from pipelines.commands import dataset, dpo, generate, train
from pipelines.dataset.config import DatasetConfig
from pipelines.dpo.config import DPOConfig
from pipelines.errors import DatasetError, DPOError, SettingError, TrainingError
from pipelines.fields import choices_of, default_of, help_of, label_of, problem_with, range_of, type_of
from pipelines.generation.header import HeaderControls
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.training.config import TrainConfig

REQUIRED = {
    "train": ["train", "--data", "d", "--out", "o", "--preset", "micro"],
    "dpo": ["dpo", "--model", "m.pth", "--data", "d", "--out", "o"],
    "generate": ["generate", "--period", "Baroque", "--composer", "Bach, Johann Sebastian",
                 "--instrumentation", "Keyboard", "--out", "o"],
    "dataset build": ["dataset", "build", "scores", "--out", "o"],
    "dataset corpus": ["dataset", "corpus", "--out", "o"],
}


def build_train(args):
    return [train.config_from_args(args)]


def build_dpo(args):
    return [dpo.config_from_args(args)]


def build_dataset(args):
    return [dataset.config_from_args(args)]


def build_generate(args):
    return list(generate.options_from_args(args))


# command -> (the configs its flags set, the function that turns parsed flags into those configs, their error)
COMMANDS = {
    "train": ((TrainConfig,), build_train, TrainingError),
    "dpo": ((DPOConfig,), build_dpo, DPOError),
    "generate": ((SamplingConfig, GenerationLimits, HeaderControls), build_generate, SettingError),
    "dataset build": ((DatasetConfig,), build_dataset, DatasetError),
    "dataset corpus": ((DatasetConfig,), build_dataset, DatasetError),
}
# The fields each command must offer as flags (more may come; none may go).
MIRRORED = {
    "train": set(train.TRAIN_OPTIONS) | {"epochs", "lr", "schedule", "lora_rank", "freeze_patch_decoder", "dropout",
                                         "key_augment", "precision", "checkpointing", "optimizer", "resume"},
    "dpo": set(dpo.DPO_OPTIONS) | {"samples", "steps", "scorer", "lam", "top_k", "top_p", "temperature",
                                   "max_patches", "max_seconds", "score_final"},
    "generate": {"top_k", "top_p", "temperature", "max_patches", "max_chars", "max_seconds", "bar_retries",
                 "meter", "key", "tempo", "bars"},
    "dataset build": {"eval_split", "seed", "workers", "time_limit_s", "use_cache", "max_unaligned_share"},
    "dataset corpus": {"eval_split", "seed", "workers", "time_limit_s", "use_cache", "max_unaligned_share"},
}


@functools.cache
def parser() -> argparse.ArgumentParser:
    return build_parser()


def subparser(command: str) -> argparse.ArgumentParser:
    parser_ = parser()
    for word in command.split():
        action = next(a for a in parser_._actions if isinstance(a, argparse._SubParsersAction))
        parser_ = action.choices[word]
    return parser_


def config_flags(command: str) -> dict[str, tuple[type, argparse.Action]]:
    """field name -> (its config class, the optional flag that sets it), for every flag whose dest is a setting
    of the command's configs (a field declared with `option`: paths, labels and the start model are not)."""
    classes = COMMANDS[command][0]
    found = {}
    for action in subparser(command)._actions:
        for cls in classes:
            if action.dest in {f.name for f in dataclasses.fields(cls) if f.metadata} and action.option_strings:
                found[action.dest] = (cls, action)
    return found


def flag_of(action: argparse.Action) -> str:
    return action.option_strings[0]


def parse(command: str, *extra: str) -> argparse.Namespace:
    return parser().parse_args(REQUIRED[command] + list(extra))


def direct(cls, name, value, **more):
    """The config made without the CLI, with `name` set to `value` (and what it needs besides)."""
    needs = {TrainConfig: dict(data_dir="d", out_dir="o", preset="micro"),
             DPOConfig: dict(model="m.pth", data_dir="d", out_dir="o")}.get(cls, {})
    return cls(**needs, **more, **{name: value})


def outside(cls, name) -> list:
    """Values just outside the field's range, on each bounded side."""
    low, high = range_of(cls, name)
    meta = next(f for f in dataclasses.fields(cls) if f.name == name).metadata
    whole = type_of(cls, name) is int
    values = []
    if low is not None:
        values.append(low if meta["low_open"] else (low - 1 if whole else low - 0.001))
    if high is not None:
        values.append(high if meta["high_open"] else (high + 1 if whole else high + 0.001))
    return values


def ranged_cases():
    for command in COMMANDS:
        for name, (cls, action) in config_flags(command).items():
            for value in outside(cls, name):
                yield pytest.param(command, cls, name, value, id=f"{command}-{name}-{value:g}")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_flags_default_to_the_config(command):
    flags = config_flags(command)
    assert set(flags) >= MIRRORED[command], f"{command} lost the flags of {MIRRORED[command] - set(flags)}"
    args = parse(command)
    for name, (cls, action) in flags.items():
        assert getattr(args, name) == default_of(cls, name), f"{flag_of(action)} defaults to {action.default!r}"
        choices = choices_of(cls, name)
        assert (list(action.choices) if action.choices else None) == (list(choices) if choices else None), name
        if help_of(cls, name):
            assert help_of(cls, name).replace("%", "%%") in action.help, name
    # With no flags given, the command's configs are the configs' defaults.
    configs = COMMANDS[command][1](args)
    for config in configs:
        for name in flags:
            if hasattr(config, name) and name != "lr":  # TrainConfig fills lr in from base/preset
                assert getattr(config, name) == default_of(type(config), name), name


@pytest.mark.parametrize("command, cls, name, value", list(ranged_cases()))
def test_cli_and_config_refuse_the_same_values(command, cls, name, value):
    error = COMMANDS[command][2]
    assert problem_with(cls, name, value)
    with pytest.raises(error) as direct_refusal:
        direct(cls, name, value)
    _, action = config_flags(command)[name]
    args = parse(command, flag_of(action), str(value))
    with pytest.raises(error) as cli_refusal:
        COMMANDS[command][1](args)
    assert str(cli_refusal.value) == str(direct_refusal.value)
    assert label_of(cls, name) in str(direct_refusal.value)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_cli_and_config_accept_the_same_values(command):
    """Every choice, and each end of a range that is not excluded, passes both the parser and the config."""
    # The clamp2 scorer needs its weights (a check across fields): give them on both paths.
    weights = ["--clamp2-weights", "w.pth"] if command == "dpo" else []
    more = {"clamp2_weights": "w.pth"} if command == "dpo" else {}
    for name, (cls, action) in config_flags(command).items():
        meta = next(f for f in dataclasses.fields(cls) if f.name == name).metadata
        low, high = range_of(cls, name)
        edges = [v for v, open_ in ((low, meta["low_open"]), (high, meta["high_open"])) if v is not None and not open_]
        for value in list(choices_of(cls, name) or ()) + edges:
            args = parse(command, *weights, flag_of(action), str(value))
            assert getattr(args, name) == value
            COMMANDS[command][1](args)
            direct(cls, name, value, **(more if cls is DPOConfig else {}))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_choices_outside_are_refused_by_both(command, capsys):
    for name, (cls, action) in config_flags(command).items():
        if not choices_of(cls, name):
            continue
        with pytest.raises(SystemExit):
            parse(command, flag_of(action), "nonsense")
        assert "invalid choice" in capsys.readouterr().err
        with pytest.raises(COMMANDS[command][2], match="must be one of"):
            direct(cls, name, "nonsense")


@pytest.mark.parametrize("argv, message", [
    (REQUIRED["train"] + ["--epochs", "0"], "notagen train: epochs must be at least 1, not 0"),
    (REQUIRED["dpo"] + ["--top-p", "0"], "notagen dpo: top-p must be over 0 up to 1, not 0"),
    (REQUIRED["generate"] + ["--bar-retries", "-1"], "notagen generate: bar redraws must be 0 to 100, not -1"),
    (REQUIRED["dataset build"] + ["--max-unaligned-share", "1.5"],
     "notagen dataset: largest unaligned share 1.5 must be between 0 and 1"),
])
def test_the_cli_shows_the_configs_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # nothing is written: the config refuses before any work
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == message
    assert not any(tmp_path.iterdir())


def test_dpo_samples_the_way_generation_does():
    for name in ("top_k", "top_p", "temperature"):
        assert default_of(DPOConfig, name) == default_of(SamplingConfig, name)
        assert range_of(DPOConfig, name) == range_of(SamplingConfig, name)
    for name in ("max_patches", "max_seconds"):
        assert range_of(DPOConfig, name) == range_of(GenerationLimits, name)
    assert default_of(DPOConfig, "max_seconds") == default_of(GenerationLimits, "max_seconds")
    # DPO's patch limit is its own on purpose (docs/dpo.md): a piece that never ends is rejected at the limit
    assert default_of(DPOConfig, "max_patches") == 800 and default_of(GenerationLimits, "max_patches") == 0
