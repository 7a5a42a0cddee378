"""The studio in a real browser: log in, choose a prompt, generate, see the score and the audio player; reload the
page while a generation runs and find it again, with its progress bar and a Cancel that stops it.

Headless Chromium from the system (Debian packages `chromium` and `chromium-driver`), driven by
Playwright for Python; Playwright never downloads a browser of its own here. With the built-in
demo model a generated piece is engraved and playable; with only the tiny test model (random
weights) the generation flow is checked and the score and player are those of an uploaded piece
to continue. Screenshots go to tmp/artifacts/browser/ (printed).
"""
import json
import shutil
import time
from pathlib import Path

import pytest

from studio.app import StudioOptions, launch_studio
from studio.tabs import dataset as dataset_tab

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AUTH = ("musician", "a long enough password")
ARTIFACTS = Path(__file__).resolve().parents[2] / "tmp" / "artifacts" / "browser"
pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is absent: install the Debian packages chromium and chromium-driver",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def studio(tmp_path_factory, fixtures):
    ws = tmp_path_factory.mktemp("browser") / "workspace"
    (ws / "models").mkdir(parents=True)
    shutil.copy(fixtures / "tiny_model.pth", ws / "models" / "tiny.pth")
    app, backend = launch_studio(StudioOptions(ws, port=None, auth=AUTH), prevent_thread_lock=True, quiet=True)
    yield app, backend
    app.close()
    backend.close()


@pytest.fixture(scope="module")
def page(studio):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def choose(page, elem_id: str, option: str | None = None) -> str:
    """Open a Gradio dropdown and click an option (the given one, else the first); returns its text."""
    page.click(f"#{elem_id} input")
    options = page.locator(f"#{elem_id} [role=option]")
    options.first.wait_for()
    target = options.filter(has_text=option).first if option else options.first
    text = target.get_attribute("aria-label")
    target.click()
    page.wait_for_function(f"document.querySelector('#{elem_id} input').value === {json.dumps(text)}")
    return text


def test_choose_a_prompt_generate_see_and_hear(studio, page, fixtures, tmp_path):
    app, backend = studio
    demo = any(m.ref == "demo" for m in backend.models.list())
    page.goto(app.local_url)
    page.fill("input[name=username], input[type=text]", AUTH[0])
    page.fill("input[type=password]", AUTH[1])
    shot(page, "0-login")
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-period input").wait_for()
    page.wait_for_function("document.querySelector('#gen-period input').value.length > 0")
    if not demo:
        choose(page, "gen-model", "models/tiny.pth")
        page.wait_for_function("document.querySelector('#gen-model-note').innerText.includes('NotaGen-X')")
        page.get_by_text("Sampling and limits").click()  # the limits are in a closed accordion
        page.fill("#gen-max-patches input", "12")
    period = choose(page, "gen-period", "Baroque")
    composer = choose(page, "gen-composer", "Bach")
    instrumentation = choose(page, "gen-instrumentation", "Choral")
    assert (period, composer, instrumentation) == ("Baroque", "Bach, Johann Sebastian", "Choral")
    shot(page, "1-prompt")
    started = time.monotonic()
    page.click("#gen-button")
    page.wait_for_function("document.querySelector('#gen-status').innerText.startsWith('finished')",
                           timeout=180_000)
    seconds = time.monotonic() - started
    status = page.inner_text("#gen-status")
    live = page.input_value("#gen-live textarea")
    assert "--- piece 1" in live and "[V:1]" in live  # the ABC written (prompt lines are dropped when it ends well)
    # the text box shows its newest lines
    page.wait_for_function("(t => t.scrollHeight - t.scrollTop - t.clientHeight < 5)"
                           "(document.querySelector('#gen-live textarea'))", timeout=10_000)
    shot(page, "2-generated")
    if demo and status.startswith("finished: 1 of 1"):
        score = page.locator("#gen-score-0 img.score-page")
        player = page.locator("#gen-audio-0")
    else:  # the tiny model writes no ending: see a score and hear it through "continue a score"
        assert status.startswith("finished: 0 of 1"), status
        piece = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))[0]["postprocessed"]
        upload = tmp_path / "to-continue.abc"
        upload.write_text(piece, encoding="utf-8")
        page.click("#gen-continue button")
        page.set_input_files("#gen-upload input[type=file]", str(upload))
        score = page.locator("#gen-preview-score img.score-page")
        player = page.locator("#gen-preview-audio")
    score.first.wait_for(state="visible", timeout=60_000)
    player.locator("[data-testid=waveform-controls]").wait_for(state="visible", timeout=60_000)
    box = score.first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 300  # an engraved page, not a broken image
    assert score.first.evaluate("img => Boolean(img.closest('.score-follow[data-follow]'))")  # it follows its player
    assert page.evaluate("el => el.naturalWidth", score.first.element_handle()) > 0
    # Gradio's player: a waveform that shows the WAV's length once loaded, and a download link to the file
    page.wait_for_function("el => { const d = el.querySelector('#duration'); return d && d.innerText !== '0:00'; }",
                           arg=player.element_handle())
    link = player.locator("a[download]").get_attribute("href")
    assert "/gradio_api/file=" in link and link.endswith(".wav")
    score.first.scroll_into_view_if_needed()
    shot(page, "3-score-and-audio")
    player.get_by_role("button", name="Play", exact=True).click()  # its notes light up as it plays
    page.wait_for_function("img => (img.closest('.score-follow').dataset.litNotes || '').length > 0",
                           arg=score.first.element_handle())
    player.get_by_role("button", name="Pause", exact=True).click()
    print(f"model: {'demo' if demo else 'tiny'}; generation took {seconds:.1f} s; status: {status!r}")


