"""Build a training dataset from score files: convert, clean, augment, annotate, index.

Output folder layout (upstream's fine-tuning script reads it as is):

    interleaved/<piece>.abc              cleaned, interleaved, original key (no header)
    augmented/<KEY>/<piece>_<KEY>.abc    header + transposed, rest-reduced text, 15 keys
    train.jsonl, eval.jsonl              {"path": "<OUT>/augmented/<piece>", "key": <KEY of the original key>}
    prompts.txt                          the dataset's Period_Composer_Instrumentation lines
    header_choices.json                  per prompt line, how many pieces use each meter and key (every
                                         augmented key): training copies it into the model card
    manifest.json                        per piece: source, key, size, annotation, suggestion, warnings, split,
                                         and the labels set by re-annotating ("annotated"), which a rebuild keeps
    report.json                          per input file: status, failing stage and reason, voices, bars, key, seconds
    cache/<piece>.json                   conversion stamp: source hash and facts, so a rebuild skips unchanged files

Each file is converted in a worker process with a time limit; a failure names its
stage and reason and the other files go on. A piece enters the index only when all
of its files were written. Every write is atomic.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from unidecode import unidecode

from pipelines.abc.prompts import Prompt, write_prompts
from pipelines.abc.report import report_piece
from pipelines.dataset.annotate import (
    Labels,
    annotate,
    clean_labels,
    header_text,
    labels_for,
    notagenx_vocabulary,
    read_score_info,
    replace_header,
    vocabulary_warnings,
)
from pipelines.dataset.config import DatasetConfig
from pipelines.dataset.convert import SCORE_SUFFIXES, StageError, read_musicxml, xml_to_abc
from pipelines.dataset.preprocess import KEYS, preprocess_abc
from pipelines.dataset.workers import TaskFailure, run_tasks
from pipelines.errors import DatasetError
from pipelines.files import NAME_LIMIT, atomic_write_text, claim_name, read_text, shorten, too_large
from pipelines.generation.header import count_choices, piece_header_values

# Bump when the converted text for the same input would change; older stamps are then converted again.
PIPELINE_VERSION = 2  # 2: stamps record the share of unaligned bars
HEADER_CHOICES = "header_choices.json"


@dataclass
class FileResult:
    source: str
    piece: str
    # "ok" (converted now), "cached" (unchanged since the last build), "excluded" (converted, left out
    # of the index: see DatasetConfig.max_unaligned_share), "failed", "cancelled"
    status: str
    stage: str | None = None  # where it failed: read, import, xml2abc, clean, check, key, interleave, transpose, ...
    reason: str | None = None
    voices: int | None = None
    bars: int | None = None
    key: str | None = None
    seconds: float = 0.0
    lossy: bool = False  # converted to MusicXML by music21 from another format

    @property
    def indexed(self) -> bool:
        return self.status in ("ok", "cached")


@dataclass
class BuildReport:
    out_dir: Path
    files: list[FileResult]
    train: list[str]  # piece names
    eval: list[str]
    seconds: float
    cancelled: bool = False

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def empty(self) -> bool:
        """Finished without a single usable piece: the dataset was left as it was."""
        return not self.cancelled and not (self.train or self.eval)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def summary(self) -> str:
        if self.empty:
            reasons = "; ".join(f.reason if (f.reason or "").startswith(Path(f.source).name)
                                else f"{Path(f.source).name}: {f.reason}"
                                for f in self.files if f.status in ("failed", "excluded"))
            return (f"{self.out_dir}: nothing built: no piece could be converted from the {len(self.files)} "
                    f"file(s)" + (f" ({reasons})" if reasons else ""))
        done = "cancelled" if self.cancelled else "built"
        return (f"{self.out_dir}: {done} in {self.seconds:.1f} s: {self.count('ok')} converted, "
                f"{self.count('cached')} unchanged, {self.count('failed')} failed"
                + (f", {self.count('excluded')} left out (voices misaligned)" if self.count("excluded") else "")
                + (f", {self.count('cancelled')} not reached" if self.cancelled else "")
                + f"; {len(self.train)} train / {len(self.eval)} eval pieces")


@dataclass
class PieceTask:
    source: str
    piece: str
    sha256: str
    out_dir: str
    labels: Labels


# ---------------------------------------------------------------- inputs

def piece_name(relative: Path) -> str:
    """A file-system-safe ASCII name for a score: its path below the source folder, '/' as '_', no suffix;
    at most NAME_LIMIT characters (a longer one keeps its start and a hash of the rest), so the dataset's
    paths stay well within Windows' 260 characters however deep the source folders are."""
    name = "_".join(relative.with_suffix("").parts)
    name = re.sub(r"[^A-Za-z0-9.,+-]+", "_", unidecode(name)).strip("._")
    return shorten(name, NAME_LIMIT) or "piece"


