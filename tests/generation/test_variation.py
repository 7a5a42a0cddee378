"""One bar in the middle written again: every other bar kept byte for byte, candidates ranked by the model's
likelihood of the bars after the new one (checked against a patch-by-patch computation)."""
import pytest
import torch
import torch.nn.functional as F

from pipelines.abc.prompts import Prompt
from pipelines.abc.tokenizer import PAD_ID, STREAM_PREFIX, Patchilizer
from pipelines.errors import NotaGenError
from pipelines.generation.continuation import continuation_prefix, read_score, score_lines
from pipelines.generation.engine import Engine
from pipelines.generation.options import SamplingConfig
from pipelines.generation.variation import rewrite_bar
from pipelines.model.checkpoint import load_checkpoint
from pipelines.model.runtime import pick_runtime
from tests.paths import PREPROCESS, TINY_MODEL

BACH = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")
FLAT = SamplingConfig(top_k=0, top_p=1.0, temperature=1.0)  # random weights: every char, a newline too, can come


@pytest.fixture(scope="module")
def engine():
    return Engine(load_checkpoint(TINY_MODEL).model, pick_runtime("cpu"))


@pytest.fixture(scope="module")
def five_bars():
    """The first five bars of a chorale (they fit the tiny model's 64-patch context)."""
    return continuation_prefix(read_score(PREPROCESS / "bach_bwv7.7.musicxml"), BACH, keep_lines=5, add_lines=1)


def direct_following_logprob(model, head: str, whole: str) -> float:
    """Patch by patch: each patch after the head's, its chars given the patches before it."""
    as_written = Patchilizer(model.config.patch_size, stream=False)
    patches = torch.tensor(as_written.encode_train(whole, model.config.patch_length, cut=False))
    first = len(as_written.encode_train(head, model.config.patch_length, cut=False)) - 1  # the head without its end
    total = 0.0
    with torch.no_grad():
        hidden = model.patch_level_decoder(patches[None])[0]  # (N, C)
        for t in range(first, len(patches)):
            logits = model.char_level_decoder(hidden[t - 1:t], patches[t:t + 1, :-1])[0]  # (P, V)
            logp = F.log_softmax(logits.float(), dim=-1)
            for j, char in enumerate(patches[t].tolist()):
                if char != PAD_ID:
                    total += logp[j, char].item()
    return total


def test_a_bar_in_the_middle_is_written_again_and_the_candidates_ranked(engine, five_bars):
    _, body = score_lines(five_bars)
    found = rewrite_bar(engine, five_bars, BACH, bar=3, candidates=3, seed=1, sampling=FLAT, bar_retries=0)
    assert len(found) >= 2
    for c in found:
        _, lines = score_lines(c.text)
        assert len(lines) == 5 and lines[2].rstrip("\n") == c.line
        assert lines[:2] == body[:2] and lines[3:] == body[3:]  # every other bar as it was
        numbered = [line for line in c.text.splitlines() if STREAM_PREFIX.match(line)]
        assert [STREAM_PREFIX.match(line).group(0) for line in numbered] == [f"[r:{i}/{4 - i}]" for i in range(5)]
    assert len({c.line for c in found}) == len(found)  # each seed its own bar
    head_of = {c.seed: c.text[:c.text.index(c.line) + len(c.line) + 1] for c in found}
    direct = {c.seed: direct_following_logprob(engine.model, head_of[c.seed], c.text) for c in found}
    for c in found:
        assert c.following_logprob == pytest.approx(direct[c.seed], rel=1e-4, abs=1e-3)
    assert [c.seed for c in found] == sorted(direct, key=lambda s: -direct[s])  # best first


def test_the_first_and_last_bars_cannot_be_rewritten_in_place(engine, five_bars):
    for bar in (1, 5):
        with pytest.raises(NotaGenError, match="must be 2 to 4"):
            rewrite_bar(engine, five_bars, BACH, bar=bar, candidates=2)