def open_tab(page, app, tab: str) -> None:
    """`tab` of a fresh page (logged in if the page asks)."""
    page.goto(app.local_url)
    page.locator("input[type=password], [role=tab]").first.wait_for()
    if page.locator("input[type=password]").count():
        page.get_by_role("button", name="Login").wait_for()
        page.fill("input[name=username], input[type=text]", AUTH[0])
        page.fill("input[type=password]", AUTH[1])
        page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name=tab).click()


def open_generate(page, app) -> None:
    """The Generate tab of a fresh page, its prompt filled in."""
    open_tab(page, app, "Generate")
    page.wait_for_function("document.querySelector('#gen-period input').value.length > 0")


def test_a_reload_while_a_generation_runs_finds_it_and_its_cancel_stops_it(studio, page, fixtures, tmp_path):
    app, backend = studio
    open_generate(page, app)
    before = page.inner_text("#gen-estimate")
    choose(page, "gen-model", "models/tiny.pth")
    page.wait_for_function(f"document.querySelector('#gen-estimate').innerText !== {json.dumps(before)}")
    page.get_by_text("Sampling and limits").click()
    page.fill("#gen-max-patches input", "0")
    # Random weights continuing a score, with no patch limit and many lines to add: they write until stopped
    # (a new piece may fill the tiny model's context with a header and end at once, depending on its seed).
    piece = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))[0]["postprocessed"]
    upload = tmp_path / "to-continue.abc"
    upload.write_text(piece, encoding="utf-8")
    page.click("#gen-continue button")
    page.set_input_files("#gen-upload input[type=file]", str(upload))
    page.locator("#gen-preview-score img.score-page").first.wait_for(state="visible")
    page.fill("#gen-add-lines input", "500")
    assert not page.is_enabled("#gen-cancel")  # nothing to cancel yet
    page.click("#gen-button")
    page.locator("#gen-progress .job-progress").wait_for()
    job = backend.jobs.latest("generate")
    assert job.state == "running" and job.params["max_patches"] == 0
    model = page.input_value("#gen-model input")
    page.reload()  # the page keeps nothing: the backend names the running job
    page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-progress .job-progress").wait_for()
    # the form shows the request that runs, not the page's defaults
    page.wait_for_function(f"document.querySelector('#gen-model input').value === {json.dumps(model)}")
    page.get_by_text("Sampling and limits").click()  # closed again on the new page
    page.wait_for_function("document.querySelector('#gen-max-patches input')?.value === '0'")
    assert page.is_enabled("#gen-cancel") and "writing the piece" in page.inner_text("#gen-progress")
    shot(page, "4-reloaded-while-writing")
    page.click("#gen-cancel")
    page.wait_for_function("document.querySelector('#gen-status').innerText.startsWith('cancelled')")
    assert backend.jobs.get(job.id).state == "cancelled" and not page.is_enabled("#gen-cancel")


