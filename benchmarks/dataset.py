"""Dataset build throughput: this pipeline vs a reference doing what upstream NotaGen does.

Both turn the same real scores from music21's bundled corpus (MusicXML, a fixed
stride through the labelled corpus: chorales, quartet movements, songs) into
interleaved + 15-key augmented training files, on the same cores, in the same run:

- reference: upstream's two steps. `1_batch_xml2abc.py`: a pool of one process per
  core, each running `python xml2abc.py -d 8 -c 6 -x FILE` as a subprocess per
  file; then `2_data_preprocess.py`: one process, abctoolkit's cleaning, check,
  rotation and transposition, and rest reduction that rewrites each augmented file
  once per bar.
- pipeline: `build_named` with one spawn worker per core (xml2abc in-process,
  memoised key lookups, one write per file), cache off.

Prints files/s and success rate of each and the speed-up, and checks that both
wrote the same augmented texts. Usage: python benchmarks/dataset.py [--files 120] [--cores N]
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.dataset.build import DatasetConfig, build_named  # noqa: E402
from pipelines.dataset.convert import MUSICXML_SUFFIXES  # noqa: E402
from pipelines.dataset.corpus import corpus_sources  # noqa: E402


def choose_scores(count: int) -> list[tuple[Path, str]]:
    """`count` MusicXML pieces at an even stride through the labelled corpus (so every kind is represented)."""
    pieces = [(path, piece) for path, piece, _ in corpus_sources() if path.suffix in MUSICXML_SUFFIXES]
    if count >= len(pieces):
        return pieces
    step = len(pieces) / count
    return [pieces[int(i * step)] for i in range(count)]


# ---------------------------------------------------------------- reference (upstream's way)

def _xml2abc_script() -> str:
    return importlib.util.find_spec("abctoolkit.xml2abc").origin


def _reference_convert_chunk(args) -> None:
    files, abc_dir = args
    script = _xml2abc_script()
    for path, piece in files:
        process = subprocess.Popen([sys.executable, script, "-d", "8", "-c", "6", "-x", str(path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        output = process.communicate()[0].decode("utf-8")
        if output:
            Path(abc_dir, piece + ".abc").write_text(output, encoding="utf-8")


def _reference_preprocess(abc_dir: str, out_dir: str, results) -> None:
    """Upstream's preprocessing loop, single process, per-bar rewrites (runs in a fresh process: no memoisation)."""
    import contextlib
    import io

    from abctoolkit.check import check_alignment_unrotated
    from abctoolkit.rotate import rotate_abc
    from abctoolkit.transpose import Key2index, transpose_an_abc_text
    from abctoolkit.utils import extract_barline_and_bartext_dict

    from pipelines.dataset.preprocess import clean_abc, original_key, tidy_annotations

    done = 0
    for abc_path in sorted(Path(abc_dir).glob("*.abc")):
        name = abc_path.stem
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                lines = clean_abc(abc_path.read_text(encoding="utf-8"))
                _, equal, _ = check_alignment_unrotated(lines)
                if not equal:
                    raise ValueError("unequal bar numbers")
                lines = tidy_annotations(lines)
                original_key(lines)
                Path(out_dir, "interleaved", name + ".abc").write_text("".join(rotate_abc(lines)), encoding="utf-8")
                for key in Key2index:
                    text = transpose_an_abc_text(lines, key)
                    transposed = [line + "\n" for line in text.split("\n") if line]
                    metadata, prefixes, left, bars, right = extract_barline_and_bartext_dict(transposed)
                    written = metadata
                    target = Path(out_dir, "augmented", key, f"{name}_{key}.abc")
                    for i in range(len(bars["V:1"])):
                        line = ""
                        for voice in prefixes:
                            if any(c.isalpha() and c not in "ZzXx" for c in bars[voice][i]):
                                line += (f"[{voice}]{prefixes[voice]}{left[voice][0]}{bars[voice][0]}{right[voice][0]}"
                                         if i == 0 else f"[{voice}]{bars[voice][i]}{right[voice][i]}")
                        written.append(line + "\n")
                        with open(target, "w", encoding="utf-8") as f:  # upstream rewrites the file every bar
                            f.writelines(written)
        except Exception:  # upstream: print 'failed to pre-process' and go on
            continue
        done += 1
    results.put(done)


def run_reference(scores, work: Path, cores: int) -> tuple[float, int]:
    abc_dir, out_dir = work / "abc", work / "out"
    abc_dir.mkdir(parents=True)
    for key in ("Cb", "C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B"):
        (out_dir / "augmented" / key).mkdir(parents=True)
    (out_dir / "interleaved").mkdir()
    context = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with context.Pool(cores) as pool:
        pool.map(_reference_convert_chunk, [(scores[i::cores], str(abc_dir)) for i in range(cores)])
    results = context.Queue()
    process = context.Process(target=_reference_preprocess, args=(str(abc_dir), str(out_dir), results))
    process.start()
    done = results.get()
    process.join()
    return time.perf_counter() - start, done


def run_pipeline(scores, work: Path, cores: int) -> tuple[float, int]:
    start = time.perf_counter()
    report = build_named(scores, work / "out", DatasetConfig(workers=cores, use_cache=False, eval_split=0.1))
    return time.perf_counter() - start, report.count("ok")


def compare_outputs(reference: Path, pipeline: Path) -> tuple[int, int]:
    """(files compared, files that differ) among augmented files both wrote; the pipeline's have a 4-line header."""
    compared = differ = 0
    for path in sorted((reference / "augmented").rglob("*.abc")):
        ours = pipeline / "augmented" / path.parent.name / path.name
        if ours.is_file():
            compared += 1
            differ += ours.read_text(encoding="utf-8").split("\n", 4)[4] != path.read_text(encoding="utf-8")
    return compared, differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    scores = choose_scores(args.files)
    work = Path(tempfile.mkdtemp(prefix="notagen-dataset-bench-"))
    try:
        print(f"{len(scores)} scores from music21's corpus, {args.cores} core(s), CPU: {os.cpu_count()} logical")
        ref_s, ref_ok = run_reference(scores, work / "reference", args.cores)
        print(f"reference (upstream's way): {ref_s:7.1f} s  {len(scores) / ref_s:6.2f} files/s  "
              f"success {ref_ok}/{len(scores)} ({100 * ref_ok / len(scores):.1f}%)")
        ours_s, ours_ok = run_pipeline(scores, work / "pipeline", args.cores)
        print(f"pipeline:                   {ours_s:7.1f} s  {len(scores) / ours_s:6.2f} files/s  "
              f"success {ours_ok}/{len(scores)} ({100 * ours_ok / len(scores):.1f}%)")
        print(f"speed-up: {ref_s / ours_s:.2f}x")
        compared, differ = compare_outputs(work / "reference" / "out", work / "pipeline" / "out")
        print(f"augmented files compared: {compared}, differing: {differ}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
