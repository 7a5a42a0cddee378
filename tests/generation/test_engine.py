import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from pipelines.abc.postprocess import close_score_brackets, postprocess
from pipelines.abc.prompts import Prompt
from pipelines.abc.report import bar_line_problem, header_problem
from pipelines.abc.tokenizer import EOS_ID, Patchilizer
from pipelines.errors import AbcError, NotaGenError
from pipelines.generation.continuation import continuation_prefix
from pipelines.generation.decoder import encode_rules
from pipelines.generation.engine import Engine, GeneratedPiece, GenerationRequest
from pipelines.generation.header import HeaderControls
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.piece import Move, MoveKind, Piece
from pipelines.generation.policy import (
    MAX_BACK_LINES,
    MAX_HEADER_RESTARTS,
    MAX_RESTARTS,
    REDRAWS_PER_LINE,
    RESTART_WITHIN_LINES,
    RedrawPolicy,
)
from pipelines.generation.sampling import draw, sampling_distribution
from pipelines.generation.steps import char_step, zero_after_eos
from pipelines.model.checkpoint import load_checkpoint
from pipelines.model.runtime import pick_runtime
from tests.paths import DEMO_MODEL

BACH = Prompt("Baroque", "Bach, Johann Sebastian", "Choral")
MOZART = Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber")


@pytest.fixture(scope="module")
def engine(fixtures):
    model = load_checkpoint(fixtures / "tiny_model.pth").model
    return Engine(model, pick_runtime("cpu"))


@torch.no_grad()
def reference_patch(model, context: list[list[int]], seed: int, n: int, sampling: SamplingConfig,
                    forced: list[int] = ()) -> list[int]:
    """Patch number `n` after `context`, uncached: the whole context re-encoded, the char decoder
    re-run per char; the first chars are `forced` where given (still drawn, then replaced)."""
    P = model.config.patch_size
    state = model.patch_level_decoder(torch.tensor([context]))[:, -1]
    chars = []
    for pos in range(P):
        logits = model.char_level_decoder(state, torch.tensor([chars], dtype=torch.long))[:, -1]
        dist = sampling_distribution(torch.softmax(logits, -1), sampling.top_k, sampling.top_p, sampling.temperature)
        drawn = int(draw(dist, torch.tensor([seed]), torch.tensor([n * P + pos]))[0])
        chars.append(forced[pos] if pos < len(forced) else drawn)
    return zero_after_eos(torch.tensor([chars]))[0].tolist()


def reference_generate(model, prompt: Prompt, seed: int, patches: int, sampling: SamplingConfig) -> str:
    """No caches: the whole context re-encoded per patch, the char decoder re-run per char."""
    text = "".join(line + "\n" for line in prompt.header_lines(with_end=False))
    context = Patchilizer().encode_generate(text, model.config.patch_length)
    for n in range(patches):
        patch = reference_patch(model, context, seed, n, sampling)
        if patch[0] == 1 and patch[1] == EOS_ID:
            break
        text += Patchilizer.decode_patch(patch)
        context.append(patch)
    return text


@pytest.mark.slow
def test_cached_engine_equals_uncached_reference(engine):
    sampling = SamplingConfig()
    limits = GenerationLimits(max_patches=12, bar_retries=0)
    pieces = engine.generate([GenerationRequest(BACH, seed=3), GenerationRequest(MOZART, seed=4)], sampling, limits)
    assert pieces[0].raw == reference_generate(engine.model, BACH, 3, 12, sampling)
    assert pieces[1].raw == reference_generate(engine.model, MOZART, 4, 12, sampling)
    assert all(p.status == "limit" and p.abc is None and "12-patch" in p.reason for p in pieces)


def test_same_seed_same_piece_other_seed_differs(engine):
    limits = GenerationLimits(max_patches=8, bar_retries=0)
    a, b, c = engine.generate([GenerationRequest(BACH, 1), GenerationRequest(BACH, 1), GenerationRequest(BACH, 2)],
                              limits=limits)
    assert a.raw == b.raw != c.raw
    again = engine.generate([GenerationRequest(BACH, 1)], limits=limits)[0]
    assert again.raw == a.raw  # alone or in a batch of three: the same piece