@pytest.fixture(scope="module")
def chorales(studio):
    """A dataset of three corpus chorales, built through the service (the Dataset walk builds its own)."""
    from pipelines.service import DatasetSpec

    _, backend = studio
    if "chorales" not in [d.name for d in backend.datasets.list()]:
        job = backend.jobs.wait(backend.datasets.submit(DatasetSpec("chorales", corpus_limit=3)).id, 600)
        assert job.state == "done", job.error
    return "chorales"


def test_the_dataset_form_says_what_is_wrong_in_place_and_a_double_click_builds_once(studio, page):
    app, backend = studio
    open_tab(page, app, "Dataset")
    page.get_by_label(dataset_tab.SOURCES["upload"]).check()  # the boxes follow the source
    page.get_by_text("Score files", exact=True).wait_for()
    assert not page.get_by_label("Corpus pieces (first N; chorales come first)").is_visible()
    page.get_by_label(dataset_tab.SOURCES["corpus"]).check()
    page.get_by_label("Corpus pieces (first N; chorales come first)").wait_for()
    page.fill("#dataset-name input, #dataset-name textarea", "../evil")
    page.click("#dataset-build")
    page.wait_for_function("document.querySelector('#dataset-status').innerText.includes('not started')")
    assert "'..' is not allowed" in page.inner_text("#dataset-status")
    assert page.locator("#dataset-files .error, #dataset-list .error").count() == 0  # no red "Error" badges
    page.fill("#dataset-name input, #dataset-name textarea", "walk")
    page.fill("#dataset-corpus-limit input", "2")
    page.dblclick("#dataset-build")
    page.wait_for_function("document.querySelector('#dataset-status').innerText.includes('converted')",
                           timeout=300_000)  # the build's summary: "2 converted, ..."
    shot(page, "5-dataset-built")
    builds = [j for j in backend.jobs.list() if j.kind == "dataset" and j.params["name"] == "walk"]
    assert len(builds) == 1 and builds[0].state == "done", builds  # the second click started nothing
    page.wait_for_function("document.querySelector('#dataset-list').innerText.includes('walk')")


def test_annotate_opens_on_a_dataset_with_its_pieces(studio, page, chorales):
    app, _ = studio
    open_tab(page, app, "Annotate")
    page.wait_for_function("document.querySelector('#annotate-table').innerText.includes('bach_bwv')")
    shot(page, "6-annotate")


def test_train_shows_the_runs_plan_and_lets_a_new_run_start(studio, page, chorales):
    app, _ = studio
    open_tab(page, app, "Train")
    choose(page, "train-dataset", chorales)
    page.wait_for_function("document.querySelector('#train-estimate').innerText.includes('steps')")
    page.fill("#train-run input, #train-run textarea", "first-run")
    page.wait_for_function("!document.querySelector('#train-start').disabled")
    assert not page.is_enabled("#train-resume")  # nothing to resume under a new name
    shot(page, "7-train")


def test_a_bad_upload_is_refused_and_a_musicxml_score_is_continued(studio, page, fixtures, tmp_path):
    app, backend = studio
    open_generate(page, app)
    choose(page, "gen-model", "models/tiny.pth")
    page.click("#gen-continue button")
    shopping = tmp_path / "shopping.abc"
    shopping.write_text("This is my shopping list\n", encoding="utf-8")
    page.set_input_files("#gen-upload input[type=file]", str(shopping))
    page.get_by_text("shopping.abc: not an ABC tune").first.wait_for()  # said at once, with the file's name
    assert not page.locator("#gen-preview").is_visible()
    page.locator("#gen-upload").get_by_label("Clear").click()
    page.set_input_files("#gen-upload input[type=file]", str(fixtures / "preprocess" / "bach_bwv7.7.musicxml"))
    page.locator("#gen-preview-score img.score-page").first.wait_for(state="visible")
    page.get_by_text("Sampling and limits").click()
    page.fill("#gen-max-patches input", "4")
    page.fill("#gen-add-lines input", "2")
    before = len(backend.library.search())
    page.click("#gen-button")
    page.wait_for_function("document.querySelector('#gen-status').innerText.startsWith('finished')",
                           timeout=180_000)
    newest = backend.library.search()[0]
    assert len(backend.library.search()) == before + 1 and newest.continued_from == "bach_bwv7.7.musicxml"
    page.locator("#gen-piece-0").wait_for(state="visible")
    shot(page, "8-continued-musicxml")


