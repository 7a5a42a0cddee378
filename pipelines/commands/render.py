"""`notagen render`: an ABC file's MusicXML, MIDI, PDF, WAV and follow data, with a JSON summary on stdout."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser(
        "render", help="write .abc, .musicxml, .mid, .pdf, .wav and .follow.json (where each note is on the pages "
                       "and when it sounds) of an ABC file and print a JSON summary")
    p.add_argument("file", type=Path, help="an ABC file (post-processed generation or standard ABC)")
    p.add_argument("--out", type=Path, required=True, help="folder for the files (created if missing)")
    p.add_argument("--no-audio", action="store_true", help="skip the WAV")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF (the slowest step on long pieces)")
    p.add_argument("--soundfont", type=Path, help="a .sf2 SoundFont (default: pretty_midi's TimGM6mb.sf2)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds allowed to each converter call (default: the renderer's)")
    p.set_defaults(func=run_render)


def run_render(args) -> int:
    # imported here so that `notagen` starts without verovio, torch (evaluate) or scipy (audio)
    from pipelines.render.audio import AudioConfig, render_audio
    from pipelines.render.export import export_piece
    from pipelines.render.score import RenderConfig, render_abc
    from pipelines.training.data import read_abc

    abc_text = read_abc(args.file)
    config = RenderConfig(pdf=not args.no_pdf)
    if args.time_limit is not None:
        config.time_limit_s = args.time_limit
    result = render_abc(abc_text, config)
    audio = None if args.no_audio else render_audio(result.midi, AudioConfig(soundfont=args.soundfont))
    exported = export_piece(result, args.out, args.file.stem, wav=audio.wav if audio else None)
    summary = {"file": str(args.file), **result.summary(),
               "files": {kind: str(path) for kind, path in exported.files.items()}}
    if audio:
        summary["audio"] = {"seconds": round(audio.seconds, 3), "sample_rate": audio.sample_rate,
                            "soundfont": str(audio.soundfont), "loudness_lufs": round(audio.loudness_lufs, 2)}
    print(json.dumps(summary, indent=2))
    if result.partial:
        print(f"notagen render: {args.file}: partial result: " + "; ".join(result.problems), file=sys.stderr)
        return 1
    return 0