def collect_sources(sources: list[str | os.PathLike]) -> list[tuple[Path, str]]:
    """(score file, piece name) for every file given and every score file under every folder given."""
    found: list[tuple[Path, str]] = []
    for source in map(Path, sources):
        if source.is_file():
            found.append((source, piece_name(Path(source.name))))
        elif source.is_dir():
            for path in sorted(source.rglob("*")):
                if path.is_file() and path.suffix.lower() in SCORE_SUFFIXES and not path.name.startswith("."):
                    found.append((path, piece_name(path.relative_to(source))))
        else:
            raise DatasetError(f"{source}: no such file or folder")
    if not found:
        raise DatasetError(f"no score files ({', '.join(SCORE_SUFFIXES)}) in {', '.join(map(str, sources))}")
    used: set[str] = set()
    # The same name from another folder or format, or in other capitals (one file on Windows): keep both, apart.
    return [(path.resolve(), claim_name(name, used, f"_{path.suffix.lstrip('.').lower()}")) for path, name in found]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- output paths

def interleaved_path(out_dir: Path, piece: str) -> Path:
    return Path(out_dir) / "interleaved" / f"{piece}.abc"


def augmented_path(out_dir: Path, piece: str, key: str) -> Path:
    return Path(out_dir) / "augmented" / key / f"{piece}_{key}.abc"


def piece_paths(out_dir: Path, piece: str) -> list[Path]:
    return [interleaved_path(out_dir, piece)] + [augmented_path(out_dir, piece, k) for k in KEYS]


def stamp_path(out_dir: Path, piece: str) -> Path:
    return Path(out_dir) / "cache" / f"{piece}.json"


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable {what} ({e})") from None


def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- one piece (runs in a worker)

def convert_piece(task: PieceTask) -> dict:
    """Convert one score and write all its files; a dict for the report and the cache stamp."""
    started = time.perf_counter()
    result = {"source": task.source, "piece": task.piece, "sha256": task.sha256}
    try:
        score = read_musicxml(Path(task.source))
        result["lossy"] = score.lossy
        annotation = annotate(read_score_info(score.data), task.labels)
        abc = xml_to_abc(score.data, task.piece)
        piece = preprocess_abc(abc)
    except StageError as e:
        result.update(status="failed", stage=e.stage, reason=e.reason,
                      seconds=round(time.perf_counter() - started, 3))
        return result
    out_dir = Path(task.out_dir)
    header = header_text(annotation.prompt)
    alignment = report_piece(piece.interleaved)
    result["header"] = piece_header_values(piece.augmented.values())
    atomic_write_text(interleaved_path(out_dir, task.piece), piece.interleaved)
    for key, text in piece.augmented.items():
        atomic_write_text(augmented_path(out_dir, task.piece, key), header + text)
    result.update(status="ok", version=PIPELINE_VERSION, key=piece.key, key_signature=piece.key_signature,
                  voices=piece.voices, bars=piece.bars, unaligned_share=round(alignment.faulty_share, 4),
                  first_fault=alignment.findings[0] if alignment.findings else None, prompt=asdict(annotation.prompt),
                  suggested=asdict(annotation.suggested), seconds=round(time.perf_counter() - started, 3))
    _write_json(stamp_path(out_dir, task.piece), result)
    return result


# ---------------------------------------------------------------- the build

def _cached_stamp(out_dir: Path, piece: str, sha256: str) -> dict | None:
    stamp = _read_json(stamp_path(out_dir, piece), "cache stamp")
    if (not stamp or stamp.get("version") != PIPELINE_VERSION or stamp.get("sha256") != sha256
            or stamp.get("status") != "ok" or not all(p.is_file() for p in piece_paths(out_dir, piece))):
        return None
    return stamp