def test_the_dpo_tab_estimates_before_it_starts_and_the_library_lists_the_pieces(studio, page):
    app, backend = studio
    open_tab(page, app, "DPO")
    page.wait_for_function("document.querySelector('#dpo-estimate').innerText.trim().length > 0")
    shot(page, "9-dpo")
    open_tab(page, app, "Library")
    assert backend.library.search(), "the earlier walks wrote pieces"
    page.wait_for_function("document.querySelector('#library-table').innerText.includes('Bach')")
    assert page.locator("#library-empty").is_visible() and not page.locator("#library-card").is_visible()
    newest = backend.library.search()[0]
    prompt = f"{newest.period} / {newest.composer} / {newest.instrumentation}"
    page.locator("#library-table").get_by_text(prompt).last.click()  # a row opens its piece
    page.locator("#library-card").wait_for(state="visible")
    page.wait_for_function("document.querySelector('#library-card').innerText.includes('seed')")
    shot(page, "10-library")


def test_variations_of_a_library_piece_are_set_up_in_generate(studio, page, fixtures):
    """A finished chorale in the library: "Write variations in Generate" from bar 3 sets the Generate tab to
    continue it after its first 2 bars, its score shown as the score to continue."""
    from pipelines.files import atomic_write_text
    from pipelines.service import Generation

    app, backend = studio
    chorale = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))[0]["postprocessed"]
    path = atomic_write_text(backend.generation.exports / "walk" / "variations-chorale.abc", chorale)
    entry = backend.library.add(Generation(model="models/tiny.pth", seed=11, status="ok", abc=chorale,
                                           period="Baroque", composer="Bach, Johann Sebastian",
                                           instrumentation="Choral", prompt="Baroque_Bach, Johann Sebastian_Choral",
                                           files={"abc": backend.workspace.relative(path)}))
    set_up_from_library(page, app, entry, "library-vary", 3, 2)  # on the Generate tab
    page.get_by_text("Continue a score").click()
    page.wait_for_function("document.querySelector('#gen-add-lines input')?.value > 0")
    keep = page.get_by_label("Keep its first N lines (0: all)").input_value()
    assert keep == "2" and "variations-chorale" in page.inner_text("#gen-upload")
    shot(page, "11-variations-set-up")


def library_chorale(backend, fixtures, name: str) -> tuple[int, int]:
    """A chorale the demo model wrote, as the library keeps it (id, bars): the piece to vary (the test is skipped
    where the demo model is not installed)."""
    from pipelines.files import atomic_write_text
    from pipelines.generation.continuation import score_lines
    from pipelines.service import Generation

    if not any(m.ref == "demo" for m in backend.models.list()):
        pytest.skip("the built-in demo model is not in this installation")
    chorale = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))[0]["postprocessed"]
    path = atomic_write_text(backend.generation.exports / "walk" / f"{name}.abc", chorale)
    entry = backend.library.add(Generation(model="demo", seed=11, status="ok", abc=chorale, period="Baroque",
                                           composer="Bach, Johann Sebastian", instrumentation="Choral",
                                           prompt="Baroque_Bach, Johann Sebastian_Choral",
                                           files={"abc": backend.workspace.relative(path)},
                                           parameters={"max_patches": 200}))
    return entry, len(score_lines(chorale)[1])


def open_library_piece(page, app, entry: int) -> None:
    open_tab(page, app, "Library")
    page.get_by_label("Piece id").fill(str(entry))
    page.get_by_role("button", name="Open", exact=True).click()
    page.locator("#library-card").wait_for(state="visible")


