"""Every studio widget that mirrors a config field shows that field's default, and its range where one is declared."""
from __future__ import annotations

import gradio as gr
import pytest

from pipelines.dataset import DatasetConfig
from pipelines.dpo.config import DPOConfig
from pipelines.fields import choices_of, default_of, range_of, sources_of
from pipelines.generation.header import HeaderControls
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.service import Backend, DatasetSpec, DPOSpec, GenerationSpec, TrainingSpec, Workspace
from pipelines.training.config import TrainConfig
from studio.app import build_app
from studio.tabs import dataset, dpo, generate, train

# (tab, widget) -> (config, field): the one table of which widget shows which setting.
WIDGETS = {
    (generate, "top_k"): (SamplingConfig, "top_k"),
    (generate, "top_p"): (SamplingConfig, "top_p"),
    (generate, "temperature"): (SamplingConfig, "temperature"),
    (generate, "max_patches"): (GenerationLimits, "max_patches"),
    (generate, "max_seconds"): (GenerationLimits, "max_seconds"),
    (generate, "bar_retries"): (GenerationLimits, "bar_retries"),
    (generate, "meter"): (HeaderControls, "meter"),
    (generate, "key"): (HeaderControls, "key"),
    (generate, "tempo"): (HeaderControls, "tempo"),
    (generate, "bars"): (HeaderControls, "bars"),
    (train, "epochs"): (TrainConfig, "epochs"),
    (train, "max_steps"): (TrainConfig, "max_steps"),
    (train, "lr"): (TrainConfig, "lr"),
    (train, "batch_size"): (TrainConfig, "batch_size"),
    (train, "grad_accum"): (TrainConfig, "grad_accum"),
    (train, "warmup_steps"): (TrainConfig, "warmup_steps"),
    (train, "lora_rank"): (TrainConfig, "lora_rank"),
    (train, "patience"): (TrainConfig, "patience"),
    (dpo, "scorer"): (DPOConfig, "scorer"),
    (dpo, "iterations"): (DPOConfig, "iterations"),
    (dpo, "samples"): (DPOConfig, "samples"),
    (dpo, "steps"): (DPOConfig, "steps"),
    (dpo, "max_patches"): (DPOConfig, "max_patches"),
    (dpo, "generation_batch"): (DPOConfig, "generation_batch"),
    (dpo, "min_pairs"): (DPOConfig, "min_pairs"),
    (dpo, "score_final"): (DPOConfig, "score_final"),
    (dpo, "keep_best"): (DPOConfig, "keep_best"),
    (dataset, "eval_split"): (DatasetConfig, "eval_split"),
    (dataset, "max_unaligned_share"): (DatasetConfig, "max_unaligned_share"),
}
SPECS = {generate: GenerationSpec, train: TrainingSpec, dpo: DPOSpec, dataset: DatasetSpec}
# Boxes whose 0 means "the model's choice" (the field's None): they start at 0, below the field's range.
ZERO_IS_UNSET = {(generate, "tempo"), (generate, "bars")}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    backend = Backend(Workspace.open(tmp_path_factory.mktemp("defaults") / "workspace"))
    yield build_app(backend)
    backend.close()


def test_the_table_names_every_widget_that_mirrors_a_config_field(app):
    shown = {(tab, name) for tab, spec in SPECS.items() for name in sources_of(spec) if name in tab.ui}
    assert shown == set(WIDGETS)
    for (tab, name), source in WIDGETS.items():
        assert sources_of(SPECS[tab])[name] == source, (tab.TITLE, name)


@pytest.mark.parametrize("where", list(WIDGETS), ids=lambda w: f"{w[0].TITLE}-{w[1]}")
def test_a_widget_shows_its_fields_default_and_range(app, where):
    (tab, name), (config, field) = where, WIDGETS[where]
    widget = tab.ui[name]
    default = default_of(config, field)
    assert widget.value == (0 if default is None else default)  # a number box shows None ("the config's") as 0
    low, high = range_of(config, field)
    if isinstance(widget, gr.Slider):
        step = widget.step if config.__dataclass_fields__[field].metadata.get("low_open") else 0
        assert (widget.minimum, widget.maximum) == ((low + step, high) if low is not None else (0.0, widget.maximum))
    elif isinstance(widget, gr.Number):
        assert (widget.minimum, widget.maximum) == ((0, high) if where in ZERO_IS_UNSET else (low, high))
    if choices_of(config, field):
        assert [value for _, value in widget.choices] == list(choices_of(config, field))


def test_the_upload_cap_has_one_default_that_fits_a_score():
    from pipelines.cli import build_parser
    from pipelines.fields import MAX_SCORE_MB
    from studio.app import StudioOptions

    args = build_parser(("studio.commands",)).parse_args(["studio"])
    assert args.max_upload_mb == StudioOptions(workspace=".").max_upload_mb == MAX_SCORE_MB == 20