@pytest.mark.slow
def test_generation_continues_past_the_patch_length(engine, fixtures):
    # A real chorale as the piece to continue: ~100 patches for a 64-patch model.
    source = (fixtures / "preprocess" / "bach_bwv7.7.xml2abc.abc").read_text(encoding="utf-8")
    prefix = continuation_prefix(source, BACH, add_lines=4)
    assert len(Patchilizer().encode_generate(prefix, 10**6)) > engine.config.patch_length
    piece = engine.generate([GenerationRequest(BACH, seed=5, prefix=prefix)],
                            limits=GenerationLimits(max_patches=90, bar_retries=0))[0]
    assert piece.raw.startswith(prefix)
    assert piece.patches == 90 and piece.status == "limit"
    assert piece.reencodes >= 2  # once for the prefix, again while generating


@pytest.mark.slow
def test_the_line_under_way_at_a_reencode_can_still_be_redrawn(engine, fixtures, monkeypatch):
    """Past the patch length the old marks are gone; the line being written gets a mark in the new
    context, so the first line to end after a re-encode is checked (and redrawn) like the others."""
    source = (fixtures / "preprocess" / "bach_bwv7.7.xml2abc.abc").read_text(encoding="utf-8")
    prefix = continuation_prefix(source, BACH, add_lines=4)
    unmarked, checked = [], []
    after_line = RedrawPolicy.after_line

    def spy(policy, piece):
        (unmarked if piece.line_start is None else checked).append(piece.reencodes)
        return after_line(policy, piece)

    monkeypatch.setattr(RedrawPolicy, "after_line", spy)
    piece = engine.generate([GenerationRequest(BACH, seed=5, prefix=prefix)],
                            limits=GenerationLimits(max_patches=150, bar_retries=2))[0]
    assert piece.reencodes >= 2 and piece.redrawn_bars > 0
    assert max(checked) >= 2 and not unmarked  # lines ended after re-encodes, each with a mark


@pytest.mark.slow
def test_metadata_only_context_is_refused_not_crashed(engine):
    # The random tiny model never starts a tune body; once its metadata fills the context it stops.
    piece = engine.generate([GenerationRequest(BACH, seed=0)], limits=GenerationLimits(max_patches=200, bar_retries=0))[0]
    assert piece.status == "invalid" and "without a tune body" in piece.reason
    assert piece.abc is None and piece.patches < 200


def test_a_line_too_long_for_the_context_is_named(engine):
    metadata = "%Baroque\n%Bach, Johann Sebastian\n%Choral\nL:1/8\nM:4/4\nK:C\nV:1 treble\n"
    long_line = "[r:0/1][V:1]" + "c2 " * 400  # 1,212 chars: past the tiny model's 64 patches with any metadata
    with pytest.raises(AbcError, match=r"its metadata and its last tune-body line \(1212 chars\) fill the 64-patch"):
        engine.generate([GenerationRequest(BACH, prefix=metadata + long_line)])


def test_limits_and_cancel_are_statuses_with_reasons(engine):
    piece = engine.generate([GenerationRequest(BACH, 0)], limits=GenerationLimits(max_chars=120, bar_retries=0))[0]
    assert piece.status == "limit" and "120-character" in piece.reason and piece.abc is None
    calls = []
    piece = engine.generate([GenerationRequest(BACH, 0)], on_patch=lambda row, text: calls.append(text),
                            should_stop=lambda: len(calls) >= 3)[0]
    assert piece.status == "cancelled" and piece.patches == 3
    assert calls[-1] == piece.raw and calls[0] != calls[1]  # streamed text grows patch by patch


def test_first_tune_body_patch_is_forced_to_start_r0(engine):
    model = engine.model
    B, P = 2, engine.config.patch_size
    chars = torch.zeros(B, P, dtype=torch.long)
    chars[:, :3] = torch.tensor([ord(c) for c in "[r:"])
    forced = torch.full((B, P), -1)
    in_body = torch.tensor([False, True])
    enc = torch.randn(B, engine.config.hidden_size)
    text, drawn, before = (t.expand(B, *t.shape) for t in encode_rules(HeaderControls().rules(), P))
    rules = (torch.ones(B, dtype=torch.bool), text, drawn, before, torch.zeros(drawn.shape, dtype=torch.bool))
    model.setup_caches(B)
    try:
        for pos in range(5):
            c, _ = char_step(model, enc, chars, torch.tensor(pos), forced, in_body, torch.tensor([1, 1]),
                             torch.zeros(2, dtype=torch.long), 9, 0.9, 1.2, rules)
            if pos >= 3:
                chars[:, pos] = c
    finally:
        engine.free_caches()  # the engine's next batch sets its caches up again
    assert chars[0, 3:5].tolist() == [ord("0"), ord("/")]
    assert chars[1, 3:5].tolist() != [ord("0"), ord("/")]  # already in the tune body: not forced


