"""Rendering cost per piece on CPU: score (MusicXML + engraving), PDF, MIDI, audio, and the whole.

Pieces: a Bach chorale (bwv66.6, 10 bars) and the long Beethoven quartet movement
(op. 18 no. 1, iv: 381 bars, 6 1/2 minutes), as upstream's post-processing returns them
(the golden fixtures in tests/fixtures/upstream/postprocess.json).

Stages, each timed on its own (median of --repeat runs):
- report: `report_piece` (abctoolkit bar split and durations);
- score: abc2xml to MusicXML, Verovio load and layout, every SVG page;
- pdf: svglib + reportlab of those pages;
- midi: Verovio's MIDI and timemap of the loaded score;
- follow: where each note sits and when it sounds, for the score that follows playback (the pages
  drawn again with Verovio's bounding boxes);
- audio: midirenderer with the default SoundFont, resampling and loudness normalisation;
- render_abc: the public call without the PDF (what a UI shows first), end to end: it runs in a
  kept render worker process (pipelines/render/worker.py), so it adds the hand-over to the stages.

Before the pieces: the start of a render worker (its imports; paid once per process, or during
generation in the studio) and the round trip of an empty call to a running one.

Usage: python benchmarks/render.py [--repeat 3] [--pieces bach_bwv66.6_C,beethoven_opus18no1_movement4_C]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.abc.report import report_piece  # noqa: E402
from pipelines.render.audio import AudioConfig, synthesize  # noqa: E402
from pipelines.render.instruments import assign_instruments  # noqa: E402
from pipelines.render.pdf import score_pdf  # noqa: E402
from pipelines.render.score import (  # noqa: E402
    RenderConfig,
    convert_abc,
    engrave_piece,
    engraved_follow,
    new_toolkit,
    render_abc,
)
from pipelines.render.worker import run_limited, stop_workers, warm_up  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "upstream"
DEFAULT_PIECES = "bach_bwv66.6_C,beethoven_opus18no1_movement4_C"


def timed(work):
    start = time.perf_counter()
    value = work()
    return value, time.perf_counter() - start


def stage_times(abc: str, config: RenderConfig) -> dict[str, float]:
    import base64

    times = {}
    _, times["report"] = timed(lambda: report_piece(abc))

    def score():
        musicxml, _ = convert_abc(assign_instruments(abc)[0])  # in this process, as the worker runs it
        tk = new_toolkit(config)
        tk.loadData(musicxml)
        pages = [tk.renderToSVG(p) for p in range(1, tk.getPageCount() + 1)]
        return tk, pages

    (tk, pages), times["score"] = timed(score)
    (midi, timemap), times["midi"] = timed(lambda: (base64.b64decode(tk.renderToMIDI()),
                                                    tk.renderToTimemap({"includeMeasures": True})))
    _, times["follow"] = timed(lambda: engraved_follow(tk, timemap))
    _, times["pdf"] = timed(lambda: score_pdf(pages))
    _, times["audio"] = timed(lambda: synthesize(midi, AudioConfig()))
    _, times["render_abc"] = timed(lambda: render_abc(abc, RenderConfig(pdf=False)))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pieces", default=DEFAULT_PIECES)
    args = parser.parse_args()

    cases = {c["name"]: c["postprocessed"]
             for c in json.loads((FIXTURES / "postprocess.json").read_text(encoding="utf-8"))}
    config = RenderConfig()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    stop_workers()
    _, start = timed(lambda: (warm_up(engrave_piece, synthesize), run_limited(len, ("",), 60, "starting")))
    trips = [timed(lambda: run_limited(len, ("",), 60, "a round trip"))[1] for _ in range(20)]
    print(f"render worker: start {start:.2f} s, round trip {statistics.median(trips) * 1000:.2f} ms")
    for name in args.pieces.split(","):
        abc = cases[name]
        result = render_abc(abc, RenderConfig(pdf=False))
        runs = [stage_times(abc, config) for _ in range(args.repeat)]
        median = {stage: statistics.median(r[stage] for r in runs) for stage in runs[0]}
        print(f"\n{name}: {result.report.bars} bars, {len(result.parts)} parts, {result.notes} notes, "
              f"{result.pages} pages, {result.seconds:.1f} s of music")
        for stage, seconds in median.items():
            print(f"  {stage:<11} {seconds:7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
