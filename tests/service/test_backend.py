"""The composition root and the specs of the dataset and DPO services: built together, closed together,
defaults from their configs, the configs' refusals with their words."""
from __future__ import annotations

import pytest

from pipelines.dataset import DatasetConfig
from pipelines.dpo.config import DPOConfig
from pipelines.errors import DatasetError, DPOError, SettingError, WorkspaceError
from pipelines.fields import default_of, sources_of
from pipelines.service import (
    Backend,
    DatasetService,
    DatasetSpec,
    DPOService,
    DPOSpec,
    GenerationService,
    ModelService,
    TrainingService,
)
from pipelines.service.jobs import JobQueue


def test_the_backend_builds_each_service_once_and_registers_their_jobs(tmp_path):
    backend = Backend.open(tmp_path / "workspace")
    try:
        kinds = {"models": ModelService, "generation": GenerationService, "datasets": DatasetService,
                 "training": TrainingService, "dpo": DPOService}
        for name, kind in kinds.items():
            assert isinstance(getattr(backend, name), kind), name
        assert isinstance(backend.jobs, JobQueue)
        assert sorted(backend.jobs.runners) == ["dataset", "dpo", "generate", "train"]
        assert {r: backend.jobs.runners[r].lane for r in backend.jobs.runners} == {
            "dataset": "cpu", "dpo": "gpu", "generate": "gpu", "train": "gpu"}
        assert backend.models.list()[0].ref == "demo"  # the built-in model is listed first
    finally:
        backend.close()
    with pytest.raises(Exception, match="shutting down"):
        backend.jobs.submit("dataset", {"name": "x"})


@pytest.mark.parametrize("spec, config", [(DPOSpec, DPOConfig), (DatasetSpec, DatasetConfig)])
def test_a_spec_takes_its_configs_defaults(spec, config):
    assert sources_of(spec)
    for name, (source, field) in sources_of(spec).items():
        assert source is config and field == name
        assert default_of(spec, name) == default_of(config, name), name


def test_dataset_and_dpo_specs_refuse_with_the_configs_words():
    with pytest.raises(SettingError) as refused_by_spec:
        DatasetSpec(name="d", eval_split=1.0)
    with pytest.raises(DatasetError) as refused_by_config:
        DatasetConfig(eval_split=1.0)
    assert str(refused_by_spec.value) == str(refused_by_config.value) == "eval split must be at least 0 and below 1, not 1"
    with pytest.raises(DatasetError, match="the corpus limit must be at least 1"):
        DatasetSpec(name="d", corpus_limit=0)
    with pytest.raises(WorkspaceError, match="'..' is not allowed"):
        DatasetSpec(name="..")
    with pytest.raises(SettingError, match="samples must be a whole number"):
        DPOSpec(model="demo", dataset="d", run="r", samples="1.5")
    assert DPOSpec(model="demo", dataset="d", run="r", scorer="builtin", clamp2="models/x.pth").clamp2 == ""
    with pytest.raises(WorkspaceError):
        DPOSpec(model="demo", dataset="d", run="../r")


def test_dpo_settings_reach_the_config_unchanged(tmp_path):
    backend = Backend.open(tmp_path / "workspace")
    try:
        (backend.workspace.area("datasets") / "d").mkdir()
        (backend.workspace.area("datasets") / "d" / "manifest.json").write_text('{"pieces": {}}', encoding="utf-8")
        config = backend.dpo.config(DPOSpec(model="demo", dataset="d", run="r", samples=7, beta=0.2))
        assert (config.samples, config.beta, config.steps) == (7, 0.2, default_of(DPOConfig, "steps"))
        with pytest.raises(DPOError, match="without a scorer, DPO learns only from your judgements"):
            backend.dpo.submit(DPOSpec(model="demo", dataset="d", run="r", scorer="none"))
    finally:
        backend.close()