def test_postprocess_equals_upstream(fixtures):
    cases = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))
    for case in cases:
        assert postprocess(case["generated"]) == case["postprocessed"], case["name"]


def test_score_brackets_are_closed():
    assert close_score_brackets("%%score { ( 1 2 ) | 3") == "%%score { ( 1 2 ) | 3 }"
    assert close_score_brackets("%%score [ 1 | 2 ] ]") == "%%score [ 1 | 2 ]"
    assert close_score_brackets("%%score [ 1 | 2 | 3 | 4 ]") == "%%score [ 1 | 2 | 3 | 4 ]"


def test_finished_piece_that_fails_postprocessing_is_invalid():
    piece = Piece(GenerationRequest(BACH, 0), ["%Baroque\n%Bach\n%Choral\n%end\nL:1/8\n"], metadata="")
    piece.status = "ok"
    out = piece.result(1.0)
    assert isinstance(out, GeneratedPiece) and out.status == "invalid" and out.abc is None
    assert "no tune body" in out.reason


def test_continuation_prefix_is_in_training_format(fixtures):
    source = (fixtures / "preprocess" / "bach_bwv66.6.xml2abc.abc").read_text(encoding="utf-8")
    prefix = continuation_prefix(source, BACH, keep_lines=3, add_lines=5)
    lines = prefix.splitlines()
    assert lines[:4] == ["%Baroque", "%Bach, Johann Sebastian", "%Choral", "%end"]
    body = [line for line in lines if line.startswith("[r:")]
    assert [line[:7] for line in body] == ["[r:0/7]", "[r:1/6]", "[r:2/5]"]
    augmented = (fixtures / "preprocess" / "augmented" / "A" / "bach_bwv66.6_A.abc").read_text(encoding="utf-8")
    assert body[1][len("[r:1/6]"):] + "\n" in augmented  # same rest-reduced bar line as the training data
    with pytest.raises(NotaGenError, match="V:1"):
        continuation_prefix("%%score 1\nL:1/8\nK:C\n", BACH)


def test_zero_after_eos():
    chars = torch.tensor([[65, 66, EOS_ID, 67, 68], [65, 66, 67, 68, 69]])
    assert zero_after_eos(chars).tolist() == [[65, 66, EOS_ID, 0, 0], [65, 66, 67, 68, 69]]


