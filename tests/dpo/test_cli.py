"""`notagen dpo` from the command line: rated pieces only, on the tiny model, on the CPU."""
import json

from pipelines.cli import main
from tests.paths import PREPROCESS, TINY_MODEL
from tests.training_data import build_dataset, single_thread_torch  # noqa: F401 (autouse)

PRE = PREPROCESS
TINY = str(TINY_MODEL)


def test_dpo_command_with_ratings(tmp_path, capsys):
    data = build_dataset(tmp_path / "data", train=("bach_bwv66.6",), eval_=())
    ratings = tmp_path / "ratings.jsonl"
    records = [{"abc": (PRE / "interleaved" / f"{name}.abc").read_text(encoding="utf-8"), "rating": rating,
                "prompt": "Baroque_Bach, Johann Sebastian_Choral"}
               for name, rating in (("bach_bwv66.6", 1), ("haydn_opus74no1_movement3", -1))]
    ratings.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    code = main(["dpo", "--model", TINY, "--data", str(data), "--out", str(tmp_path / "run"), "--samples", "0",
                 "--scorer", "none", "--ratings", str(ratings), "--steps", "2", "--lr", "1e-3", "--device", "cpu",
                 "--min-pairs", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "estimated memory of one DPO step" in out and "1 chosen, 1 rejected, 1 pair, 2 steps" in out
    assert "estimated time: at most about" in out and "finished: model" in out
    assert (tmp_path / "run" / "iter_1" / "model.pth").is_file()

    ratings.write_text('{"abc": "x", "rating": 2}\n', encoding="utf-8")
    code = main(["dpo", "--model", TINY, "--data", str(data), "--out", str(tmp_path / "bad"), "--scorer", "none",
                 "--ratings", str(ratings), "--device", "cpu"])
    assert code == 2 and "ratings.jsonl:1" in capsys.readouterr().err


def test_dpo_command_with_pairwise_judgements_only(tmp_path, capsys):
    data = build_dataset(tmp_path / "data", train=("bach_bwv66.6",), eval_=())
    abc = {name: (PRE / "interleaved" / f"{name}.abc").read_text(encoding="utf-8")
           for name in ("bach_bwv66.6", "bach_bwv7.7", "haydn_opus74no1_movement3")}
    pairs = tmp_path / "pairs.jsonl"
    records = [{"better": abc["bach_bwv66.6"], "worse": abc["haydn_opus74no1_movement3"], "better_name": "a",
                "worse_name": "c", "prompt": "Baroque_Bach, Johann Sebastian_Choral"},
               {"better": abc["bach_bwv7.7"], "worse": abc["haydn_opus74no1_movement3"], "better_name": "b",
                "worse_name": "c", "prompt": "Baroque_Bach, Johann Sebastian_Choral"}]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    code = main(["dpo", "--model", TINY, "--data", str(data), "--out", str(tmp_path / "run"), "--scorer", "none",
                 "--ratings", str(pairs), "--steps", "2", "--lr", "1e-3", "--device", "cpu", "--min-pairs", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no pieces written, up to 2 steps" in out and "2 chosen, 1 rejected, 2 pairs, 2 steps" in out
    paired = json.loads((tmp_path / "run" / "iter_1" / "preference.json").read_text(encoding="utf-8"))["paired"]
    assert paired == [["a", "c"], ["b", "c"]]
