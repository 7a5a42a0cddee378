"""MIDI -> WAV with the real synthesizer and the pip-installed SoundFont, on a rendered Bach chorale."""
import io
import json

import mido
import numpy as np
import pyloudnorm
import pytest
import soundfile

from pipelines.errors import AudioError
from pipelines.render.audio import AudioConfig, default_soundfont, load_soundfont, render_audio
from pipelines.render.score import RenderConfig, midi_seconds, render_abc


@pytest.fixture(scope="module")
def chorale_midi(fixtures) -> bytes:
    cases = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))
    abc = next(c["postprocessed"] for c in cases if c["name"] == "bach_bwv66.6_C")
    return render_abc(abc, RenderConfig(svg=False, pdf=False)).midi


@pytest.fixture(scope="module")
def chorale_audio(chorale_midi):
    return render_audio(chorale_midi)


def test_wav_format_length_and_sound(chorale_midi, chorale_audio):
    samples, rate = soundfile.read(io.BytesIO(chorale_audio.wav), always_2d=True)
    info = soundfile.info(io.BytesIO(chorale_audio.wav))
    assert (rate, samples.shape[1], info.subtype) == (44100, 2, "PCM_16")
    expected = midi_seconds(chorale_midi) + AudioConfig.tail_seconds
    assert samples.shape[0] / rate == pytest.approx(expected, abs=0.5)
    assert chorale_audio.seconds == pytest.approx(samples.shape[0] / rate)
    rms = np.sqrt(np.mean(samples[: int(20 * rate)] ** 2))
    assert rms > 0.02  # music, not silence
    tail = samples[-int(0.3 * rate):]
    assert np.abs(tail).max() < np.abs(samples).max() / 4  # the release dies away in the tail


def test_loudness_normalised(chorale_audio):
    samples, rate = soundfile.read(io.BytesIO(chorale_audio.wav))
    loudness = pyloudnorm.Meter(rate).integrated_loudness(samples)
    peak_db = 20 * np.log10(np.abs(samples).max())
    assert peak_db <= -0.99
    # at the target, unless the peak limit had to hold it lower
    assert loudness == pytest.approx(-16.0, abs=0.3) or (loudness < -16.0 and peak_db > -1.1)
    assert chorale_audio.loudness_lufs == pytest.approx(loudness, abs=0.3)


def test_tail_and_rate_follow_the_config(chorale_midi):
    audio = render_audio(chorale_midi, AudioConfig(tail_seconds=0.25, sample_rate=22050))
    assert audio.sample_rate == 22050
    assert audio.seconds == pytest.approx(midi_seconds(chorale_midi) + 0.25, abs=0.1)


def test_default_soundfont_is_the_pip_installed_one():
    path, data = load_soundfont()
    assert path == default_soundfont() and path.name == "TimGM6mb.sf2"
    assert data[:4] == b"RIFF" and data[8:12] == b"sfbk"


def test_missing_soundfont_names_the_file(tmp_path, chorale_midi):
    with pytest.raises(AudioError, match="nothere.sf2: no such SoundFont"):
        render_audio(chorale_midi, AudioConfig(soundfont=tmp_path / "nothere.sf2"))


def test_file_that_is_not_a_soundfont(tmp_path, chorale_midi):
    bad = tmp_path / "song.sf2"
    bad.write_bytes(b"this is not a soundfont at all")
    with pytest.raises(AudioError, match="song.sf2: not a SoundFont"):
        render_audio(chorale_midi, AudioConfig(soundfont=bad))


def test_sf3_gets_a_clear_message(tmp_path, chorale_midi):
    sf3 = tmp_path / "general.sf3"
    info = b"ifil" + (4).to_bytes(4, "little") + (3).to_bytes(2, "little") + (1).to_bytes(2, "little")
    listed = b"LIST" + (4 + len(info)).to_bytes(4, "little") + b"INFO" + info
    sf3.write_bytes(b"RIFF" + (4 + len(listed)).to_bytes(4, "little") + b"sfbk" + listed)
    with pytest.raises(AudioError, match="general.sf3: an SF3"):
        render_audio(chorale_midi, AudioConfig(soundfont=sf3))


def test_broken_soundfont_body(tmp_path, chorale_midi):
    truncated = tmp_path / "cut.sf2"
    truncated.write_bytes(default_soundfont().read_bytes()[:50000])
    with pytest.raises(AudioError, match="cut.sf2"):
        render_audio(chorale_midi, AudioConfig(soundfont=truncated))


def test_bad_midi():
    with pytest.raises(AudioError, match="MIDI cannot be read"):
        render_audio(b"not a midi file")


def test_midi_without_notes_is_silent():
    mf = mido.MidiFile()
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000), mido.Message("program_change", program=0),
                            mido.MetaMessage("end_of_track", time=960)])
    mf.tracks.append(track)
    buffer = io.BytesIO()
    mf.save(file=buffer)
    with pytest.raises(AudioError, match="silent"):
        render_audio(buffer.getvalue())
