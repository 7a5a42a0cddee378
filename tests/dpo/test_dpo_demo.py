"""benchmarks/dpo_demo.py's plumbing on the CPU with the tiny model: its pieces never end, so the run stops at the
first iteration, and the script says why and still writes the starting model's figures. (Its happy path is the
demo model's `--quick` run, about a minute and a half: not a test.)"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from tests.paths import PREPROCESS, TINY_MODEL, load_benchmark
from tests.training_data import single_thread_torch  # noqa: F401 (autouse)


def seeds_in(scores: Path) -> list[str]:
    with scores.open(encoding="utf-8") as f:
        return [row["seed"] for row in csv.DictReader(f)]


def test_the_script_measures_the_start_and_says_why_dpo_did_not_run(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "interleaved").mkdir(parents=True)
    (data / "prompts.txt").write_text("Baroque_Bach, Johann Sebastian_Choral\n", encoding="utf-8")
    shutil.copy(PREPROCESS / "interleaved" / "bach_bwv66.6.abc", data / "interleaved")
    out = tmp_path / "figures.json"
    code = load_benchmark("dpo_demo").main(["--quick", "--model", str(TINY_MODEL), "--data", str(data), "--out",
                                  str(tmp_path / "run"), "--json", str(out), "--samples", "2", "--max-patches", "3"])
    assert code == 1
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["status"] == "failed" and record["start"]["pieces"] == 2 and record["start"]["usable"] == 0
    assert "all 2 pieces reached the 3-patch limit without an ending" in record["message"]
    printed = capsys.readouterr().out
    assert "the starting model: 2 pieces: 0 ended (0%)" in printed and "DPO did not run" in printed
    # the fresh sample's seeds are none an iteration uses (block K + 1 = 3; iteration 1 drew seeds 2 and 3)
    seeds, drawn = (seeds_in(tmp_path / "run" / folder / "scores.csv") for folder in ("measure_start", "run/iter_1"))
    assert seeds == ["6", "7"] and drawn == ["2", "3"]
