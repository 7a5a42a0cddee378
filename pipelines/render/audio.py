"""MIDI -> WAV through a SoundFont synthesizer: 44.1 kHz stereo, loudness-normalised, with a release tail.

The synthesizer is `midirenderer` (Rust, wheels for Windows, macOS and Linux; reads SF2).
The default SoundFont is the General MIDI `TimGM6mb.sf2` that pretty_midi installs; a user
may point `AudioConfig.soundfont` at a better one (FluidR3 GM, MuseScore General, ...).
The synthesizer stops at the MIDI's last event, so a silent marker is added `tail_seconds`
after it to let the last notes ring out. It runs in a render worker process under
`AudioConfig.time_limit_s` (see worker.py), so a MIDI that would take minutes is stopped.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import midirenderer
import mido
import numpy as np
import pyloudnorm
import soundfile
from scipy.signal import resample_poly

from pipelines.errors import AudioError
from pipelines.render.worker import run_limited

DEFAULT_SOUNDFONT_PACKAGE = "pretty_midi"
DEFAULT_SOUNDFONT_NAME = "TimGM6mb.sf2"


@dataclass
class AudioConfig:
    soundfont: Path | None = None  # .sf2 file; None: the General MIDI SoundFont pretty_midi installs
    sample_rate: int = 44100
    tail_seconds: float = 1.5  # silence after the last note-off, where releases and reverb ring out
    loudness_lufs: float = -16.0  # integrated loudness (ITU-R BS.1770) the audio is brought to
    peak_dbfs: float = -1.0  # ... unless that would push a sample above this peak
    time_limit_s: float = 60.0  # for synthesizing and normalising (a chorale takes well under a second)


@dataclass
class AudioResult:
    wav: bytes  # 16-bit PCM WAV file
    sample_rate: int
    channels: int
    seconds: float
    soundfont: Path
    loudness_lufs: float  # of the result: the target, or less where the peak limit held it back


def default_soundfont() -> Path:
    """pretty_midi's General MIDI SoundFont (TimGM6mb), found inside the installed package."""
    try:
        import pretty_midi
    except ImportError:
        raise AudioError(f"no SoundFont: {DEFAULT_SOUNDFONT_PACKAGE} is not installed; "
                         "install it or choose a .sf2 file in settings") from None
    path = Path(pretty_midi.__file__).parent / DEFAULT_SOUNDFONT_NAME
    if not path.is_file():
        raise AudioError(f"{path}: the default SoundFont is missing; choose a .sf2 file in settings")
    return path


def load_soundfont(path: str | Path | None = None) -> tuple[Path, bytes]:
    """The SoundFont's path and bytes; AudioError naming the file when it is not a usable SF2."""
    path = Path(path) if path is not None else default_soundfont()
    if not path.is_file():
        raise AudioError(f"{path}: no such SoundFont file")
    stat = path.stat()
    return path, _read_soundfont(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=1)  # a good General MIDI SoundFont can be 150 MB; keep only the one in use
def _read_soundfont(path: str, size: int, mtime_ns: int) -> bytes:  # size and mtime key the cache
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise AudioError(f"{path}: not a SoundFont (.sf2) file")
    major = _soundfont_version(data)
    if major is not None and major >= 3:
        raise AudioError(f"{path}: an SF3 (compressed) SoundFont; the synthesizer reads SF2 only. "
                         "Convert it to .sf2 (Polyphone does) or choose another file")
    return data


def _soundfont_version(data: bytes) -> int | None:
    """The major version in the `ifil` chunk (2 for SF2, 3 for SF3); None if absent."""
    at = data.find(b"ifil", 12, 4096)
    if at < 0 or at + 10 > len(data):
        return None
    return int.from_bytes(data[at + 8:at + 10], "little")


def render_audio(midi: bytes, config: AudioConfig | None = None,
                 should_stop: Callable[[], bool] | None = None) -> AudioResult:
    """Synthesize `midi` to a WAV: stereo at `config.sample_rate`, loudness-normalised, with a tail.

    Runs in a render worker process; RenderError when it takes longer than `config.time_limit_s`."""
    config = config or AudioConfig()
    return run_limited(synthesize, (midi, config), config.time_limit_s, "synthesizing the audio", should_stop)


def synthesize(midi: bytes, config: AudioConfig) -> AudioResult:
    """`render_audio` in this process, with no time limit."""
    soundfont_path, soundfont = load_soundfont(config.soundfont)
    padded = _with_tail(midi, config.tail_seconds)
    try:
        rendered = midirenderer.render_wave_from(soundfont, padded)
    except (RuntimeError, ValueError) as e:
        raise AudioError(f"{soundfont_path.name}: the synthesizer cannot play this MIDI ({e})") from None
    samples, rate = soundfile.read(io.BytesIO(rendered), dtype="float32", always_2d=True)
    if samples.shape[1] == 1:
        samples = np.repeat(samples, 2, axis=1)
    if rate != config.sample_rate:
        k = gcd(rate, config.sample_rate)
        samples = resample_poly(samples, config.sample_rate // k, rate // k, axis=0).astype(np.float32)
    samples, loudness = _normalise(samples, config)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, config.sample_rate, format="WAV", subtype="PCM_16")
    return AudioResult(wav=buffer.getvalue(), sample_rate=config.sample_rate, channels=samples.shape[1],
                       seconds=samples.shape[0] / config.sample_rate, soundfont=soundfont_path,
                       loudness_lufs=loudness)


def _with_tail(midi: bytes, tail_seconds: float) -> bytes:
    """`midi` with a marker `tail_seconds` after its last event, so the synthesizer plays on that long."""
    try:
        mf = mido.MidiFile(file=io.BytesIO(midi))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise AudioError(f"the MIDI cannot be read ({e})") from None
    if not mf.tracks:
        raise AudioError("the MIDI has no tracks")
    end = max(sum(m.time for m in track) for track in mf.tracks)
    tempo, tempo_at = 500000, -1  # MIDI's default, 120 quarters a minute
    for track in mf.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "set_tempo" and tempo_at <= tick <= end:
                tempo, tempo_at = message.tempo, tick
    track = mf.tracks[0]
    body = [m for m in track if m.type != "end_of_track"]
    track_end = sum(m.time for m in track)
    tail = int(round(mido.second2tick(tail_seconds, mf.ticks_per_beat, tempo)))
    track[:] = body + [mido.MetaMessage("marker", text="release tail", time=end - track_end + tail),
                       mido.MetaMessage("end_of_track", time=0)]
    buffer = io.BytesIO()
    mf.save(file=buffer)
    return buffer.getvalue()


def _normalise(samples: np.ndarray, config: AudioConfig) -> tuple[np.ndarray, float]:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak < 1e-5:
        raise AudioError("the MIDI renders silent: no note sounded with this SoundFont")
    meter = pyloudnorm.Meter(config.sample_rate)
    if samples.shape[0] < int(0.5 * config.sample_rate):  # BS.1770 needs a 400 ms block; pad short clips
        samples_for_meter = np.pad(samples, ((0, int(0.5 * config.sample_rate)), (0, 0)))
    else:
        samples_for_meter = samples
    loudness = float(meter.integrated_loudness(samples_for_meter))
    gain = 10 ** ((config.loudness_lufs - loudness) / 20) if np.isfinite(loudness) else 1.0
    limit = 10 ** (config.peak_dbfs / 20)
    gain = min(gain, limit / peak)
    return (samples * gain).astype(np.float32), loudness + 20 * float(np.log10(gain))
