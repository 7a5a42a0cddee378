"""Two CPU processes (torchrun, gloo) against one: training at the same global batch, DPO's sampling split.

The launches go through benchmarks/multigpu.py's helpers, the same commands a GPU session runs.
"""
from __future__ import annotations

import argparse
import json

import pytest

from pipelines.dpo.config import DPOConfig
from pipelines.dpo.loop import dataset_prompt_list, generate_candidates, shard_requests
from pipelines.errors import DPOError
from pipelines.model.checkpoint import read_checkpoint_file
from pipelines.training import TrainConfig, read_train_log, train
from tests.paths import TINY_MODEL, load_benchmark
from tests.training_data import build_dataset, single_thread_torch  # noqa: F401 (autouse)

TINY = TINY_MODEL
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two processes on two cores



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("multigpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("data"))


@pytest.mark.slow
def test_two_processes_train_like_one_at_the_same_global_batch(tmp_path, bench, data):
    # 4 training pieces: each step, process 0 takes order[0], order[2] and process 1 order[1], order[3];
    # one process of batch 4 takes the same four, and the loss weighting makes the two runs one loss.
    two = tmp_path / "two"
    done = bench.launch(2, bench.train_args(data, two, "micro", 2, 3, "cpu", []), env=ONE_THREAD)
    one = train(TrainConfig(data_dir=data, out_dir=tmp_path / "one", preset="micro", batch_size=4, max_steps=3,
                            epochs=1000, warmup_steps=0, patience=0, dropout=0.0, device="cpu"))
    assert one.status == "max_steps"
    log_two, log_one = read_train_log(two / "train_log.jsonl"), read_train_log(one.log_path)
    steps_two = [r for r in log_two if r["event"] == "step"]
    steps_one = [r for r in log_one if r["event"] == "step"]
    assert [r["step"] for r in steps_two] == [r["step"] for r in steps_one] == [1, 2, 3]
    for a, b in zip(steps_one, steps_two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    assert steps_one[-1]["loss"] < steps_one[0]["loss"] - 0.05  # it trained: the curves are not flat
    evals_two = [r["eval_loss"] for r in log_two if r["event"] == "eval"]
    evals_one = [r["eval_loss"] for r in log_one if r["event"] == "eval"]
    assert evals_two == pytest.approx(evals_one, rel=1e-5)
    state = read_checkpoint_file(one.last_path)["model"]
    state_two = read_checkpoint_file(two / "last.pth")["model"]
    assert max(float((state[k].float() - state_two[k].float()).abs().max()) for k in state) < 1e-4

    # Two processes really ran, and only the first wrote: one record per step, one printed line per step.
    assert [r["processes"] for r in log_two if r["event"] == "start"] == [2]
    assert done.stdout.count("step 1/3") == 1 and done.stdout.count("max_steps after 3 steps") == 1
    saved = read_checkpoint_file(two / "last.pth")["training"]
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2
    assert sorted(p.name for p in two.iterdir()) == ["best.pth", "config.json", "last.pth", "prompts.txt",
                                                     "train_log.jsonl"]


def test_shard_requests_deals_one_process_batches():
    shares = [shard_requests(7, 2, rank, 2) for rank in range(2)]
    assert shares == [[[0, 1], [4, 5]], [[2, 3], [6]]]
    assert shard_requests(5, 5, 0, 1) == [[0, 1, 2, 3, 4]]
    assert shard_requests(3, 4, 1, 2) == []  # fewer batches than processes: the second one idles
    with pytest.raises(DPOError, match="process 2 is not one of 2"):
        shard_requests(5, 2, 2, 2)


@pytest.mark.slow
def test_two_processes_sample_the_pieces_one_process_makes(tmp_path, bench, data):
    out = tmp_path / "two"
    args = argparse.Namespace(
        model=TINY, data=data, samples=5, max_patches=3, batch=2, seed=4, device="cpu")
    bench.launch(2, bench.sample_args(args, 2, out), env=ONE_THREAD)
    gathered = json.loads((out / "pieces.json").read_text(encoding="utf-8"))
    assert gathered["processes"] == 2
    # each process wrote only its own share of the sample files
    assert sorted(p.name for p in (out / "samples_rank1").glob("*.raw.abc")) == ["sample_0003.raw.abc",
                                                                                 "sample_0004.raw.abc"]
    # one process, one batch of five: a piece does not depend on its batch or process
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "one", samples=5, generation_batch=5,
                       max_patches=3, device="cpu", seed=4)
    alone = generate_candidates(TINY, dataset_prompt_list(data), config, 1, tmp_path / "one" / "samples")
    expected = [{"seed": p.seed, "prompt": p.prompt.line, "status": p.status, "raw": p.text} for p in alone]
    assert gathered["pieces"] == expected
    assert len({p["raw"] for p in expected}) == 5  # real, distinct pieces: the comparison can fail
