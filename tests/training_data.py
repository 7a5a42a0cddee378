"""A small real dataset for the training tests, built from upstream's augmented fixture files.

Six music21-corpus pieces in 15 keys each, with the studio's four header lines in
front, `train.jsonl` / `eval.jsonl` indexes, `prompts.txt` and `header_choices.json`, laid
out as the dataset pipeline writes them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pipelines.generation.header import count_choices, piece_header_values
from tests.paths import PREPROCESS

FIXTURES = PREPROCESS
KEYS = ("Cb", "C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B")
# piece: (original key as a key signature, period, composer, instrumentation)
PIECES = {
    "bach_bwv66.6": ("A", "Baroque", "Bach, Johann Sebastian", "Choral"),
    "bach_bwv7.7": ("D", "Baroque", "Bach, Johann Sebastian", "Choral"),
    "haydn_opus74no1_movement3": ("C", "Classical", "Haydn, Joseph", "Chamber"),
    "mozart_k155_movement2": ("A", "Classical", "Mozart, Wolfgang Amadeus", "Chamber"),
    "beethoven_opus18no1_movement4": ("F", "Classical", "Beethoven, Ludwig van", "Chamber"),
    "schumann_robert_opus41no1_movement2": ("C", "Romantic", "Schumann, Robert", "Chamber"),
}
TRAIN = ("bach_bwv66.6", "bach_bwv7.7", "haydn_opus74no1_movement3", "mozart_k155_movement2")
EVAL = ("schumann_robert_opus41no1_movement2",)


def build_dataset(root: Path, train: tuple[str, ...] = TRAIN, eval_: tuple[str, ...] = EVAL) -> Path:
    root = Path(root)
    for piece in (*train, *eval_):
        _, period, composer, instrumentation = PIECES[piece]
        header = f"%{period}\n%{composer}\n%{instrumentation}\n%end\n"
        for key in KEYS:
            source = FIXTURES / "augmented" / key / f"{piece}_{key}.abc"
            target = root / "augmented" / key / f"{piece}_{key}.abc"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(header + source.read_text(encoding="utf-8"), encoding="utf-8")
    for split, names in (("train", train), ("eval", eval_)):
        lines = [json.dumps({"path": str(root / "augmented" / name), "key": PIECES[name][0]}) for name in names]
        (root / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    prompts = sorted({"_".join(PIECES[name][1:]) for name in (*train, *eval_)})
    (root / "prompts.txt").write_text("".join(p + "\n" for p in prompts), encoding="utf-8")
    choices = count_choices(("_".join(PIECES[name][1:]), piece_header_values(
        (root / "augmented" / key / f"{name}_{key}.abc").read_text(encoding="utf-8") for key in KEYS))
        for name in (*train, *eval_))
    (root / "header_choices.json").write_text(json.dumps({"version": 1, "prompts": choices}), encoding="utf-8")
    return root


def dpo_reference_dataset(workspace, pieces: tuple[str, ...], name: str = "d") -> Path:
    """A workspace dataset with only what DPO reads: `prompts.txt` (the pieces' prompts) and the pieces'
    interleaved files, the references a near-copy is measured against."""
    folder = workspace.area("datasets") / name
    (folder / "interleaved").mkdir(parents=True)
    (folder / "manifest.json").write_text('{"pieces": {}}', encoding="utf-8")
    prompts = sorted({"_".join(PIECES[piece][1:]) for piece in pieces})
    (folder / "prompts.txt").write_text("".join(p + "\n" for p in prompts), encoding="utf-8")
    for piece in pieces:
        shutil.copy(FIXTURES / "interleaved" / f"{piece}.abc", folder / "interleaved")
    return folder


@pytest.fixture(scope="module", autouse=True)
def single_thread_torch():
    """The training tests' models are tiny: one intra-op thread is as fast, and does not
    collapse when other processes share the cores (threads spinning for a busy core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
