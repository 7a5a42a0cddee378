"""The decode steps as pure tensor functions: char inputs, the char pick (sampling, forced chars,
the header's line rules), end marks, one char or one patch through the model's modules.

The patch decoder (pipelines.generation.decoder) compiles these and captures them in a CUDA
graph; shapes never change and nothing here syncs with the host.
"""
from __future__ import annotations

import torch

from pipelines.abc.tokenizer import EOS_ID
from pipelines.generation.sampling import draw, race, sorted_distribution
from pipelines.model.network import NotaGen

_NEWLINE = ord("\n")


def char_embeds(model: NotaGen, enc, chars, pos):
    """(B, C) char-decoder input at position `pos` (before the position table): the patch state
    at 0, then the embedding of the previous char."""
    B = chars.shape[0]
    prev = chars.gather(1, (pos - 1).clamp(min=0).expand(B, 1))[:, 0]  # (B,)
    return torch.where(pos == 0, enc, model.char_level_decoder.base.transformer.wte(prev))


def pick_char(logits, chars, pos, forced, in_body, seeds, counters, top_k, top_p, temperature, rules):
    """The char each row takes at position `pos` (B,), from the char decoder's logits (B, 128).

    chars (B, P) the patch so far; forced (B, P) chars to take instead of sampling (-1:
    sample); seeds and counters (B,) key each row's random draw (counter = patches the row
    has generated); top_k, top_p, temperature (B, 1) per-row sampling settings; in_body (B,)
    and `rules` the header's line rules (`apply_line_rules`; None: every row is in its tune body).
    """
    B = chars.shape[0]
    probs = torch.softmax(logits.float(), dim=-1)  # (B, 128)
    sorted_p, order = sorted_distribution(probs, top_k, top_p, temperature)
    c = draw(sorted_p, seeds, counters * chars.shape[1] + pos, order)
    f = forced.gather(1, pos.expand(B, 1))[:, 0]
    c = torch.where(f >= 0, f, c)
    return c if rules is None else apply_line_rules(c, chars, pos, in_body, rules)


def apply_line_rules(c, chars, pos, in_body, rules):
    """The header's line rules (`pipelines.generation.header.LineRule`) over the drawn chars c (B,).

    rules = (line_start (B,): the patch begins a line; text (B, R, P): each rule's chars, -1 past
    them; drawn (B, R): how many of them the model draws; before (B, R, V): the chars a line begins
    with that this rule's line comes before; missing (B, R): its line is still to be written).
    In a header patch that begins a line: at position 0, a char in `before` of a missing rule
    becomes that rule's first char (the first such rule); past a rule's drawn chars, where the
    patch begins with them, its chars are taken. Slot 0 is the tune body's `[r:0/` start.
    """
    line_start, text, drawn, before, missing = rules
    B, R, P = text.shape
    slots = torch.arange(R, device=c.device)
    header = (~in_body & line_start)[:, None]  # (B, 1)
    inserts = header & (pos == 0) & missing & before.gather(2, c.view(B, 1, 1).expand(B, R, 1))[..., 0]  # (B, R)
    first = torch.where(inserts, slots, R).amin(dim=1, keepdim=True).clamp(max=R - 1)  # (B, 1) the first to insert
    c = torch.where(inserts.any(dim=1), text[..., 0].gather(1, first)[:, 0], c)
    at = torch.arange(P, device=c.device)
    began = ((chars[:, None, :] == text) | (at >= drawn[..., None])).all(dim=-1)  # (B, R) the drawn chars match
    value = text.gather(2, pos.expand(B, R, 1))[..., 0]  # (B, R)
    applies = header & began & (pos >= drawn) & (value >= 0)
    rule = torch.where(applies, slots, R).amin(dim=1, keepdim=True).clamp(max=R - 1)  # (B, 1)
    return torch.where(applies.any(dim=1), value.gather(1, rule)[:, 0], c)


def line_starts(patch):
    """(B,) whether the patch after each row's patch (B, P) begins a line: this one holds a newline."""
    return (patch == _NEWLINE).any(dim=1)


