"""The CLaMP 2 loader against the official file layout, on randomly initialised tiny sizes.

The expected names and shapes are written out from the official code's module
structure (sanderwood/clamp2 `code/utils.py`: CLaMP2Model holds `text_model` (XLM-R),
`text_proj`, `music_model` = M3PatchEncoder(`patch_embedding` Linear(64*128, H), `base`
= transformers BertModel with vocab_size 1) and `music_proj`; M3Model holds `encoder`
(the same M3PatchEncoder) and `decoder` (GPT2LMHeadModel under `base`)), not from our module.
"""
import pytest
import torch

from pipelines.dpo.clamp2 import Clamp2Scorer, load_clamp2, m3_patches, segments
from pipelines.errors import DPOError

P, LENGTH, LAYERS, H, D = 64, 16, 2, 64, 32  # official: 64, 512, 12, 768, 768


def bert_layout(prefix: str) -> dict[str, tuple]:
    shapes = {"embeddings.word_embeddings.weight": (1, H), "embeddings.position_embeddings.weight": (LENGTH, H),
              "embeddings.token_type_embeddings.weight": (2, H), "embeddings.LayerNorm.weight": (H,),
              "embeddings.LayerNorm.bias": (H,), "pooler.dense.weight": (H, H), "pooler.dense.bias": (H,)}
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            shapes[layer + f"attention.self.{name}.weight"] = (H, H)
            shapes[layer + f"attention.self.{name}.bias"] = (H,)
        shapes.update({layer + "attention.output.dense.weight": (H, H), layer + "attention.output.dense.bias": (H,),
                       layer + "attention.output.LayerNorm.weight": (H,), layer + "attention.output.LayerNorm.bias": (H,),
                       layer + "intermediate.dense.weight": (4 * H, H), layer + "intermediate.dense.bias": (4 * H,),
                       layer + "output.dense.weight": (H, 4 * H), layer + "output.dense.bias": (H,),
                       layer + "output.LayerNorm.weight": (H,), layer + "output.LayerNorm.bias": (H,)})
    return {prefix + k: v for k, v in shapes.items()}


def encoder_layout(prefix: str) -> dict[str, tuple]:
    return {prefix + "patch_embedding.weight": (H, P * 128), prefix + "patch_embedding.bias": (H,),
            **bert_layout(prefix + "base.")}


def random_state(layout: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in layout.items()}


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("clamp2")
    clamp2 = random_state({**encoder_layout("music_model."), "music_proj.weight": (D, H), "music_proj.bias": (D,),
                           "text_proj.weight": (D, 48), "text_proj.bias": (D,),
                           "text_model.embeddings.word_embeddings.weight": (100, 48)}, seed=1)
    clamp2["music_model.base.embeddings.position_ids"] = torch.arange(LENGTH)[None]  # older transformers saved it
    torch.save({"model": clamp2, "epoch": 7, "min_eval_loss": 1.5}, root / "clamp2.pth")
    m3 = random_state({**encoder_layout("encoder."), "decoder.base.transformer.wte.weight": (128, H),
                       "decoder.base.lm_head.weight": (128, H)}, seed=2)
    torch.save({"model": m3, "epoch": 3, "min_eval_loss": 0.5}, root / "m3.pth")
    return root, clamp2, m3


def test_loader_matches_the_official_names_and_shapes(official_files):
    root, clamp2, _ = official_files
    model = load_clamp2(root / "clamp2.pth")
    ours = model.state_dict()
    expected = {k: v for k, v in clamp2.items() if k.startswith(("music_model.", "music_proj.")) and
                not k.endswith("position_ids")}
    assert set(ours) == set(expected)
    for k, v in expected.items():
        assert ours[k].shape == v.shape and torch.equal(ours[k], v), k
    assert (model.config.patch_size, model.config.patch_length, model.config.layers,
            model.config.hidden_size, model.config.projection) == (P, LENGTH, LAYERS, H, D)


def test_m3_then_clamp2_and_m3_alone(official_files):
    root, clamp2, m3 = official_files
    both = load_clamp2(root / "clamp2.pth", root / "m3.pth")  # CLaMP 2 overwrites M3, as upstream
    assert torch.equal(both.state_dict()["music_model.patch_embedding.weight"], clamp2["music_model.patch_embedding.weight"])
    alone = load_clamp2(m3_path=root / "m3.pth")
    assert alone.music_proj is None
    assert torch.equal(alone.state_dict()["music_model.base.pooler.dense.weight"], m3["encoder.base.pooler.dense.weight"])
    with pytest.raises(DPOError, match="M3 weights"):
        load_clamp2(root / "m3.pth")  # the M3 file given as the CLaMP 2 one
    bad = dict(clamp2)
    bad["music_proj.weight"] = torch.zeros(D, H + 1)
    torch.save({"model": bad}, root / "bad.pth")
    with pytest.raises(DPOError, match="bad.pth"):
        load_clamp2(root / "bad.pth")


def test_m3_patches_follow_clamp2():
    text = "L:1/8\n%%score 1 2\n[V:1]ab|c2|\n"
    patches = m3_patches(text, patch_size=P)
    chars = ["".join(chr(i) for i in p if i > 3) for p in patches]
    assert chars == ["", "L:1/8\n", "%%score 1 2\n", "[V:1]ab|", "c2|\n", ""]
    assert patches[0] == [1] * P and patches[-1] == [1] + [2] * (P - 1)
    assert patches[3][:3] == [1, ord("["), ord("V")] and patches[3][9] == 2 and patches[3][10] == 0
    windows, weights = segments(list(range(37)), 16)
    assert [len(w) for w in windows] == [16, 16, 16] and windows[-1][0] == 21 and weights == [16, 16, 5]


def test_scorer_features(official_files):
    root, _, _ = official_files
    scorer = Clamp2Scorer.from_files(root / "clamp2.pth", batch_size=2)
    short = "%Baroque\nX:1\nL:1/8\nK:C\nV:1\n[V:1]CDEF|GABc|\n"
    long = "L:1/8\nK:C\nV:1\n" + "".join(f"[V:1]C{i % 7}D|E2|\n" for i in range(20))  # > 16 patches: windows
    feats = scorer.features([short, long, short])
    assert feats.shape == (3, D) and torch.allclose(feats[0], feats[2])
    assert not torch.allclose(feats[0], feats[1])
    # the `%Baroque` and `X:` lines are not read
    assert torch.allclose(scorer.features(["L:1/8\nK:C\nV:1\n[V:1]CDEF|GABc|\n"])[0], feats[0], atol=1e-5)
