"""The DPO tab's handlers, called directly: the settings sized to this (CPU) machine on load, the estimate before
starting, a setting out of range said where the estimate is, and a rejected piece that never ended."""

import pytest

from pipelines.dpo.config import sized_settings
from studio.tabs import dpo
from tests.training_data import dpo_reference_dataset, single_thread_torch  # noqa: F401 (autouse)


@pytest.fixture
def backend(tiny_backend):
    dpo_reference_dataset(tiny_backend.workspace, ("bach_bwv66.6",))
    return tiny_backend


def test_on_a_cpu_the_form_takes_the_cpu_sizes_and_says_how_long(backend):
    cpu = sized_settings("cpu")
    values = dict(zip(dpo.SIZED_FIELDS, (update["value"] for update in dpo.sized(backend))))
    assert values == {name: cpu[name] for name in dpo.SIZED_FIELDS}
    assert values["samples"] < sized_settings("cuda")["samples"] and values["max_patches"] > 0
    line = dpo.estimate(backend, model="models/tiny.pth", scorer="builtin", **values)
    assert line.startswith("Estimate: at most about ") and "this CPU" in line and "VRAM" not in line
    assert dpo.estimate(backend, model=None, **values) == ""
    refused = dpo.estimate(backend, model="models/tiny.pth", scorer="builtin", **{**values, "samples": -3})
    assert refused == "No estimate: samples must be at least 0, not -3"


def test_a_rejected_piece_that_never_ended_says_so_where_its_score_would_be(backend):
    run = dpo.DPOSpec(model="models/tiny.pth", dataset="d", run="r", samples=1, generation_batch=1, max_patches=2,
                      steps=1, min_pairs=1, score_final=False, use_ratings=False)
    job = backend.dpo.submit(run)
    done = backend.jobs.wait(job.id, 120)
    while not done.is_finished:
        done = backend.jobs.wait(job.id, 120)
    assert done.state == "failed" and "no preference pairs" in done.error  # the one piece did not end
    chosen, rejected = dpo.pairs(backend, "r", 1)
    assert chosen["choices"] == [] and rejected["choices"] == [
        ("sample_0001: not usable: reached the 2-patch limit without an ending", "sample_0001")]
    score, audio = dpo.listen_piece(backend, "r", 1, "sample_0001")
    assert audio is None and "sample_0001 did not end" in score and "runs/r/iter_1/samples/sample_0001.raw.abc" in score


def test_the_library_box_counts_thumbs_and_pairwise_judgements(backend, chorale):
    from pipelines.service import Generation

    bach = dict(model="models/tiny.pth", prompt="Baroque_Bach, Johann Sebastian_Choral", status="ok", abc=chorale)
    a, b, c = (backend.library.add(Generation(seed=seed, **bach)) for seed in (1, 2, 3))
    held = "The library holds 0 pieces rated up, 0 rated down and 0 pairwise judgements."
    assert dpo.choices(backend)[-1]["info"] == held
    backend.library.rate(a, 1)
    backend.library.prefer(b, c)
    backend.library.prefer(a, c)
    held = "The library holds 1 piece rated up, 0 rated down and 2 pairwise judgements."
    assert dpo.choices(backend)[-1]["info"] == held
    line = dpo.estimate(backend, model="models/tiny.pth", scorer="none", **dict(zip(
        dpo.SIZED_FIELDS, (u["value"] for u in dpo.sized(backend)))))
    assert "no pieces written" in line and line.endswith("1 piece rated up, 0 rated down and 2 pairwise judgements.")
