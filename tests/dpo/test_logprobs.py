"""Whole-piece log-probs: the training format they are measured in, and the model's own loss."""

import pytest
import torch

from pipelines.abc.prompts import Prompt
from pipelines.abc.tokenizer import Patchilizer, pad_patches
from pipelines.dpo.logprobs import (
    encode_pieces,
    measure_logprobs,
    sequence_logprobs,
    training_text,
    unfinished_text,
)
from pipelines.dpo.memory import estimate_dpo_memory
from pipelines.errors import DPOError
from pipelines.model.checkpoint import load_checkpoint
from pipelines.model.config import preset
from tests.paths import PREPROCESS, TINY_MODEL

PRE = PREPROCESS
BACH = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")


def test_training_text_from_generated_and_post_processed():
    generated = ("%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\nL:1/8\nM:2/4\nK:C\nV:1 treble\nV:2 bass\n"
                 "[r:0/1][V:1]cd ef|[V:2]C,4|\n[r:1/0][V:1]g4|]\n")
    assert training_text(generated) == generated.replace("[r:0/1]", "").replace("[r:1/0]", "")
    post = "X:1\nL:1/8\nM:2/4\nK:C\nV:1 treble\nV:2 bass\n[V:1]cd ef|[V:2]C,4|\n[V:1]g4|][V:2]z4|]\n"
    assert training_text(post, BACH) == training_text(generated)  # header added, resting voice 2 left out
    with pytest.raises(DPOError, match="no prompt"):
        training_text(post)
    augmented = (PRE / "augmented" / "C" / "bach_bwv66.6_C.abc").read_text(encoding="utf-8")
    text = training_text("%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n" + augmented)
    assert text == "%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n" + augmented  # a dataset file is unchanged


def test_an_unfinished_piece_is_measured_as_written_without_an_end():
    """A piece cut off by the patch limit: its own [r:i/j] counts, no half line, and no end patch, so rejecting
    it does not teach the model not to end."""
    raw = ("%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\nL:1/8\nM:2/4\nK:C\nV:1 treble\nV:2 bass\n"
           "[r:0/11][V:1]cd ef|[V:2]C,4|\n[r:1/10][V:1]g4|[V:2]G,4|\n[r:2/9][V:1]ab")
    text = unfinished_text(raw)
    assert text.endswith("[r:1/10][V:1]g4|[V:2]G,4|\n") and "[r:2/9]" not in text
    patchilizer = Patchilizer()
    as_written, = encode_pieces([text], patchilizer, 1024, ended=[False])
    ended, = encode_pieces([training_text(text)], patchilizer, 1024)
    eos = patchilizer.to_ids(patchilizer.eos_patch)
    assert ended[-1] == eos and as_written[-1] != eos and eos not in as_written
    decoded = "".join(chr(i) for row in as_written for i in row if i > 2)
    assert "[r:0/11]" in decoded and "[r:1/10]" in decoded  # the model's counts, not recounted ones (1/0)
    assert len(encode_pieces([text], patchilizer, 5, ended=[False])[0]) == 5  # the head, cut to the context


def test_logprobs_are_minus_the_training_loss_and_cut_the_same_way():
    model = load_checkpoint(str(TINY_MODEL)).model
    header = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n"
    texts = [header + (PRE / "augmented" / k / f"bach_bwv66.6_{k}.abc").read_text(encoding="utf-8")
             for k in ("C", "D", "Eb")]
    patchilizer = Patchilizer()
    encoded = encode_pieces(texts, patchilizer, model.config.patch_length)
    assert encoded == encode_pieces(texts, patchilizer, model.config.patch_length)  # same cut every call
    assert all(len(e) <= model.config.patch_length for e in encoded)  # long pieces are cut to the context
    patches, masks = pad_patches(encoded, 16)
    with torch.no_grad():
        loss_sum, chars = model.char_losses(patches, masks)
        direct = sequence_logprobs(model, patches, masks)
    assert torch.equal(direct, -loss_sum) and (direct < 0).all()
    batched = measure_logprobs(model, encoded, batch_size=2)
    assert torch.allclose(batched, direct, rtol=1e-5)


def test_memory_estimate_of_notagen_x_fits_24_gb():
    x = estimate_dpo_memory(preset("notagen-x"))
    assert x.parameters == 515_738_880
    assert x.weights == 4 * x.parameters and x.optimizer == 8 * x.parameters
    assert x.reference_weights == 2 * x.parameters  # bf16
    assert x.total < 24 * 10 ** 9
    assert estimate_dpo_memory(preset("notagen-x"), checkpointing="none").activations > x.activations
    assert "GiB" in x.describe()


def test_a_piece_that_ended_in_its_header_is_measured_as_written():
    """The model wrote its end before any bar: a rejected piece with no tune body to put in the training format."""
    from pipelines.dpo.loop import encode_candidates
    from pipelines.dpo.preference import POSTPROCESS_FAILED, Candidate

    raw = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\nL:1/8\nM:2/4\nK:C\nV:1 treble\nV:2 bass\n"
    header_only = Candidate("h", raw, None, BACH, status="invalid", problem=f"{POSTPROCESS_FAILED}: no tune body")
    assert header_only.ended
    with pytest.raises(DPOError, match="no interleaved"):
        training_text(raw)
    patchilizer = Patchilizer()
    encoded, = encode_candidates([header_only], patchilizer, 1024)
    assert encoded == encode_pieces([raw], patchilizer, 1024, ended=[False])[0]