def set_up_from_library(page, app, entry: int, row: str, bar: int, count: int) -> None:
    """Open a library piece and, in its card's `row` ("library-vary" or "library-rewrite"), set up pieces from
    bar `bar` in Generate, `count` of them; its score is shown there to continue."""
    open_library_piece(page, app, entry)
    page.locator(f"#{row} input[type=number]").nth(0).fill(str(bar))
    page.locator(f"#{row} input[type=number]").nth(1).fill(str(count))
    page.click(f"#{row}-button")
    page.locator("#gen-preview-score img.score-page").first.wait_for(state="visible")


def side_by_side(page, first: str, second: str) -> bool:
    """Whether the two stand in one row, each wide enough to read, once the layout settles (within 10 s)."""
    try:
        page.wait_for_function(
            "([f, s]) => { const a = document.querySelector(f)?.getBoundingClientRect(),"
            " b = document.querySelector(s)?.getBoundingClientRect();"
            " return a && b && Math.abs(a.y - b.y) < 2 && b.x >= a.x + a.width && a.width > 350; }",
            arg=[first, second], timeout=10_000)
    except sync_api.TimeoutError:
        return False
    return True


def test_two_variations_of_a_library_piece_side_by_side_one_kept_is_found_with_its_parent(studio, page, fixtures):
    """The demo model writes 2 variations of a chorale's last bars; they stand side by side, each engraved and
    playable; "Keep" on the second makes it version 2 of the chorale, which the Library lists under it."""
    app, backend = studio
    parent, bars = library_chorale(backend, fixtures, "to-vary")
    set_up_from_library(page, app, parent, "library-vary", bars - 1, 2)
    page.wait_for_function("document.querySelector('#gen-model input').value.includes('Demo')")
    page.click("#gen-button")
    page.wait_for_function("document.querySelector('#gen-status').innerText.startsWith('finished')",
                           timeout=300_000)
    assert page.inner_text("#gen-status").startswith("finished: 2 of 2"), page.inner_text("#gen-status")
    assert f"2 variations of #{parent}" in page.inner_text("#gen-pieces-note")
    for i in (0, 1):
        page.locator(f"#gen-score-{i} img.score-page").first.wait_for(state="visible")
        page.locator(f"#gen-audio-{i} [data-testid=waveform-controls]").wait_for(state="visible")
        assert f"a variation of #{parent} from bar {bars - 1}" in page.inner_text(f"#gen-piece-{i}")
    assert side_by_side(page, "#gen-piece-0", "#gen-piece-1")
    page.locator("#gen-pieces").scroll_into_view_if_needed()
    shot(page, "12-variations-side-by-side")
    page.click("#gen-keep-1")
    page.wait_for_function("document.querySelector('#gen-kept-1').innerText.includes('Kept as')")
    kept = int(page.inner_text("#gen-kept-1").split("#")[1].split(",")[0])
    assert backend.library.get(kept).parent_id == parent and backend.library.get(kept).version == 2
    assert not page.locator("#gen-keep-1").is_visible() and page.locator("#gen-keep-0").is_visible()
    page.click("#gen-best-1")  # and it is better than the other: a pairwise judgement for DPO
    page.wait_for_function("document.querySelector('#gen-piece-1').innerText.includes('judged better than')")
    assert [j.better for j in backend.library.judgements(kept)] == [kept]
    open_tab(page, app, "Library")
    page.fill("#library-versions input", str(parent))
    page.click("#library-search")
    # the piece and its one kept version, of the many pieces in the library
    page.wait_for_function(f"(t => t.includes('v2 of #{parent}') && t.split('Baroque / Bach').length === 3)"
                           "(document.querySelector('#library-table').innerText)")
    assert backend.library.search(versions_of=parent) == [backend.library.get(kept), backend.library.get(parent)]
    page.locator("#library-table").get_by_text(f"v2 of #{parent}").last.click()  # its row opens it
    page.locator("#library-card").wait_for(state="visible")
    page.wait_for_function(f"document.querySelector('#library-card').innerText.includes('version 2 of #{parent}')")
    assert f"#{kept} " in page.inner_text("#library-card .piece-heading")
    shot(page, "13-library-versions")


