import json

import pytest
import torch

from pipelines.errors import CheckpointError
from pipelines.model.checkpoint import (
    ModelCard,
    infer_config,
    load_checkpoint,
    model_from_state_dict,
    read_card,
    save_checkpoint,
)
from pipelines.model.config import PRESETS, preset
from pipelines.model.network import NotaGen, count_parameters


@pytest.fixture(scope="module")
def tiny(fixtures):
    return load_checkpoint(fixtures / "tiny_model.pth").model


@pytest.fixture(scope="module")
def outputs(fixtures):
    return torch.load(fixtures / "tiny_model_outputs.pt", weights_only=True)


def test_tiny_config_inferred_from_shapes(tiny, outputs):
    c = tiny.config
    expected = outputs["config"]
    assert (c.patch_size, c.patch_length, c.patch_layers, c.char_layers, c.hidden_size) == (
        expected["patch_size"], expected["patch_length"], expected["patch_layers"],
        expected["char_layers"], expected["hidden_size"])
    assert c.num_heads == 2


@torch.no_grad()
def test_patch_hidden_states_equal_upstream(tiny, outputs):
    hidden = tiny.patch_level_decoder(outputs["patches"].reshape(1, -1, 16))
    torch.testing.assert_close(hidden, outputs["patch_hidden"], atol=1e-5, rtol=0)


@torch.no_grad()
def test_training_loss_equals_upstream(tiny, outputs):
    loss = tiny(outputs["patches"].reshape(1, -1, 16), outputs["masks"])
    assert abs(loss.item() - outputs["loss"].item()) < 1e-5


@torch.no_grad()
@pytest.mark.parametrize("key,chars", [("next_char_probs_after_bos", ""),
                                       ("next_char_probs_after_bos_[V:", "[V:")])
def test_next_char_probabilities_equal_upstream(tiny, outputs, key, chars):
    flat = outputs["gen_input"][0]
    full = flat[: len(flat) // 16 * 16].reshape(1, -1, 16)
    state = tiny.patch_level_decoder(full)[:, -1]
    ids = torch.tensor([[ord(c) for c in chars]], dtype=torch.long)
    probs = torch.softmax(tiny.char_level_decoder(state, ids)[:, -1], dim=-1)[0]
    torch.testing.assert_close(probs, outputs[key], atol=1e-5, rtol=0)


def test_batched_loss_equals_per_piece_losses(tiny, outputs):
    patches = outputs["patches"].reshape(1, -1, 16)
    short = patches[:, :30]
    batch = torch.zeros(2, 60, 16, dtype=torch.long)
    batch[0], batch[1, :30] = patches[0], short[0]
    masks = torch.zeros(2, 60, dtype=torch.long)
    masks[0], masks[1, :30] = 1, 1
    with torch.no_grad():
        sums, chars = tiny.char_losses(batch, masks)
        a = tiny(patches, torch.ones(1, 60, dtype=torch.long))
        b = tiny(short, torch.ones(1, 30, dtype=torch.long))
    torch.testing.assert_close(sums[0] / chars[0], a, atol=1e-5, rtol=0)
    torch.testing.assert_close(sums[1] / chars[1], b, atol=1e-5, rtol=0)


def test_notagen_x_shapes_and_parameter_count(fixtures):
    shapes = json.loads((fixtures / "notagenx_state_dict_shapes.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        model = NotaGen(preset("notagen-x"))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes
    assert model.num_parameters() == 515_738_880 == count_parameters(preset("notagen-x"))


def _broadcast_state_dict(shapes: dict) -> dict:
    # Zero-stride tensors: the full NotaGen-X shapes in a file of a few kilobytes.
    return {k: torch.zeros(1).expand(v) for k, v in shapes.items()}


def test_notagen_x_shaped_file_loads_strictly_and_drops_legacy_buffers(fixtures, tmp_path):
    shapes = json.loads((fixtures / "notagenx_state_dict_shapes.json").read_text(encoding="utf-8"))
    state = _broadcast_state_dict(shapes)
    state["patch_level_decoder.base.h.0.attn.bias"] = torch.ones(1, 1, 1024, 1024).bool()[..., :1, :1]
    state["char_level_decoder.base.transformer.h.5.attn.masked_bias"] = torch.tensor(-1e4)
    path = tmp_path / "notagenx.pth"
    torch.save({"model": state}, path)
    ckpt = load_checkpoint(path, device="meta")
    assert ckpt.upstream
    assert ckpt.model.config == preset("notagen-x")
    assert ckpt.model.num_parameters() == 515_738_880


def test_unknown_keys_are_refused(fixtures, tmp_path):
    state = torch.load(fixtures / "tiny_model.pth", weights_only=True)["model"]
    state["patch_level_decoder.base.h.0.attn.extra"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="does not fit"):
        model_from_state_dict(state)


@pytest.mark.parametrize("name", ["notagen-x", "notagen-small", "notagen-medium", "tiny"])
def test_presets_round_trip_through_shapes(name):
    with torch.device("meta"):
        model = NotaGen(PRESETS[name])
    assert infer_config(model.state_dict()) == PRESETS[name]
    assert PRESETS[name].num_heads == PRESETS[name].hidden_size // 64


def test_studio_checkpoint_is_self_describing_and_upstream_readable(tiny, tmp_path):
    card = ModelCard(config=tiny.config, prompts=["Baroque_Bach, Johann Sebastian_Choral"], base_model="tiny")
    path = tmp_path / "model.pth"
    save_checkpoint(path, tiny, card, training={"epoch": 3})
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"model", "card"}  # upstream scripts read raw["model"]
    loaded = load_checkpoint(path)
    assert not loaded.upstream and loaded.card.prompts == card.prompts and loaded.training == {"epoch": 3}
    for (k, a), b in zip(tiny.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded.model.char_level_decoder.base.lm_head.weight is \
        loaded.model.char_level_decoder.base.transformer.wte.weight


@pytest.mark.parametrize("content,match", [(b"not a checkpoint", "cannot be read"), (None, "no such")])
def test_bad_checkpoint_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "broken.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path)
    assert "broken.pth" in str(e.value)


def test_read_card_without_building_the_model(fixtures, tiny, tmp_path):
    upstream = read_card(fixtures / "tiny_model.pth")
    assert upstream.config == tiny.config and upstream.prompts == [] and upstream.base_model == "tiny_model.pth"
    studio = tmp_path / "studio.pth"
    save_checkpoint(studio, tiny, ModelCard(config=tiny.config, prompts=["Baroque_Bach, Johann Sebastian_Choral"]))
    assert read_card(studio).prompts == ["Baroque_Bach, Johann Sebastian_Choral"]
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pth: not a NotaGen checkpoint"):
        read_card(foreign)


def test_a_model_built_on_the_meta_device_draws_no_weights(monkeypatch):
    """Loading builds the model on the meta device; drawing there costs a fresh process seconds (see draw_normal)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a weight was drawn on the meta device")

    monkeypatch.setattr(torch.nn.init, "normal_", refuse)
    with torch.device("meta"):
        model = NotaGen(preset("tiny"))
    assert all(p.is_meta for p in model.parameters())
    with pytest.raises(AssertionError, match="drawn"):
        NotaGen(preset("tiny"))  # on the CPU the weights are drawn
