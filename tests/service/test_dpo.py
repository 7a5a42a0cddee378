"""The DPO service: a run's stages and progress as the job shows them, its figures read back, the settings sized
to the machine with an estimate, and "no preference pairs" saying why. Tiny model, CPU."""

import pytest

from pipelines.dpo.config import sized_settings
from pipelines.errors import DPOError
from pipelines.service import DPOSpec
from pipelines.service.dpo import SETTINGS
from pipelines.service.jobs import JobContext
from pipelines.service.library import Generation
from tests.paths import PREPROCESS
from tests.training_data import dpo_reference_dataset, single_thread_torch  # noqa: F401 (autouse)

BACH = "Baroque_Bach, Johann Sebastian_Choral"


class Recorded(JobContext):
    """A job context that keeps every line said and every progress reported, in order (the real one keeps the
    last only)."""

    def __init__(self, params: dict):
        self.params, self.job_id, self.events = params, "test", []

    def say(self, message: str) -> None:
        self.events.append(("say", message))

    def progress(self, done: int, total: int) -> None:
        self.events.append(("progress", done, total))

    def should_stop(self) -> bool:
        return False


@pytest.fixture
def backend(tiny_backend):
    dpo_reference_dataset(tiny_backend.workspace, ("bach_bwv66.6", "bach_bwv7.7"))
    return tiny_backend


def spec(**changes) -> DPOSpec:
    settings = dict(model="models/tiny.pth", dataset="d", run="r", samples=2, generation_batch=2, max_patches=3,
                    steps=2, min_pairs=1, score_final=False) | changes
    return DPOSpec(**settings)


def add(backend, name: str) -> int:
    abc = "X:1\n" + (PREPROCESS / "interleaved" / f"{name}.abc").read_text(encoding="utf-8")
    return backend.library.add(Generation(model="models/tiny.pth", prompt=BACH, seed=1, status="ok", raw=abc,
                                          abc=abc))


def rate(backend, name: str, rating: int):
    backend.library.rate(add(backend, name), rating)


def test_each_stage_says_what_it_does_and_counts_from_zero(backend):
    rate(backend, "bach_bwv66.6", 1)  # the generated pieces do not end: they are rejected, this one is chosen
    ctx = Recorded(spec(keep_best=True).__dict__)
    result = backend.dpo.run(ctx)
    said = [e[1] for e in ctx.events if e[0] == "say"]
    assert said[0] == "iteration 1 of 1: writing 2 pieces of up to 3 patches"
    assert said[1] == "iteration 1 of 1: 2 pieces: 0 ended (0%), 0 usable (0%), no mean score"
    assert said[2] == "iteration 1 of 1: learning from 2 pairs (1 chosen, 2 rejected pieces), up to 2 steps"
    assert said[3] == "the final model: writing 2 pieces of up to 3 patches"  # keep-best measures the last model
    # each stage's progress starts at 0 and reaches its own total
    stages = []
    for event in ctx.events:
        if event[0] == "say":
            stages.append([])
        elif stages:
            stages[-1].append(event[1:])
    assert stages[0][0] == (0, 6) and stages[0][-1] == (6, 6)  # 2 pieces x 3 patches
    assert stages[2] == [(0, 2), (1, 2), (2, 2)]
    assert result["status"] == "finished" and result["final_model"] == "models/tiny.pth"  # no model did better
    report = backend.dpo.report("r")
    assert report.status == "finished" and "kept the starting model" in report.message
    assert [(m.label, m.pieces, m.usable_share, m.pairs) for m in report.models] == [
        ("starting model", 2, 0.0, None), ("after iteration 1", 2, 0.0, 2)]
    reasons = backend.dpo.pairs("r", 1).reasons
    assert reasons["sample_0001"] == "not usable: reached the 3-patch limit without an ending"
    with pytest.raises(DPOError, match="sample_0001 did not end or could not be post-processed"):
        backend.dpo.piece("r", 1, "sample_0001")


def test_the_report_lists_the_last_model_unmeasured_without_a_final_sample(backend):
    rate(backend, "bach_bwv66.6", 1)
    backend.dpo.run(Recorded(spec().__dict__))
    models = backend.dpo.report("r").models
    assert [(m.label, m.pieces, m.usable_share, m.pairs) for m in models] == [
        ("starting model", 2, 0.0, None), ("after iteration 1", 0, None, 2)]


def test_no_preference_pairs_says_every_piece_hit_the_patch_limit(backend):
    job = backend.dpo.submit(spec(use_ratings=False))
    done = backend.jobs.wait(job.id, 120)
    while not done.is_finished:
        done = backend.jobs.wait(job.id, 120)
    assert done.state == "failed"
    assert done.error.startswith("iteration 1 of 1: no preference pairs, fewer than the minimum of 1 (minimum "
                                 "pairs): all 2 pieces reached the 3-patch limit without an ending; none ended, "
                                 "so none can be chosen; no model was made")


def test_the_settings_are_sized_to_the_machine_with_an_estimate(backend):
    assert backend.dpo.device_type() == "cpu"
    defaults = backend.dpo.defaults()
    cpu = sized_settings("cpu")
    assert defaults == {name: cpu[name] for name in SETTINGS} and defaults["samples"] == 8
    line = backend.dpo.estimate("models/tiny.pth")
    assert line.startswith("Estimate: at most about ") and "on this CPU: 1 x 8 pieces of up to 160 patches" in line
    assert "VRAM" not in line  # a CPU machine has none
    longer = backend.dpo.estimate("models/tiny.pth", iterations=3, samples=64, max_patches=0, score_final=True)
    assert "4 x 64 pieces with no patch limit" in longer
    with pytest.raises(Exception, match="samples must be at least 0"):
        backend.dpo.estimate("models/tiny.pth", samples=-1)


def test_the_library_s_pairwise_judgements_alone_are_the_pairs_without_a_scorer(backend):
    no_scorer = spec(scorer="none", steps=4)
    with pytest.raises(DPOError, match="learns only from your judgements.* holds 0 pieces rated up, 0 rated down "
                                       "and 0 pairwise judgements"):
        backend.dpo.submit(no_scorer)
    a, b, c = (add(backend, name) for name in ("bach_bwv66.6", "bach_bwv7.7", "haydn_opus74no1_movement3"))
    backend.library.prefer(c, a)
    backend.library.prefer(a, c)  # judged again the other way: the latest stands
    backend.library.prefer(b, c)
    assert backend.dpo.judgements_line() == "0 pieces rated up, 0 rated down and 2 pairwise judgements"
    line = backend.dpo.estimate("models/tiny.pth", scorer="none")
    assert "no pieces written" in line and line.endswith(
        "Without a scorer it learns from your library's 0 pieces rated up, 0 rated down and 2 pairwise judgements.")
    ctx = Recorded(no_scorer.__dict__)
    result = backend.dpo.run(ctx)
    said = [e[1] for e in ctx.events if e[0] == "say"]
    assert said[0] == "iteration 1 of 1: learning from 2 pairs (2 chosen, 1 rejected pieces), up to 4 steps"
    assert result["status"] == "finished" and result["final_model"] == "runs/r/iter_1/model.pth"
    pairs = backend.dpo.pairs("r", 1)
    assert (pairs.chosen, pairs.rejected) == ([f"library-{a}", f"library-{b}"], [f"library-{c}"])
    assert pairs.reasons[f"library-{c}"] == f"judged worse than library-{a} by the user; judged worse than library-{b}"
    assert backend.dpo.piece("r", 1, f"library-{b}") == backend.library.get(b).abc