def pick_pair_rows(logits, chars, p: int, pos, exp_noise, forced, in_body, top_k, top_p, temperature, rules):
    """Each piece's chars at `p` and `p + 1` (two (B,) tensors) from a pair pass's logits (B * (1 + V), V)
    (`pipelines.generation.torch_pair`), every row drawn at once: row 0 at p, branch row 1 + c at p + 1
    as if c were drawn at p; the second char is the draw of the first char's branch. Each row is drawn
    as `pick_char` draws it (same distribution, noise, forced chars and line rules), so the chars
    are those of two `pick_char` calls; eagerly it is one sampling pass instead of two.

    p is a Python int and pos the same position as a tensor (); exp_noise (B, P, V) the patch's noise
    (`sampling.exponential_noise` at each position's step); the rest as `pick_char` takes it.
    """
    B, V = chars.shape[0], logits.shape[-1]
    probs = torch.softmax(logits.float().view(B, 1 + V, V), dim=-1)
    sorted_p, order = sorted_distribution(probs, top_k[:, None], top_p[:, None], temperature[:, None])
    both = exp_noise[:, p:p + 2]  # (B, 2, V): the noise at p (row 0) and at p + 1 (every branch)
    c = race(sorted_p, torch.cat([both[:, :1], both[:, 1:].expand(B, V, V)], 1), order)  # (B, 1 + V)
    f = forced[:, p:p + 2]
    f = torch.cat([f[:, :1], f[:, 1:].expand(B, V)], 1)
    c = torch.where(f >= 0, f, c)
    first = c[:, 0] if rules is None else apply_line_rules(c[:, 0], chars, pos, in_body, rules)
    second = c.gather(1, first[:, None] + 1)[:, 0]  # the draw of the branch the first char took
    if rules is not None:
        chars = torch.where(torch.arange(chars.shape[1], device=chars.device) == p, first[:, None], chars)
        second = apply_line_rules(second, chars, pos + 1, in_body, rules)
    return first, second


def rows_ended(chars, active):
    """(B,) whether each row's patch so far (B, P; zeros after it) holds its eos, or the row is
    no longer active: once all have, the rest of the patch is padding."""
    return (chars == EOS_ID).any(dim=1) | ~active


def pick_char_marking_ends(skip, active, logits, chars, pos, *picking):
    """`pick_char`, and `skip` (1,) set once every row has ended its patch (`rows_ended`), this
    char included: the fused char stack then skips the rest of the patch."""
    c = pick_char(logits, chars, pos, *picking)
    skip.copy_((rows_ended(chars, active) | (c == EOS_ID)).all())
    return c


def pick_pair_marking_ends(skip, active, logits, chars, pos, *picking):
    """Each row's chars at `pos` and `pos + 1` from a pair pass's logits (B * (1 + V), V) (see
    `kernels/pair.py`): its row 0's draw, then the draw from the branch of that char; `skip` as
    `pick_char_marking_ends`."""
    B, V = chars.shape[0], logits.shape[-1]
    rows = logits.view(B, -1, V)  # each piece's row 0, then its branches
    first = pick_char_marking_ends(skip, active, rows[:, 0], chars, pos, *picking)
    chars = torch.where(torch.arange(chars.shape[1], device=chars.device) == pos, first[:, None], chars)
    branch = rows.gather(1, (first + 1).view(B, 1, 1).expand(B, 1, V))[:, 0]
    second = pick_char_marking_ends(skip, active, branch, chars, pos + 1, *picking)
    return first, second


def char_step(model: NotaGen, enc, chars, pos, *picking):
    """One char for every row at position `pos` () through the model's modules, and the logits it
    was drawn from: (B,), (B, V); enc (B, C) patch states; `picking` as `pick_char` takes it after `pos`."""
    head = model.char_level_decoder.base
    x = char_embeds(model, enc, chars, pos)[:, None]  # (B, 1, C)
    h = head.transformer(x, pos.expand(chars.shape[0], 1), use_cache=True)
    logits = head.lm_head(h[:, -1])  # (B, V)
    return pick_char(logits, chars, pos, *picking), logits


def patch_step(model: NotaGen, patch, positions):
    """Append one patch per row at `positions` (B,); returns the new patch states (B, C)."""
    return model.patch_level_decoder(patch[:, None, :], positions[:, None])[:, -1]


def fused_char_input(model: NotaGen, enc, chars, pos):
    """The char decoder's first-layer input (B, C) for the decode kernels (`kernels/decode.py`):
    embeddings plus the position table."""
    return char_embeds(model, enc, chars, pos) + model.char_level_decoder.base.transformer.wpe(pos)


def fused_patch_input(model: NotaGen, patch, positions):
    """The patch decoder's first-layer input (B, C) for the decode kernels (`kernels/decode.py`)."""
    decoder = model.patch_level_decoder
    return decoder.embed(patch[:, None, :])[:, 0] + decoder.base.wpe(positions)


def zero_after_eos(chars: torch.Tensor) -> torch.Tensor:
    """Upstream feeds a patch back with every char after its eos set to pad."""
    is_eos = chars == EOS_ID
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return chars.masked_fill(after, 0)

