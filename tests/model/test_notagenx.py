"""NotaGen-X by name and its download, without a network: a file:// source stands in for the hub."""
from __future__ import annotations

import hashlib

import pytest
import torch

from pipelines.errors import CheckpointError
from pipelines.model.checkpoint import ModelCard, save_checkpoint
from pipelines.model.config import preset
from pipelines.model.network import NotaGen
from pipelines.model.notagenx import (
    NOTAGENX_FILE,
    DownloadError,
    RemoteFile,
    download_notagenx,
    find_notagenx,
    resolve_base,
)
from tests.training_data import single_thread_torch  # noqa: F401 (autouse)


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "hub" / "weights.pth"
    torch.manual_seed(0)
    save_checkpoint(path, NotaGen(preset("micro")), ModelCard(config=preset("micro")))
    data = path.read_bytes()
    return RemoteFile(url=path.as_uri(), size=len(data), sha256=hashlib.sha256(data).hexdigest())


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_checks_and_lands_the_file(source, tmp_path):
    models = tmp_path / "models"
    seen = []
    path = download_notagenx(models, on_progress=lambda d, t: seen.append((d, t)), remote=source,
                             expected=preset("micro"))
    assert path == models / NOTAGENX_FILE and leftovers(models) == [NOTAGENX_FILE]
    assert seen[-1] == (source.size, source.size)
    assert find_notagenx([tmp_path / "empty", models]) == path
    assert resolve_base("NotaGen-X", [models]) == path


@pytest.mark.parametrize("change", [{"sha256": "0" * 64}, {"size": 12}])
def test_a_file_that_does_not_match_leaves_nothing(source, tmp_path, change):
    models = tmp_path / "models"
    bad = RemoteFile(url=source.url, size=change.get("size", source.size), sha256=change.get("sha256", source.sha256))
    with pytest.raises(DownloadError, match="SHA-256|bytes"):
        download_notagenx(models, remote=bad, expected=preset("micro"))
    assert leftovers(models) == []


def test_wrong_model_sizes_are_refused(source, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match="expected"):
        download_notagenx(models, remote=source)  # NotaGen-X sizes expected, a micro model served
    assert leftovers(models) == []


def test_cancel_leaves_nothing(source, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match="cancelled"):
        download_notagenx(models, remote=source, expected=preset("micro"), should_stop=lambda: True)
    assert leftovers(models) == []


def test_missing_notagenx_says_how_to_get_it(tmp_path):
    with pytest.raises(CheckpointError, match="download-notagenx"):
        resolve_base("notagen-x", [tmp_path])
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        resolve_base(str(tmp_path / "nope.pth"))
