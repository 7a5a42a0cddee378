"""`notagen generate --prefix`: the studio's score formats, continued from the score's own lines."""
from __future__ import annotations

import json

import pytest

from launch import cli
from pipelines.abc.tokenizer import STREAM_PREFIX
from pipelines.generation.continuation import read_score, score_lines

BACH = ["--period", "Baroque", "--composer", "Bach, Johann Sebastian", "--instrumentation", "Choral"]


def body_lines(abc: str) -> list[str]:
    return [STREAM_PREFIX.sub("", line) for line in abc.splitlines() if line.startswith(("[r:", "[V:"))]


def continue_score(score, fixtures, out, *extra) -> tuple[int, dict, str]:
    code = cli(["generate", "--model", str(fixtures / "tiny_model.pth"), *BACH, "--prefix", str(score),
                "--prefix-lines", "4", "--continue-lines", "4", "--max-patches", "6", "--device", "cpu",
                "--out", str(out), *extra])
    meta = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    raw = next(out.glob("*.raw.abc")).read_text(encoding="utf-8")
    return code, meta, raw


def test_a_music21_corpus_mxl_is_continued_from_its_first_four_lines(fixtures, tmp_path):
    music21 = pytest.importorskip("music21")
    mxl = music21.corpus.getWork("bwv1.6")
    _, meta, raw = continue_score(mxl, fixtures, tmp_path / "out")
    own = [line.rstrip("\n") for line in score_lines(read_score(mxl))[1][:4]]
    assert body_lines(raw)[:4] == own and len(own) == 4
    assert meta["parameters"]["continued_from"] == str(mxl)
    assert meta["status"] == "limit" and "6-patch limit" in meta["reason"]  # random weights: the limit ends it
    assert meta["patches"] == 6 and meta["chars"] > 0


def test_a_musicxml_file_is_continued_like_the_studios_upload(fixtures, tmp_path):
    xml = fixtures / "preprocess" / "bach_bwv7.7.musicxml"
    _, _, raw = continue_score(xml, fixtures, tmp_path / "out")
    # upstream's training file of this chorale in its own key: the same rest-reduced bar lines
    training = (fixtures / "preprocess" / "augmented" / "D" / "bach_bwv7.7_D.abc").read_text(encoding="utf-8")
    assert body_lines(raw)[:4] == body_lines(training)[:4]