def rewrite_headers(out_dir: Path, piece: str, prompt: Prompt) -> None:
    """Put `prompt`'s header on all 15 augmented files of a piece (no conversion)."""
    for key in KEYS:
        path = augmented_path(out_dir, piece, key)
        try:
            text = read_text(path)
        except FileNotFoundError:
            raise DatasetError(f"{path}: missing; build the dataset again") from None
        atomic_write_text(path, replace_header(text, prompt, path))


def _kept_prompt(given: Labels, current: Labels) -> Prompt:
    """A converted piece's prompt: the labels given, else what its header says now (earlier re-annotations stay)."""
    chosen = given.over(current)
    return Prompt(chosen.period, chosen.composer, chosen.instrumentation)


def split_pieces(pieces: list[str], eval_split: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, eval) piece names: a seeded shuffle of the sorted names, the first share held out."""
    order = sorted(pieces)
    random.Random(seed).shuffle(order)
    n_eval = round(eval_split * len(order))
    if eval_split > 0 and len(order) >= 2:
        n_eval = min(max(n_eval, 1), len(order) - 1)
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def _result_from(record: dict, status: str) -> FileResult:
    return FileResult(source=record["source"], piece=record["piece"], status=status, stage=record.get("stage"),
                      reason=record.get("reason"), voices=record.get("voices"), bars=record.get("bars"),
                      key=record.get("key"), seconds=record.get("seconds", 0.0), lossy=record.get("lossy", False))


def build_dataset(sources: list[str | os.PathLike], out_dir: str | os.PathLike, config: DatasetConfig | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> BuildReport:
    """Turn score files and folders into a NotaGen training dataset in `out_dir` (see the module docstring).

    `on_progress(done, total)` is called as files finish. `should_stop()` cancels:
    finished pieces keep their cache stamps, the index is left as it was, and the
    report says cancelled.
    """
    return build_named(collect_sources(sources), out_dir, config, on_progress, should_stop)


def build_named(inputs: list[tuple[Path, str]], out_dir: str | os.PathLike, config: DatasetConfig | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> BuildReport:
    """build_dataset for (score file, piece name) pairs chosen by the caller."""
    config = config or DatasetConfig()
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    seen: dict[str, str] = {}
    for _, piece in inputs:
        if len(piece) > NAME_LIMIT:
            raise DatasetError(f"piece name {piece!r} is over {NAME_LIMIT} characters")
        if piece.casefold() in seen:
            raise DatasetError(f"two scores are named {seen[piece.casefold()]!r} and {piece!r}; names that differ "
                               "only in capitals are one file on Windows")
        seen[piece.casefold()] = piece
    notagenx_vocabulary()  # fail early if the vocabulary is missing
    out_dir.mkdir(parents=True, exist_ok=True)
    total = len(inputs)
    annotated = _annotated_labels(out_dir)
    records: dict[str, dict] = {}
    statuses: dict[str, str] = {}
    tasks: list[PieceTask] = []
    done = 0

    for path, piece in inputs:
        # labels saved by re-annotating win over those the build is given (for a piece, its file or all)
        given = clean_labels(Labels(**annotated.get(piece, {})).over(
            labels_for(config.piece_labels, piece, path).over(config.labels)))
        if problem := too_large(path):
            records[piece], statuses[piece] = {"source": str(path), "piece": piece, "status": "failed",
                                               "stage": "read", "reason": problem}, "failed"
            done += 1
            if on_progress:
                on_progress(done, total)
            continue
        sha = file_sha256(path)
        stamp = _cached_stamp(out_dir, piece, sha) if config.use_cache else None
        if stamp is None:
            tasks.append(PieceTask(str(path), piece, sha, str(out_dir), given))
            continue
        prompt = _kept_prompt(given, Labels(**stamp["prompt"]))
        if asdict(prompt) != stamp["prompt"]:
            rewrite_headers(out_dir, piece, prompt)
            stamp["prompt"] = asdict(prompt)
            _write_json(stamp_path(out_dir, piece), stamp)
        stamp["source"] = str(path)
        if "header" not in stamp:  # converted before the meters and keys were recorded
            stamp["header"] = piece_header_values(
                augmented_path(out_dir, piece, key).read_text(encoding="utf-8") for key in KEYS)
            _write_json(stamp_path(out_dir, piece), stamp)
        records[piece], statuses[piece] = stamp, "cached"
        done += 1
        if on_progress:
            on_progress(done, total)

    cancelled = False
    if config.workers == 0:
        outcomes = ((i, convert_piece(task)) for i, task in enumerate(tasks))
    else:
        outcomes = run_tasks(convert_piece, tasks, config.workers, config.time_limit_s, should_stop)
    for index, outcome in outcomes:
        task = tasks[index]
        if isinstance(outcome, TaskFailure):
            outcome = {"source": task.source, "piece": task.piece, "status": "failed",
                       "stage": "convert", "reason": outcome.message,
                       "seconds": config.time_limit_s if outcome.kind == "timeout" else 0.0}
        records[task.piece], statuses[task.piece] = outcome, outcome["status"]
        done += 1
        if on_progress:
            on_progress(done, total)
        if config.workers == 0 and should_stop and should_stop():
            break
    for task in tasks:
        if task.piece not in records:
            cancelled = True
            records[task.piece] = {"source": task.source, "piece": task.piece}
            statuses[task.piece] = "cancelled"

    files = [_result_from(records[piece], statuses[piece]) for _, piece in inputs]
    for result in files:
        record = records[result.piece]
        if result.indexed and record.get("unaligned_share", 0) > config.max_unaligned_share:
            result.status, result.stage = "excluded", "align"
            result.reason = (f"voices differ in {record['unaligned_share']:.1%} of the bars, over the "
                             f"{config.max_unaligned_share:.1%} allowed (first: {record['first_fault']})")
    for result in files:
        if result.status == "failed":  # nothing partial stays behind
            for path in piece_paths(out_dir, result.piece) + [stamp_path(out_dir, result.piece)]:
                path.unlink(missing_ok=True)
    indexed = {f.piece: records[f.piece] for f in files if f.indexed}
    train, held_out = split_pieces(list(indexed), config.eval_split, config.seed)
    report = BuildReport(out_dir, files, train, held_out, round(time.perf_counter() - started, 3), cancelled)
    if not cancelled and not report.empty:  # an empty build leaves the dataset as it was
        _write_index(out_dir, indexed, train, held_out, annotated)
    _write_report(report)
    return report


def _annotated_labels(out_dir: Path) -> dict[str, dict]:
    """The labels set by re-annotating, by piece, from the dataset's current manifest (empty: none yet)."""
    pieces = load_manifest(out_dir, missing_ok=True)["pieces"]
    return {piece: dict(entry["annotated"]) for piece, entry in pieces.items() if entry.get("annotated")}


