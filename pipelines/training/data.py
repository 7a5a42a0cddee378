"""Training data: the dataset's split index, upstream's key draw, epoch order and batches.

A dataset folder holds `train.jsonl` / `eval.jsonl` (lines `{"path": ..., "key": ...}`)
and `augmented/<KEY>/<piece>_<KEY>.abc` for the 15 key spellings. Each epoch every
training piece is read in one key drawn around its original key as upstream's
fine-tuning does (offsets -3..+3 semitones with weights 1,2,3,4,3,2,1 over 16;
pitch class 1 is Db 80% / C# 20%, 11 is B 80% / Cb 20%, 6 is F# or Gb evenly),
or in its original key only. Long pieces are cut by the tokenizer.

Everything random here is a pure function of (seed, epoch, piece), so an
interrupted run resumes with exactly the data it would have seen, and every
process of a multi-GPU run agrees on the order without talking to the others.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from abctoolkit.transpose import Key2Mode

from pipelines.abc.prompts import Prompt, parse_prompt, read_prompts
from pipelines.abc.tokenizer import Patchilizer, pad_patches
from pipelines.errors import AbcError, PromptError, TrainingError
from pipelines.files import read_text, too_large

KEYS = ("Cb", "C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B")
PITCH_CLASS = {"Cb": 11, "C": 0, "C#": 1, "Db": 1, "D": 2, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6,
               "G": 7, "Ab": 8, "A": 9, "Bb": 10, "B": 11}
# The one spelling of each pitch class without an enharmonic choice.
_SPELLING = {0: "C", 2: "D", 3: "Eb", 4: "E", 5: "F", 7: "G", 8: "Ab", 9: "A", 10: "Bb"}
# (spelling, probability of it, other spelling) for pitch classes with two names.
_ENHARMONIC = {1: ("Db", 0.8, "C#"), 11: ("B", 0.8, "Cb"), 6: ("F#", 0.5, "Gb")}
KEY_OFFSETS = (-3, -2, -1, 0, 1, 2, 3)
KEY_WEIGHTS = (1, 2, 3, 4, 3, 2, 1)  # over 16
_MODE_TO_KEY = {mode: key for key, modes in Key2Mode.items() for mode in modes}


def read_abc(path: Path) -> str:
    try:
        if problem := too_large(path):
            raise AbcError(problem)
        text = read_text(path)
    except FileNotFoundError:
        raise AbcError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise AbcError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if "V:" not in text and "|" not in text:
        raise AbcError(f"{path}: no tune body found (no bars or voices)")
    return text


def dataset_files(data_dir: Path, split: str = "eval") -> list[Path]:
    """The pieces of a dataset split (`eval.jsonl`), with their headers, in the original key."""
    return [piece_file(Path(data_dir), piece, piece.key) for piece in read_split(Path(data_dir), split)]


def encode_for_eval(patchilizer: Patchilizer, text: str, patch_length: int) -> list[list[int]]:
    """A piece as evaluation sees it: cut as in training when too long, always with the same seed."""
    return patchilizer.encode_train(text, patch_length, rng=random.Random(0))


@dataclass(frozen=True)
class TrainPiece:
    stem: str  # the piece's file name without key suffix
    key: str  # its original key, one of KEYS


def major_key(key: str) -> str:
    """The key-signature name (one of KEYS) of a key or mode such as 'F#min' or 'Ddor'."""
    if key in PITCH_CLASS:
        return key
    try:
        return _MODE_TO_KEY[key]
    except KeyError:
        raise TrainingError(f"unknown key {key!r}; expected one of {', '.join(KEYS)} or a mode like 'F#min'") from None


def choose_key(original: str, rng: random.Random) -> str:
    """Upstream's draw of the key a piece is read in this epoch."""
    index = PITCH_CLASS[major_key(original)]
    offset = rng.choices(KEY_OFFSETS, weights=KEY_WEIGHTS)[0]
    target = (index + offset) % 12
    if target in _ENHARMONIC:
        first, p, other = _ENHARMONIC[target]
        return first if rng.random() < p else other
    return _SPELLING[target]