def test_a_bar_written_again_from_the_library_comes_back_ranked_side_by_side(studio, page, fixtures):
    app, backend = studio
    parent, bars = library_chorale(backend, fixtures, "to-rewrite")
    set_up_from_library(page, app, parent, "library-rewrite", bars - 2, 3)
    page.get_by_text("Continue a score").click()
    page.wait_for_function(f"document.querySelector('#gen-bar input')?.value === '{bars - 2}'")
    assert page.get_by_label("Keep its first N lines (0: all)").input_value() == "0"
    page.locator("#gen-continue").scroll_into_view_if_needed()
    shot(page, "14-bar-set-up")
    page.click("#gen-button")
    page.wait_for_function("document.querySelector('#gen-status').innerText.startsWith('finished')",
                           timeout=300_000)
    note = page.inner_text("#gen-pieces-note")
    assert f"candidates for bar {bars - 2} of #{parent}" in note and "best first" in note, note
    first = page.inner_text("#gen-piece-0")
    assert f"bar {bars - 2} of #{parent} written again: rank 1, the bars after it at -" in first
    assert "rank 2" in page.inner_text("#gen-piece-1") and side_by_side(page, "#gen-piece-0", "#gen-piece-1")
    page.locator("#gen-pieces").scroll_into_view_if_needed()
    shot(page, "15-bar-candidates")


def test_two_pieces_of_one_prompt_are_compared_in_the_library(studio, page, fixtures):
    """Two engraved chorales of one prompt: open the newer, pick the older in "Compare with...", hear it, say this
    one is better, change one's mind, then remove the judgement."""
    from pipelines.service import Generation

    app, backend = studio
    ids = []
    for n, case in enumerate(json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))[:2]):
        made = backend.generation.render_piece(case["postprocessed"], backend.generation.exports / "compare" / str(n),
                                               "chorale")
        ids.append(backend.library.add(Generation(
            model="models/tiny.pth", seed=21 + n, status="ok", abc=case["postprocessed"], raw=case["generated"],
            period="Baroque", composer="Bach, Johann Sebastian", instrumentation="Choral",
            prompt="Baroque_Bach, Johann Sebastian_Choral", files={**made.files, "svg": made.svg_pages})))
    older, newer = ids
    open_library_piece(page, app, newer)
    page.locator("#library-score img.score-page").first.wait_for(state="visible")
    choose(page, "library-compare", f"#{older} - seed 21")
    page.locator("#library-other-audio").wait_for(state="visible")
    page.click("#library-better")
    page.wait_for_function(f"document.querySelector('#library-judged').innerText.includes('better than #{older}')")
    assert [(j.better, j.worse) for j in backend.library.judgements(newer)] == [(newer, older)]
    page.locator("#library-judged").scroll_into_view_if_needed()
    shot(page, "16-library-compared")
    page.click("#library-worse")  # the other one after all: the latest judgement stands
    page.wait_for_function(f"document.querySelector('#library-judged').innerText.includes('worse than #{older}')")
    assert [(j.better, j.worse) for j in backend.library.judgements(newer)] == [(older, newer)]
    choose(page, "library-judgement")
    page.click("#library-unjudge")
    page.wait_for_function("document.querySelector('#library-judged').innerText.includes('Not compared')")
    assert backend.library.judgements(newer) == []
    shot(page, "17-library-judgement-removed")


def test_a_playing_piece_lights_its_notes_turns_the_page_and_plays_from_a_clicked_bar(studio, page, long_chorale):
    """A two-page chorale in the library: play it and its sounding notes light up, bar after bar; from the last bar
    of page 1 (clicked) it plays on over the page turn, page 2 coming into view; a click on a bar of page 2
    moves the player there."""
    from pipelines.service import Generation

    app, backend = studio
    piece = backend.generation.render_piece(long_chorale, backend.generation.exports / "walk", "long-chorale")
    assert not piece.error and piece.files.get("follow"), piece.error
    entry = backend.library.add(Generation(model="models/tiny.pth", seed=12, status="ok", abc=long_chorale,
                                           period="Baroque", composer="Bach, Johann Sebastian",
                                           instrumentation="Choral", prompt="Baroque_Bach, Johann Sebastian_Choral",
                                           files={**piece.files, "svg": piece.svg_pages}))
    follow = json.loads(backend.generation.exported_file(piece.files["follow"]).read_text(encoding="utf-8"))
    page.set_viewport_size({"width": 1280, "height": 900})  # a laptop's screen: page 2 is out of view at first
    try:
        follow_the_score(app, page, entry, follow)
    finally:
        page.set_viewport_size({"width": 1280, "height": 1600})