def _manifest_entry(record: dict, split: str, annotated: dict) -> dict:
    prompt = Prompt(**record["prompt"])
    return {"source": record["source"], "sha256": record["sha256"], "lossy": record.get("lossy", False),
            "key": record["key"], "key_signature": record["key_signature"], "voices": record["voices"],
            "bars": record["bars"], "period": prompt.period, "composer": prompt.composer,
            "instrumentation": prompt.instrumentation, "suggested": record["suggested"],
            "warnings": vocabulary_warnings(prompt), "split": split, "annotated": annotated,
            "header": record["header"]}


def _write_index(out_dir: Path, records: dict[str, dict], train: list[str], held_out: list[str],
                 annotated: dict[str, dict]) -> None:
    old = load_manifest(out_dir, missing_ok=True)
    for piece in set(old["pieces"]) - set(records):  # pieces whose source is gone or now fails
        for path in piece_paths(out_dir, piece) + [stamp_path(out_dir, piece)]:
            path.unlink(missing_ok=True)
    splits = {p: "train" for p in train} | {p: "eval" for p in held_out}
    manifest = {"version": PIPELINE_VERSION,
                "pieces": {p: _manifest_entry(records[p], splits[p], annotated.get(p, {})) for p in sorted(records)}}
    _write_manifest_and_index(out_dir, manifest)