def test_a_file_that_is_not_music_is_refused_before_a_model_loads(tmp_path, capsys):
    shopping = tmp_path / "shopping.abc"
    shopping.write_text("This is my shopping list\n", encoding="utf-8")
    code = cli(["generate", "--model", str(tmp_path / "missing.pth"), *BACH, "--prefix", str(shopping),
                "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and f"{shopping}: not an ABC tune" in err and "missing.pth" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_meter_key_tempo_and_length_chosen_are_in_the_piece(tmp_path):
    from tests.paths import DEMO_MODEL

    out = tmp_path / "out"
    code = cli(["generate", "--model", str(DEMO_MODEL), *BACH, "--meter", "3/4", "--key", "G", "--tempo", "96",
                "--bars", "12", "--max-patches", "22", "--bar-retries", "0", "--device", "cpu", "--out", str(out)])
    assert code == 1  # the patch limit ends the only piece
    raw = next(out.glob("*.raw.abc")).read_text(encoding="utf-8")
    header = raw.split("[r:")[0].splitlines()
    assert {"Q:1/4=96", "M:3/4", "K:G"} <= set(header) and "[r:0/11]" in raw
    meta = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    assert {k: meta["parameters"][k] for k in ("meter", "key", "tempo", "bars")} == {
        "meter": "3/4", "key": "G", "tempo": 96, "bars": 12}
    assert meta["bars_planned"] == 12 and meta["bars_written"] >= 1


@pytest.mark.parametrize("flags, message", [
    (["--meter", "3/5"], "notagen generate: meter '3/5' is not a time signature"),
    (["--key", "G#"], "notagen generate: key 'G#' would need 8 sharps; write it as Ab instead"),
    (["--tempo", "400"], "notagen generate: tempo must be 20 to 300, not 400"),
    (["--bars", "0"], "notagen generate: length in bars must be 1 to 999, not 0"),
])
def test_a_header_value_that_is_not_one_is_refused_before_a_model_loads(tmp_path, capsys, flags, message):
    code = cli(["generate", "--model", str(tmp_path / "missing.pth"), *BACH, *flags, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and "missing.pth" not in err
    assert not (tmp_path / "out").exists()


def test_a_continuation_keeps_its_own_meter(fixtures, tmp_path, capsys):
    xml = fixtures / "preprocess" / "bach_bwv7.7.musicxml"  # in 4/4
    code = cli(["generate", "--model", str(tmp_path / "missing.pth"), *BACH, "--prefix", str(xml), "--meter", "3/4",
                "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "the score to continue keeps its own meter: it has 4/4 (M:4/4), not 3/4" in err
    assert not (tmp_path / "out").exists()


def test_the_prompt_comes_from_the_score_where_the_command_gives_none(fixtures, tmp_path, capsys):
    def run(score, out, *given):
        code = cli(["generate", "--model", str(fixtures / "tiny_model.pth"), *given, "--prefix", str(score),
                    "--prefix-lines", "2", "--max-patches", "2", "--device", "cpu", "--out", str(out)])
        return code, capsys.readouterr().err

    mozart = fixtures / "preprocess" / "mozart_k155_movement2.musicxml"  # its MusicXML names W.A. Mozart
    _, err = run(mozart, tmp_path / "a")
    assert "prompt Classical_Mozart, Wolfgang Amadeus_Chamber (period, composer, instrumentation from its " \
           "MusicXML)" in err
    meta = json.loads(next((tmp_path / "a").glob("*.json")).read_text(encoding="utf-8"))
    assert meta["prompt"] == "Classical_Mozart, Wolfgang Amadeus_Chamber"
    # a training-format file carries its own four header lines; a label given on the command line wins
    augmented = fixtures / "preprocess" / "augmented" / "D" / "bach_bwv7.7_D.abc"
    training = tmp_path / "chorale.abc"
    training.write_text("%Baroque\n%Bach, Johann Sebastian\n%Choral\n%end\n" + augmented.read_text(encoding="utf-8"),
                        encoding="utf-8")
    _, err = run(training, tmp_path / "b", "--instrumentation", "Keyboard")
    assert "prompt Baroque_Bach, Johann Sebastian_Keyboard (period, composer from its header)" in err
    # music21's export names no composer NotaGen-X knows: the command says what to give
    code, err = run(fixtures / "preprocess" / "bach_bwv7.7.musicxml", tmp_path / "c")
    assert code == 2 and "bach_bwv7.7.musicxml: the score does not say its period or composer; give --period " \
                         "and --composer" in err
    code = cli(["generate", "--model", str(fixtures / "tiny_model.pth"), "--period", "Baroque", "--out",
                str(tmp_path / "e")])
    assert code == 2 and "--composer, --instrumentation: needed for a new piece" in capsys.readouterr().err


def test_variations_from_a_bar_keep_the_bars_before_it_and_differ_after(fixtures, tmp_path, capsys):
    """--from-bar 3 --num 2: bars 1-2 of the score in both, byte for byte, numbered as the model expects
    ([r:0/N-1] with N the score's own length), and two different rests."""
    score = fixtures / "preprocess" / "bach_bwv7.7.musicxml"
    own = [line.rstrip("\n") for line in score_lines(read_score(score))[1]]
    out = tmp_path / "out"
    cli(["generate", "--model", str(fixtures / "tiny_model.pth"), *BACH, "--prefix", str(score), "--from-bar", "3",
         "--num", "2", "--max-patches", "8", "--device", "cpu", "--out", str(out)])
    raws = [path.read_text(encoding="utf-8") for path in sorted(out.glob("*.raw.abc"))]
    assert len(raws) == 2
    for raw in raws:
        assert body_lines(raw)[:2] == own[:2]
        numbered = [line for line in raw.splitlines() if line.startswith("[r:")]
        assert numbered[0].startswith(f"[r:0/{len(own) - 1}]") and numbered[1].startswith(f"[r:1/{len(own) - 2}]")
    assert raws[0] != raws[1]  # the same kept bars, then each seed its own rest
    meta = json.loads(sorted(out.glob("*.json"))[0].read_text(encoding="utf-8"))
    assert meta["parameters"]["from_bar"] == 3
    for wrong, said in ((["--from-bar", "1"], "--from-bar must be 2 to"), (["--from-bar", "3", "--prefix-lines", "2"],
                                                                          "leave out --prefix-lines")):
        code = cli(["generate", "--model", str(tmp_path / "missing.pth"), *BACH, "--prefix", str(score), *wrong,
                    "--out", str(tmp_path / "x")])
        assert code == 2 and said in capsys.readouterr().err
    code = cli(["generate", "--model", str(tmp_path / "missing.pth"), *BACH, "--from-bar", "3", "--out",
                str(tmp_path / "x")])
    assert code == 2 and "--from-bar needs --prefix" in capsys.readouterr().err


def test_one_bar_written_again_from_the_command_line(fixtures, tmp_path, capsys):
    from pipelines.abc.prompts import Prompt
    from pipelines.generation.continuation import continuation_prefix

    five = tmp_path / "five.abc"  # five bars of a chorale: they fit the tiny model's context
    five.write_text(continuation_prefix(read_score(fixtures / "preprocess" / "bach_bwv7.7.musicxml"),
                                        Prompt("Baroque", "Bach, Johann Sebastian", "Choral"), keep_lines=5,
                                        add_lines=1), encoding="utf-8")
    out = tmp_path / "out"
    code = cli(["generate", "--model", str(fixtures / "tiny_model.pth"), "--prefix", str(five), "--bar", "3",
                "--candidates", "3", "--seed", "1", "--top-k", "0", "--bar-retries", "0", "--device", "cpu",
                "--out", str(out)])
    assert code == 0
    metas = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("five-bar3-*.json"))]
    assert [m["rank"] for m in metas] == list(range(1, len(metas) + 1)) and len(metas) >= 2
    scores = [m["following_logprob"] for m in metas]
    assert scores == sorted(scores, reverse=True)
    own = body_lines((out / "five-bar3-1.raw.abc").read_text(encoding="utf-8"))
    kept = body_lines(five.read_text(encoding="utf-8"))
    assert own[:2] == kept[:2] and own[3:] == kept[3:] and own[2] == metas[0]["bar_text"]
    code = cli(["generate", "--model", str(tmp_path / "missing.pth"), "--prefix", str(five), "--bar", "3",
                "--from-bar", "2", "--out", str(out)])
    assert code == 2 and "--bar K keeps every bar but K" in capsys.readouterr().err


def test_compiled_steps_are_asked_for_with_compile_only(fixtures, tmp_path, monkeypatch):
    asked = []

    def load_engine(path, device, dtype, decode):
        asked.append(decode.compile)
        raise SystemExit(0)  # what it was asked is all this test needs

    monkeypatch.setattr("pipelines.generation.loading.load_engine", load_engine)
    monkeypatch.setattr("pipelines.commands.generate.load_engine", load_engine)
    for extra in ([], ["--compile"]):
        with pytest.raises(SystemExit):
            cli(["generate", "--model", str(fixtures / "tiny_model.pth"), *BACH, "--out", str(tmp_path), *extra])
    assert asked == [None, True]  # None: the engine's default, off