def follow_the_score(app, page, entry: int, follow: dict) -> None:
    open_library_piece(page, app, entry)
    score = page.locator("#library-score .score-follow")
    score.locator(".score-sheet img.score-page").nth(1).wait_for(state="visible")
    assert score.locator(".score-sheet").count() == 2 and score.locator(".follow-bar").count() == len(follow["bars"])
    card = page.locator("#library-card")
    card.locator("[data-testid=waveform-controls]").wait_for(state="visible")
    page.wait_for_function("el => { const d = el.querySelector('#duration'); return d && d.innerText !== '0:00'; }",
                           arg=card.element_handle())

    def state() -> dict:
        return score.evaluate("el => ({lit: el.dataset.litNotes || '', page: el.dataset.page || '', "
                              "bar: el.dataset.bar || '', ms: Number(el.dataset.ms || 0)})")

    card.get_by_role("button", name="Play", exact=True).click()
    page.wait_for_function("el => (el.dataset.litNotes || '').length > 0", arg=score.element_handle())
    first = state()
    assert first["page"] == "1" and set(first["lit"].split()) <= set(follow["notes"])
    page.wait_for_function("([el, lit]) => el.dataset.litNotes && el.dataset.litNotes !== lit",
                           arg=[score.element_handle(), first["lit"]], timeout=10_000)
    second = state()
    assert second["ms"] > first["ms"] and second["lit"] != first["lit"]
    marks = score.locator(".follow-note")
    assert marks.count() == len(second["lit"].split())  # a mark over each note sounding
    shot(page, "18-follow-playing")

    on_page_2 = sorted((b for b in follow["bars"] if b["page"] == 1), key=lambda b: b["ms"])
    last_of_page_1 = max((b for b in follow["bars"] if b["page"] == 0), key=lambda b: b["ms"])
    last_bar = score.locator(f".follow-bar[data-bar='{last_of_page_1['id']}']")
    last_bar.evaluate("el => el.scrollIntoView({block: 'end'})")  # as a reader would, at the foot of the screen
    last_bar.click()
    page.wait_for_function(f"el => el.dataset.bar === {json.dumps(last_of_page_1['id'])}", arg=score.element_handle())
    next_bar = score.locator(f".follow-bar[data-bar='{on_page_2[0]['id']}']").bounding_box()
    assert next_bar["y"] > page.viewport_size["height"], next_bar  # the next page is still out of view
    page.wait_for_function("el => el.dataset.page === '2'", arg=score.element_handle(), timeout=15_000)
    turned = state()
    assert turned["ms"] >= on_page_2[0]["ms"] and turned["bar"] == on_page_2[0]["id"]
    page.wait_for_timeout(1500)  # the smooth scroll to the new page
    lit = score.evaluate("el => { const n = el.querySelectorAll('.score-sheet')[1].querySelector('.follow-note');"
                         " return n && n.getBoundingClientRect().y; }")  # in one step: marks change as it plays
    assert lit is not None and 0 <= lit <= page.viewport_size["height"], lit  # page 2's lit notes came into view
    page.screenshot(path=str(ARTIFACTS / "19-follow-page-turned.png"))

    target = on_page_2[-1]
    score.locator(f".follow-bar[data-bar='{target['id']}']").click()
    page.wait_for_function(f"el => el.dataset.bar === {json.dumps(target['id'])}", arg=score.element_handle())
    jumped = state()
    assert target["ms"] <= jumped["ms"] < target["ms"] + 2000 and jumped["page"] == "2"
    shown = card.locator("#time").inner_text()  # the player's own clock went there too
    minutes, seconds = shown.split(":")
    assert abs(int(minutes) * 60 + int(seconds) - target["ms"] / 1000) <= 2, shown
    page.screenshot(path=str(ARTIFACTS / "20-follow-clicked-bar.png"))
    card.get_by_role("button", name="Pause", exact=True).click()