def _write_manifest_and_index(out_dir: Path, manifest: dict) -> None:
    pieces = manifest["pieces"]
    for split in ("train", "eval"):
        lines = [json.dumps({"path": str(out_dir / "augmented" / p), "key": e["key_signature"]})
                 for p, e in pieces.items() if e["split"] == split]
        atomic_write_text(out_dir / f"{split}.jsonl", "".join(line + "\n" for line in lines))
    prompts = {p: Prompt(e["period"], e["composer"], e["instrumentation"]) for p, e in pieces.items()}
    write_prompts(out_dir / "prompts.txt", list(prompts.values()))
    choices = count_choices((prompts[p].line, e["header"]) for p, e in pieces.items() if "header" in e)
    _write_json(out_dir / HEADER_CHOICES, {"version": 1, "prompts": choices})
    _write_json(out_dir / "manifest.json", manifest)


def _write_report(report: BuildReport) -> None:
    _write_json(report.out_dir / "report.json", {
        "out_dir": str(report.out_dir), "seconds": report.seconds, "cancelled": report.cancelled,
        "counts": {s: report.count(s) for s in ("ok", "cached", "failed", "cancelled")},
        "train": len(report.train), "eval": len(report.eval),
        "files": [asdict(f) for f in report.files]})


# ---------------------------------------------------------------- reading and re-annotating a dataset

def load_manifest(out_dir: str | os.PathLike, missing_ok: bool = False) -> dict:
    """A built dataset's manifest: {"version": ..., "pieces": {piece: {...}}}."""
    path = Path(out_dir) / "manifest.json"
    manifest = _read_json(path, "dataset manifest")
    if manifest is None:
        if missing_ok:
            return {"version": PIPELINE_VERSION, "pieces": {}}
        raise DatasetError(f"{out_dir}: no manifest.json; build the dataset with `notagen dataset build` first")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("pieces"), dict):
        raise DatasetError(f"{path}: not a dataset manifest")
    return manifest


def load_header_choices(out_dir: str | os.PathLike) -> dict[str, dict[str, dict[str, int]]]:
    """Per prompt line, the meters and keys of a built dataset's pieces (`header_choices.json`; empty for a
    dataset built before they were recorded)."""
    path = Path(out_dir) / HEADER_CHOICES
    data = _read_json(path, "record of meters and keys")
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), dict):
        raise DatasetError(f"{path}: not a record of meters and keys; build the dataset again")
    return data["prompts"]


def load_report(out_dir: str | os.PathLike) -> dict:
    report = _read_json(Path(out_dir) / "report.json", "build report")
    if report is None:
        raise DatasetError(f"{out_dir}: no report.json; build the dataset first")
    return report


def reannotate(out_dir: str | os.PathLike, labels: dict[str, Labels] | Labels,
               on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Change pieces' period / composer / instrumentation and rewrite their headers, without converting.

    `labels` is one Labels for every piece, or a mapping piece name -> Labels;
    unset fields keep the piece's current value. The values that change are kept in the
    manifest ("annotated"), so a rebuild into this folder keeps them. Returns the new manifest.
    """
    out_dir = Path(out_dir).resolve()
    manifest = load_manifest(out_dir)
    pieces = manifest["pieces"]
    if isinstance(labels, Labels):
        labels = {piece: labels for piece in pieces}
    unknown = sorted(set(labels) - set(pieces))
    if unknown:
        raise DatasetError(f"{out_dir}: no piece(s) named {', '.join(unknown[:5])}"
                           + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    for n, (piece, given) in enumerate(sorted(labels.items()), 1):
        entry = pieces[piece]
        current = Labels(entry["period"], entry["composer"], entry["instrumentation"])
        prompt = _kept_prompt(clean_labels(given), current)
        if asdict(prompt) != asdict(current):
            rewrite_headers(out_dir, piece, prompt)
            changed = {k: v for k, v in asdict(prompt).items() if v != asdict(current)[k]}
            entry.update(period=prompt.period, composer=prompt.composer, instrumentation=prompt.instrumentation,
                         warnings=vocabulary_warnings(prompt), annotated={**entry.get("annotated", {}), **changed})
            stamp = _read_json(stamp_path(out_dir, piece), "cache stamp")
            if stamp:
                stamp["prompt"] = asdict(prompt)
                _write_json(stamp_path(out_dir, piece), stamp)
        if on_progress:
            on_progress(n, len(labels))
    _write_manifest_and_index(out_dir, manifest)
    return manifest