def read_split(data_dir: Path, split: str) -> list[TrainPiece]:
    """The pieces of `train` or `eval`; a missing or empty eval split is an empty list."""
    index = Path(data_dir) / f"{split}.jsonl"
    if not index.is_file():
        if split == "eval":
            return []
        raise TrainingError(f"{data_dir}: no {index.name}; build the dataset with `notagen dataset build` first")
    pieces = []
    for n, line in enumerate(read_text(index).splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            pieces.append(TrainPiece(stem=Path(entry["path"]).name, key=major_key(str(entry["key"]))))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise TrainingError(f"{index}:{n}: not a dataset index line ({e})") from None
        except TrainingError as e:
            raise TrainingError(f"{index}:{n}: {e}") from None
    return pieces


def piece_file(data_dir: Path, piece: TrainPiece, key: str) -> Path:
    """Resolved by name under the dataset folder, so a moved dataset still works."""
    return Path(data_dir) / "augmented" / key / f"{piece.stem}_{key}.abc"


def check_files(data_dir: Path, pieces: list[TrainPiece], all_keys: bool) -> None:
    """Fail before training starts, naming every file that is missing."""
    missing = []
    for piece in pieces:
        keys = KEYS if all_keys else (piece.key,)
        missing += [str(piece_file(data_dir, piece, k)) for k in keys if not piece_file(data_dir, piece, k).is_file()]
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise TrainingError(f"{data_dir}: {len(missing)} dataset file(s) missing:\n  {shown}{more}")


def header_prompt(text: str, path: Path) -> Prompt:
    """The Period_Composer_Instrumentation of a training file's first three lines."""
    lines = text.split("\n")[:4]
    if len(lines) < 4 or lines[3] != "%end" or not all(line.startswith("%") for line in lines[:3]):
        raise TrainingError(f"{path}: does not start with the %Period / %Composer / %Instrumentation / %end lines")
    try:
        return Prompt(lines[0][1:], lines[1][1:], lines[2][1:])
    except PromptError as e:
        raise TrainingError(f"{path}: {e}") from None


def dataset_prompts(data_dir: Path, pieces: list[TrainPiece]) -> list[Prompt]:
    """The dataset's prompt vocabulary: its prompts.txt, or else the headers of its pieces."""
    listed = Path(data_dir) / "prompts.txt"
    if listed.is_file():
        return read_prompts(listed)
    found = set()
    for piece in pieces:
        path = piece_file(data_dir, piece, piece.key)
        found.add(header_prompt(read_abc(path), path))
    return sorted(found)


def union_prompts(*groups) -> list[Prompt]:
    """Prompt lines or Prompt objects, merged and sorted."""
    merged = set()
    for group in groups:
        for item in group:
            merged.add(item if isinstance(item, Prompt) else parse_prompt(item))
    return sorted(merged)


def piece_rng(seed: int, epoch: int, index: int) -> random.Random:
    return random.Random(f"notagen-train:{seed}:{epoch}:{index}")


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(f"notagen-order:{seed}:{epoch}").shuffle(order)
    return order


def shard(order: list[int], rank: int, world: int) -> list[int]:
    """This process's share; every process gets the same count so they step together."""
    per_rank = len(order) // world
    return order[rank::world][:per_rank]


def epoch_groups(order: list[int], batch_size: int, grad_accum: int) -> list[list[list[int]]]:
    """Optimizer steps of micro-batches of piece indices; the last ones may be short."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i:i + grad_accum] for i in range(0, len(batches), grad_accum)]


@dataclass
class PieceEncoder:
    """Reads and encodes a training piece for a given epoch."""

    data_dir: Path
    patchilizer: Patchilizer
    patch_length: int
    seed: int
    key_augment: bool

    def encode(self, piece: TrainPiece, index: int, epoch: int) -> list[list[int]]:
        rng = piece_rng(self.seed, epoch, index)
        key = choose_key(piece.key, rng) if self.key_augment else piece.key
        path = piece_file(self.data_dir, piece, key)
        try:
            text = read_abc(path)
        except AbcError as e:
            raise TrainingError(str(e)) from None
        return self.patchilizer.encode_train(text, self.patch_length, rng=rng, as_array=True)

    def encode_eval(self, piece: TrainPiece) -> list[list[int]]:
        """Original key, long pieces cut with a fixed seed (as `notagen eval` does)."""
        path = piece_file(self.data_dir, piece, piece.key)
        try:
            text = read_abc(path)
        except AbcError as e:
            raise TrainingError(str(e)) from None
        return encode_for_eval(self.patchilizer, text, self.patch_length)


def count_target_chars(patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Chars the loss predicts: every non-pad char of every real patch after the first."""
    real = masks[:, 1:].bool()
    return (patches[:, 1:][real] != 0).sum()


class RunBatches(torch.utils.data.Dataset):
    """Micro-batch k of one process's run, encoded and padded: (patches, masks, target chars).

    Micro-batch k is batch k % per_epoch of epoch k // per_epoch of this process's shard,
    a pure function of (seed, epoch, rank), so worker processes can prepare the next
    batches while the GPU trains on this one, and a resumed run starts at its position.
    """

    def __init__(self, encoder: PieceEncoder, pieces: list[TrainPiece], rank: int, world: int, batch_size: int):
        self.encoder, self.pieces = encoder, pieces
        self.rank, self.world, self.batch_size = rank, world, batch_size
        self.per_epoch = len(self.epoch_batches(0))
        self._cached: tuple[int, list[list[int]]] | None = None

    def epoch_shard(self, epoch: int) -> list[int]:
        """This process's pieces of `epoch`, in order."""
        return shard(epoch_order(len(self.pieces), self.encoder.seed, epoch), self.rank, self.world)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        return [group[0] for group in epoch_groups(self.epoch_shard(epoch), self.batch_size, 1)]

    def __len__(self) -> int:  # unbounded in principle; the loop asks for what it needs
        return 2 ** 62

    def __getitem__(self, k: int):
        epoch, i = divmod(k, self.per_epoch)
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self.epoch_batches(epoch))
        batch = self._cached[1][i]
        encoded = [self.encoder.encode(self.pieces[j], j, epoch) for j in batch]
        patches, masks = pad_patches(encoded, self.encoder.patchilizer.patch_size)
        return patches, masks, count_target_chars(patches, masks)


def data_workers(requested: int, device: torch.device) -> int:
    """Worker processes that encode batches ahead: `requested`, or (-1) a few on a GPU, none on CPU."""
    if requested >= 0:
        return requested
    return 0 if device.type == "cpu" else max(0, min(4, (os.cpu_count() or 1) - 1))


def batch_stream(dataset: RunBatches, start: int, workers: int, pin: bool):
    """Iterator over micro-batches start, start + 1, ... (prefetched by `workers` processes).

    The loader draws its worker seed from its own generator: from the global one it would
    shift the dropout draws of a resumed run. (Encoding uses no global randomness.)
    """
    return iter(torch.utils.data.DataLoader(dataset, batch_size=None, sampler=range(start, 2 ** 62),
                                            num_workers=workers, pin_memory=pin,
                                            prefetch_factor=4 if workers else None,
                                            generator=torch.Generator().manual_seed(0)))