def reference_with_redraws(model, start: str, seed: int, patches: int, retries: int) -> tuple[str, int, int, int, int]:
    """No caches, and redraws done on the text, as RedrawPolicy.after_line and after_end say: a
    finished tune-body line whose voices do not line up is cut off again (up to `retries` times per
    line, within the piece's budget); past that, one among the first RESTART_WITHIN_LINES cuts the
    piece back to `start` (up to MAX_RESTARTS times; `start` holds the metadata, so no header
    restarts, which are for headers the model wrote), a later one back to the line before's start, and failing
    again at that place 2, 3 ... lines back (up to MAX_BACK_LINES); an end on a last line that does
    not close cuts that line off. Past the patch length the context becomes the metadata and the
    last half of the lines; a mark from before that keeps its text only, and going back there
    encodes the context again from the text. The draws' counter goes on. Returns the text, lines
    redrawn, restarts (both kinds), ends refused and the deepest way back."""
    P, L = model.config.patch_size, model.config.patch_length
    lines = start.splitlines(keepends=True)
    metadata = "".join(lines[:next(i for i, line in enumerate(lines) if line.startswith("[r:"))])
    start_lines = len(start[len(metadata):].splitlines())

    def encoded(text):  # (full patches, chars of an unfinished last patch)
        ids = Patchilizer().encode_generate(text, L)
        return (ids[:-1], ids[-1]) if ids and len(ids[-1]) < P else (ids, [])

    def reencoded(text):  # metadata + the last half of the lines (fewer where that overflows)
        body = text[len(metadata):].splitlines(keepends=True)
        for keep in range(max(len(body) // 2, 1), 0, -1):
            ids, open_patch = encoded(metadata + "".join(body[-keep:]))
            if len(ids) < L - 1:
                return ids, open_patch
        return None

    text = start
    context, forced = encoded(start)
    first = (text, list(context), forced)
    marks = [first]  # line starts (text, context, forced), the current line's last; context None: text only
    redraws = redrawn = attempt = restarts = end_redraws = deepest = 0
    backed_at, back_depth = -1, 0

    def go_back(depth):  # to marks[-1 - depth], dropping the later ones
        del marks[len(marks) - depth:]
        mark_text, mark_context, mark_forced = marks[-1]
        if mark_context is None:
            mark_context, mark_forced = reencoded(mark_text)
            marks[-1] = (mark_text, mark_context, mark_forced)
        return mark_text, list(mark_context), mark_forced

    for n in range(patches):
        patch = reference_patch(model, context, seed, n, SamplingConfig(), forced)
        body_lines = len(text[len(metadata):].splitlines())
        budget_left = attempt < retries + REDRAWS_PER_LINE * body_lines
        if patch[0] == 1 and patch[1] == EOS_ID:
            finished = text.endswith("\n")
            if end_redraws < retries and budget_left and len(marks) > finished \
                    and bar_line_problem(metadata, text.splitlines()[-1], last=True):
                end_redraws, redrawn, attempt, redraws = end_redraws + 1, redrawn + 1, attempt + 1, 0
                text, context, forced = go_back(int(finished))
                continue
            break
        new = Patchilizer.decode_patch(patch)[len(forced):]
        text += new
        context.append(patch)
        forced = []
        ends_line, mark_after = new.endswith("\n"), False
        if ends_line:  # a line the model finished
            body_lines = len(text[len(metadata):].splitlines())
            budget_left = attempt < retries + REDRAWS_PER_LINE * body_lines
            line = budget_left and redraws < retries
            early = first is not None and body_lines - start_lines <= RESTART_WITHIN_LINES
            restart = early and restarts < MAX_RESTARTS
            depth = back_depth + 1 if backed_at == body_lines else 1
            back = budget_left and depth <= MAX_BACK_LINES and len(marks) > depth
            fails = (line or restart or back) and bar_line_problem(metadata, text.splitlines()[-1])
            if fails and not line and restart:
                text, context, forced = first[0], list(first[1]), first[2]
                marks, redraws, attempt = [first], 0, 0
                restarts += 1
            elif fails and line:
                text, context, forced = go_back(0)
                redraws, redrawn, attempt = redraws + 1, redrawn + 1, attempt + 1
            elif fails:
                backed_at, back_depth, deepest = body_lines, depth, max(deepest, depth)
                redrawn, attempt, redraws = redrawn + 1, attempt + 1, 0
                text, context, forced = go_back(depth)
            else:
                mark_after = True
        if len(context) >= L:  # past the patch length
            context, forced = reencoded(text)
            marks, first = [(mark_text, None, None) for mark_text, _, _ in marks], None
            if not ends_line:
                marks = (marks + [(text, list(context), forced)])[-(MAX_BACK_LINES + 1):]
        if mark_after:
            marks, redraws = (marks + [(text, list(context), forced)])[-(MAX_BACK_LINES + 1):], 0
    return text, redrawn, restarts, end_redraws, deepest


@pytest.mark.slow
def test_misaligned_bars_are_redrawn_as_a_reference_does(fixtures, monkeypatch):
    """The demo model continues a Haydn quartet; lines whose voices differ are drawn again from
    the line's start, one that keeps failing early restarts the piece and a later one goes back a
    line. The cached engine (rolled back rows, a batch of two) writes what a reference that
    re-encodes the cut text writes, char for char."""
    demo = load_checkpoint(DEMO_MODEL, device="cpu")
    model = demo.model.float().eval()
    source = (fixtures / "preprocess" / "haydn_opus74no1_movement3.xml2abc.abc").read_text(encoding="utf-8")
    haydn = Prompt("Classical", "Haydn, Joseph", "Chamber")
    prefix = continuation_prefix(source, haydn, keep_lines=2)
    engine = Engine(model, pick_runtime("cpu"))
    hows = []
    back_to = Piece.back_to
    monkeypatch.setattr(Piece, "back_to", lambda piece, move: hows.append(move.kind) or back_to(piece, move))
    seeds = (7, 8)
    events = []
    pieces = engine.generate([GenerationRequest(haydn, seed=s, prefix=prefix) for s in seeds],
                             limits=GenerationLimits(max_patches=60, bar_retries=1),
                             on_move=lambda row, event: events.append((row, event)))
    # the comparison covers every way back but a header's
    assert set(hows) == {MoveKind.LINE, MoveKind.RESTART, MoveKind.BACK}
    # each way back is told as it is made (where the piece was, where it goes on from, why)
    assert [e.kind for _, e in events] == hows and all(e.reason for _, e in events)
    for _, e in events:
        if e.kind is MoveKind.LINE:
            assert e.to_line == e.line and e.count == 1  # bar_retries=1: one redraw of a line
        elif e.kind is MoveKind.RESTART:
            assert e.to_line == 0
        else:
            assert 1 <= e.to_line <= e.line and e.count == e.line - e.to_line + 1
    for row, piece in enumerate(pieces):
        assert piece.redrawn_bars == sum(r == row and e.kind is not MoveKind.RESTART for r, e in events)
    for seed, piece in zip(seeds, pieces):
        text, redrawn, restarts, _, _ = reference_with_redraws(model, prefix, seed, piece.patches, retries=1)
        assert piece.raw == text and piece.redrawn_bars == redrawn and piece.restarts == restarts
    plain = engine.generate([GenerationRequest(haydn, seed=0, prefix=prefix)], limits=GenerationLimits(max_patches=40, bar_retries=0))
    assert plain[0].redrawn_bars == 0 and plain[0].raw != pieces[0].raw


@pytest.mark.slow
def test_redraws_go_back_across_a_reencode_as_a_reference_does(fixtures, monkeypatch):
    """With a 40-patch context the demo model's Haydn continuation is re-encoded every few lines;
    steps back to a line from before a re-encode encode the context again from the text. The
    engine still writes what the uncached reference writes, char for char."""
    demo = load_checkpoint(DEMO_MODEL, device="cpu")
    model = demo.model.float().eval()
    model.config = replace(model.config, patch_length=40)
    source = (fixtures / "preprocess" / "haydn_opus74no1_movement3.xml2abc.abc").read_text(encoding="utf-8")
    haydn = Prompt("Classical", "Haydn, Joseph", "Chamber")
    prefix = continuation_prefix(source, haydn, keep_lines=2)
    across = []
    back_to = Piece.back_to
    monkeypatch.setattr(Piece, "back_to",
                        lambda piece, move: across.append(move.mark.enc is None) or back_to(piece, move))
    seeds = (1, 2)
    pieces = Engine(model, pick_runtime("cpu")).generate(
        [GenerationRequest(haydn, seed=s, prefix=prefix) for s in seeds],
        limits=GenerationLimits(max_patches=45, bar_retries=1))
    assert any(across) and all(p.reencodes >= 3 for p in pieces)
    for seed, piece in zip(seeds, pieces):
        text, redrawn, restarts, _, _ = reference_with_redraws(model, prefix, seed, piece.patches, retries=1)
        assert piece.raw == text and piece.redrawn_bars == redrawn and piece.restarts == restarts


@pytest.mark.slow
def test_a_header_that_fails_its_check_is_written_again_as_the_body_begins(monkeypatch):
    """The demo model writes Bach headers that pass; here the check also turns down the first two.
    Each is written again from the prompt, as the tune body begins, and the piece goes on under
    the first header that passes."""
    import pipelines.generation.policy as policy

    demo = load_checkpoint(DEMO_MODEL, device="cpu")
    checked = []

    def stricter(metadata):
        checked.append(metadata)
        return "turned down by the test" if len(checked) <= 2 else header_problem(metadata)

    monkeypatch.setattr(policy, "header_problem", stricter)
    hows = []
    back_to = Piece.back_to
    monkeypatch.setattr(Piece, "back_to", lambda piece, move: hows.append(move.kind) or back_to(piece, move))
    events = []
    piece = Engine(demo.model.float().eval(), pick_runtime("cpu")).generate(
        [GenerationRequest(BACH, seed=3)], limits=GenerationLimits(max_patches=60, bar_retries=1),
        on_move=lambda row, event: events.append(event))[0]
    assert hows[:2] == [MoveKind.HEADER, MoveKind.HEADER] and piece.restarts >= 2
    assert [(e.kind, e.count, e.reason, e.to_line) for e in events[:2]] == [
        (MoveKind.HEADER, 1, "turned down by the test", 0), (MoveKind.HEADER, 2, "turned down by the test", 0)]
    assert len(checked) == hows.count(MoveKind.HEADER) + 1
    assert piece.raw.startswith(checked[-1]) and checked[-1].startswith(GenerationRequest(BACH).start_text())
    assert header_problem(checked[-1]) is None


def _piece(*lines: str, marks: int = 1) -> Piece:
    """A piece at the end of `lines` whose last `marks` line starts are known (the current line's
    last); its start is not."""
    piece = Piece(GenerationRequest(BACH), [], metadata="L:1/8\nM:3/4\nK:C\nV:1\nV:2\n", in_body=True,
                  body_lines=list(lines))
    piece.marks = [SimpleNamespace(line=len(lines) - marks + i) for i in range(marks)]
    return piece


GOOD, BAD = "[r:0/6][V:1]c6|[V:2]C6|\n", "[r:1/5][V:1]c6|[V:2]C4|\n"


def test_a_piece_stops_redrawing_past_its_budget():
    """A piece whose lines keep failing goes on: at most `retries` + 4 redraws per line it has."""
    piece = _piece(GOOD, BAD)
    piece.attempt_redraws = 3 + REDRAWS_PER_LINE * 2 - 1
    assert RedrawPolicy(3).after_line(piece) == Move(MoveKind.LINE, piece.line_start)
    piece.attempt_redraws += 1
    assert RedrawPolicy(3).after_line(piece) is None
    piece.body_lines[-1] = GOOD
    piece.attempt_redraws = 0
    assert RedrawPolicy(3).after_line(piece) is None  # aligned: kept


def test_a_line_past_its_redraws_restarts_the_piece_early_and_goes_back_a_line_later():
    """Past its redraws, a failing line among the first RESTART_WITHIN_LINES sends the piece back
    to its start (at most MAX_RESTARTS times); a later one goes back to the line before's start,
    once per place."""
    piece = _piece(GOOD, BAD)
    piece.start = SimpleNamespace(body_count=0, in_body=False)
    piece.redraws = 3  # the line's redraws are spent
    assert RedrawPolicy(3).after_line(piece) == Move(MoveKind.RESTART, piece.start)
    piece.restarts = MAX_RESTARTS
    assert RedrawPolicy(3).after_line(piece) is None  # no line before to go back to
    piece.marks.insert(0, SimpleNamespace(line=0))
    assert RedrawPolicy(3).after_line(piece) == Move(MoveKind.BACK, piece.marks[-2])
    piece = _piece(*[GOOD] * RESTART_WITHIN_LINES, BAD, marks=2)  # too late to restart
    piece.start, piece.redraws = SimpleNamespace(body_count=0, in_body=False), 3
    assert RedrawPolicy(3).after_line(piece) == Move(MoveKind.BACK, piece.marks[-2])


def test_failing_again_at_one_place_goes_back_further_each_time():
    """At one place, 1, 2, ... MAX_BACK_LINES lines back, as far as the marks reach; elsewhere 1 again."""
    lines = [GOOD] * 12 + [BAD]
    piece = _piece(*lines, marks=MAX_BACK_LINES + 1)
    piece.start, piece.redraws = SimpleNamespace(body_count=0, in_body=False), 3
    for depth in range(1, MAX_BACK_LINES + 1):
        assert RedrawPolicy(3).after_line(piece) == Move(MoveKind.BACK, piece.marks[-1 - depth])
        piece.redraws = 3  # the lines in between were drawn again and this one failed its redraws again
    assert RedrawPolicy(3).after_line(piece) is None  # kept
    piece.body_lines.insert(0, GOOD)  # another place: 1 line back again
    assert RedrawPolicy(3).after_line(piece) == Move(MoveKind.BACK, piece.marks[-2])
    short = _piece(*lines, marks=2)  # a re-encode left only the line before's start
    short.start, short.redraws = None, 3
    assert RedrawPolicy(3).after_line(short) == Move(MoveKind.BACK, short.marks[0])
    assert RedrawPolicy(3).after_line(short) is None


def test_going_back_drops_the_later_marks_and_keeps_the_earlier():
    piece = _piece(GOOD, GOOD, GOOD, BAD, marks=0)
    for n in range(MAX_BACK_LINES + 3):
        piece.mark_line_start(n, [], torch.zeros(4), keep=MAX_BACK_LINES + 1)
    assert [m.context for m in piece.marks] == list(range(2, MAX_BACK_LINES + 3))  # the last MAX_BACK_LINES + 1
    target = piece.marks[-3]
    piece.text, piece.chars = ["x"] * 10, 10
    piece.back_to(Move(MoveKind.BACK, target))
    assert piece.marks[-1] is target and len(piece.marks) == MAX_BACK_LINES - 1 and piece.redraws == 0
    piece.back_to(Move(MoveKind.HEADER, piece.marks[0]))
    assert piece.header_restarts == 1 and piece.restarts == 0 and len(piece.marks) == 1


def test_a_header_with_a_problem_restarts_the_piece_as_its_tune_body_begins():
    piece = _piece("[r:0/6][V:1]c")  # the first patch of the tune body
    piece.start = SimpleNamespace(body_count=0, in_body=False)  # the model wrote the header
    assert RedrawPolicy(3).after_header(piece) is None
    piece.metadata += "V:2\n"
    assert header_problem(piece.metadata) == "voice 2 is defined twice in the header"
    assert RedrawPolicy(3).after_header(piece) == Move(MoveKind.HEADER, piece.start)
    piece.restarts = MAX_RESTARTS  # line restarts spent: a header's go on
    assert RedrawPolicy(3).after_header(piece) == Move(MoveKind.HEADER, piece.start)
    assert RedrawPolicy(0).after_header(piece) is None  # no redraws asked for
    piece.header_restarts = MAX_HEADER_RESTARTS  # spent: the piece goes on as it is
    assert RedrawPolicy(3).after_header(piece) is None
    piece.header_restarts = 0
    piece.start = SimpleNamespace(body_count=0, in_body=True)  # a continued piece's own header
    assert RedrawPolicy(3).after_header(piece) is None
    piece.start = None  # its context is gone (re-encoded)
    assert RedrawPolicy(3).after_header(piece) is None
    header_only = _piece()
    header_only.in_body, header_only.start = False, SimpleNamespace(body_count=0, in_body=False)
    assert RedrawPolicy(3).after_header(header_only) is None  # a header with no problem goes on
    assert RedrawPolicy(3).after_header(header_only, ended=True) == Move(MoveKind.HEADER, header_only.start)


def test_a_piece_that_ends_on_an_open_ending_draws_its_last_line_again():
    piece = _piece(GOOD, "[r:1/0][V:1]c6:|2[V:2]C6:|2\n", marks=2)  # the current mark follows the last line
    assert RedrawPolicy(3).after_end(piece) == Move(MoveKind.BACK, piece.marks[-2])
    piece.end_redraws = 3
    assert RedrawPolicy(3).after_end(piece) is None  # the piece ends as it is
    closed = _piece(GOOD, "[r:1/0][V:1]c6|][V:2]C6|]\n", marks=2)
    assert RedrawPolicy(3).after_end(closed) is None
    unfinished = _piece(GOOD, "[r:1/0][V:1]c6|[V:2]C")  # ended mid-line: back to that line's start
    assert RedrawPolicy(3).after_end(unfinished) == Move(MoveKind.BACK, unfinished.line_start)


def test_a_move_carries_the_policys_reason():
    piece = _piece(GOOD, BAD)
    move = RedrawPolicy(3).after_line(piece)
    assert move.reason == bar_line_problem(piece.metadata, BAD) and move.reason
    header_only = _piece()
    header_only.in_body, header_only.start = False, SimpleNamespace(body_count=0, in_body=False)
    assert RedrawPolicy(3).after_header(header_only, ended=True).reason == "the model ended the piece in its header"


def test_the_decoders_setup_is_reported_apart_from_the_writing(fixtures):
    """A new batch size builds its decoder first (warm-up); the writing's seconds and speed leave it out."""
    engine = Engine(load_checkpoint(fixtures / "tiny_model.pth").model, pick_runtime("cpu"))
    limits = GenerationLimits(max_patches=4, bar_retries=0)
    first = engine.generate([GenerationRequest(BACH, 0), GenerationRequest(MOZART, 1)], limits=limits)
    again = engine.generate([GenerationRequest(BACH, 2), GenerationRequest(MOZART, 3)], limits=limits)
    assert all(p.warmup_seconds > 0 and p.seconds > 0 for p in first)
    assert all(p.warmup_seconds == 0 and p.seconds > 0 for p in again)  # the same batch size: its decoder is kept
    assert first[0].chars_per_second == first[0].chars / first[0].seconds
    assert set(engine.decoder(2).timings) == {"steps and kernels"}  # on the CPU: no check, no graph
