"""The running studio, driven over HTTP with gradio_client: login, generation end to end, the GPU queue,
path traversal through every path-taking handler and the file routes, upload size.

One studio is started on 127.0.0.1 for the module, with the tiny upstream test model in
its workspace's models folder (random weights: the flow is checked, not the music).
"""
import json
import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from studio.app import TABS, StudioOptions, launch_studio
from studio.commands import parse_auth
from tests.paths import symlinks_supported

AUTH = ("ann", "correct horse battery staple")
TINY = "models/tiny.pth"
BAD_PATHS = ["../outside", "/etc/passwd", "C:\\Windows\\win.ini", "\\\\server\\share\\x", "CON",
             "datasets/../../etc", "models/escape.pth"]
BACH = ("Baroque", "Bach, Johann Sebastian", "Choral")


def generate_args(model=TINY, count=1, seed=0, max_patches=12, max_seconds=60.0, upload=None, bar_retries=32,
                  **changes) -> dict:
    """The Generate button's inputs, by name (the GenerationSpec's fields and the upload)."""
    return {"model": model, "period": BACH[0], "composer": BACH[1], "instrumentation": BACH[2], "count": count,
            "seed": seed, "top_k": 9, "top_p": 0.9, "temperature": 1.2, "max_patches": max_patches,
            "max_seconds": max_seconds, "upload": upload, "keep_lines": 0, "add_lines": 8,
            "bar_retries": bar_retries, **changes}


def build_args(**changes) -> dict:
    """The Dataset tab's build inputs, by name."""
    return {"source": "corpus", "upload": None, "folder": None, "corpus_limit": 1, "name": "ok-name", "period": "",
            "composer": "", "instrumentation": "", "eval_split": 0.1, **changes}


def train_args(**changes) -> dict:
    """The Train tab's start inputs, by name."""
    return {"dataset": "missing", "base": TINY, "preset": "demo", "run": "run", "epochs": 1, "max_steps": 1,
            "lr": 0, "batch_size": 1, "grad_accum": 1, "warmup_steps": 0, "lora_rank": 0, "patience": 0, **changes}


def dpo_args(**changes) -> dict:
    """The DPO tab's start inputs, by name."""
    return {"model": TINY, "dataset": "d", "run": "r", "scorer": "builtin", "clamp2": "", "use_ratings": True,
            "iterations": 1, "samples": 1, "steps": 1, "max_patches": 0, "generation_batch": 1, "min_pairs": 1,
            "score_final": False, "keep_best": False, **changes}


@pytest.fixture(scope="module")
def studio(tmp_path_factory, fixtures):
    root = tmp_path_factory.mktemp("studio")
    ws = root / "workspace"
    (ws / "models").mkdir(parents=True)
    shutil.copy(fixtures / "tiny_model.pth", ws / "models" / "tiny.pth")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.pth").write_bytes(b"secret")
    if symlinks_supported():  # else models/escape.pth is simply missing, and still refused
        (ws / "models" / "escape.pth").symlink_to(outside / "secret.pth")
    app, backend = launch_studio(StudioOptions(ws, port=None, auth=AUTH, max_upload_mb=1),
                                 prevent_thread_lock=True, quiet=True)
    yield app, backend
    app.close()
    backend.close()


@pytest.fixture(scope="module")
def client(studio):
    app, _ = studio
    return Client(app.local_url, auth=AUTH, verbose=False)


@pytest.fixture(scope="module")
def http(studio):
    app, _ = studio
    with httpx.Client(base_url=app.local_url, timeout=30) as session:
        assert session.post("login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
        yield session


def test_tabs_in_workflow_order():
    assert [t.TITLE for t in TABS] == ["Dataset", "Annotate", "Train", "Generate", "DPO", "Library"]


def test_share_without_auth_gets_a_generated_password(capsys):
    user, password = parse_auth(None, share=True)
    assert user == "studio" and len(password) >= 20
    assert password in capsys.readouterr().err
    assert parse_auth(None, share=False) is None
    assert parse_auth("ann:s3cret", share=True) == ("ann", "s3cret")
    with pytest.raises(SystemExit):
        parse_auth("no-colon", share=False)


def test_refused_without_login_accepted_with_it(studio, client):
    app, _ = studio
    assert app.server_name == "127.0.0.1"
    with pytest.raises(Exception):
        Client(app.local_url, verbose=False)
    with pytest.raises(Exception):
        Client(app.local_url, auth=(AUTH[0], "wrong"), verbose=False)
    with httpx.Client(base_url=app.local_url, timeout=30) as anonymous:
        assert anonymous.get("config").status_code == 401
        assert anonymous.post("login", data={"username": "ann", "password": "nope"}).status_code == 400
    assert client.predict("", "any", "any", api_name="/library_search")["headers"][0] == "id"


def test_generation_end_to_end(studio, client):
    _, backend = studio
    job = client.submit(**generate_args(count=2, seed=7), api_name="/generate")
    final = job.result(timeout=120)
    outputs = job.outputs()
    job_id, status, text = final[0], final[1], final[2]
    assert status.startswith("finished: 0 of 2"), status  # random weights never end a piece
    assert len(outputs) >= 2 and outputs[0][1] != status  # progress streamed before the end
    assert text.count("--- piece") == 2 and "%Bach, Johann Sebastian" in text
    entries = backend.library.by_job(job_id)
    assert [(e.seed, e.status) for e in entries] == [(7, "limit"), (8, "limit")]
    assert "12-patch limit" in entries[0].reason and entries[0].model == TINY
    assert entries[0].parameters["top_k"] == 9 and entries[0].files["raw"].startswith(f"exports/{job_id}/")
    assert "seed 7" in final[3] and "limit" in final[3]  # the first piece's heading
    # the thumbs buttons rate the session's pieces, and the rating lands in the library
    assert client.predict(api_name="/generate_rate_1_down") == "rated: thumbs down"
    assert backend.library.get(entries[1].id).rating == -1
    # a fresh page (a reload: it keeps no job) is shown the newest generation by the backend
    again = client.predict("", api_name="/generate_reattach")
    assert again[0] == job_id and again[1] == status


def test_a_second_gpu_job_waits_for_the_first(studio):
    app, backend = studio
    first_client = Client(app.local_url, auth=AUTH, verbose=False)
    second_client = Client(app.local_url, auth=AUTH, verbose=False)
    first = first_client.submit(**generate_args(max_patches=0, max_seconds=3.0), api_name="/generate")
    running = threading.Event()

    def wait_running():
        while not any(j.state == "running" and j.kind == "generate" for j in backend.jobs.list(5)):
            threading.Event().wait(0.05)
        running.set()

    watcher = threading.Thread(target=wait_running, daemon=True)
    watcher.start()
    assert running.wait(30)
    second = second_client.submit(**generate_args(seed=1), api_name="/generate")
    second_final = second.result(timeout=120)
    first_final = first.result(timeout=120)
    statuses = [out[1] for out in second.outputs()]
    assert any(s.startswith("waiting: number 1 in line") for s in statuses), statuses
    assert first_final[1].startswith("finished") and second_final[1].startswith("finished")
    first_job, second_job = backend.jobs.get(first_final[0]), backend.jobs.get(second_final[0])
    assert first_job.finished <= second_job.started  # never two at once


def test_dataset_tab_builds_from_an_import_folder_and_leaves_out_unaligned_pieces(studio, client, fixtures):
    _, backend = studio
    folder = backend.workspace.root / "imports" / "mixed"
    folder.mkdir(parents=True)
    for piece in ("bach_bwv66.6", "haydn_opus74no1_movement3"):  # haydn: 1 of 113 bars misaligned
        shutil.copy(fixtures / "preprocess" / f"{piece}.musicxml", folder)
    _, status, rows, datasets, *_ = client.predict(**build_args(source="folder", folder="mixed", name="mixed",
                                                                eval_split=0.0, max_unaligned_share=0.005),
                                                   api_name="/dataset_build")
    assert "1 converted" in status and "1 left out (voices misaligned)" in status, status
    by_piece = {row[1]: row for row in rows["data"]}
    assert by_piece["bach_bwv66.6"][2] == "ok"
    assert by_piece["haydn_opus74no1_movement3"][2:4] == ["excluded", "align"]
    assert "over the 0.5% allowed" in by_piece["haydn_opus74no1_movement3"][4]
    assert ["mixed", 1] == next(row[:2] for row in datasets["data"] if row[0] == "mixed")


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_path_traversal_refused_by_every_path_handler(client, bad):
    calls = [
        ((bad,), "/generate_model"),
        (generate_args(model=bad), "/generate"),
        (build_args(name=bad), "/dataset_build"),
        (build_args(source="folder", folder=bad), "/dataset_build"),
        (build_args(source="upload", name=bad), "/dataset_build"),
        ((bad,), "/annotate_load"),
        ((bad, "piece"), "/annotate_preview"),
        (train_args(dataset=bad), "/train_start"),
        (train_args(base=bad), "/train_start"),
        (train_args(run=bad), "/train_start"),
        ((bad,), "/train_resume"),
        (dpo_args(model=bad), "/dpo_start"),
        (dpo_args(run=bad), "/dpo_start"),
        (dpo_args(scorer="clamp2", clamp2=bad), "/dpo_start"),
        ((bad, 1), "/dpo_pairs"),
        (("r", 1, bad), "/dpo_chosen"),
    ]
    for args, api_name in calls:
        if api_name == "/dataset_build":  # refused in the status line, the tables left as they were
            _, message, *_ = client.predict(**args, api_name=api_name)
            assert message.startswith("**not started:**"), (bad, message)
            assert "secret" not in message, (api_name, message)
            continue
        with pytest.raises(AppError) as refused:
            if isinstance(args, dict):
                client.predict(**args, api_name=api_name)
            else:
                client.predict(*args, api_name=api_name)
        message = str(refused.value)
        assert "secret" not in message, (api_name, message)


def test_file_routes_serve_only_exports(studio, http, client):
    app, backend = studio
    root = backend.workspace.root
    exported = next((root / "exports").rglob("*.raw.abc"), None)
    if exported is None:  # this test may run alone
        client.predict(**generate_args(), api_name="/generate")
        exported = next((root / "exports").rglob("*.raw.abc"))
    assert http.get(f"gradio_api/file={exported}").status_code == 200  # the positive control
    for target in [root / "library.sqlite", root / "settings.json", root / "models" / "tiny.pth",
                   Path("/etc/passwd"), Path.cwd() / "pyproject.toml",
                   f"{root / 'exports'}/../library.sqlite", f"{root / 'exports'}/%2e%2e/library.sqlite",
                   root / "models" / "escape.pth"]:
        response = http.get(f"gradio_api/file={target}")
        assert response.status_code in (403, 404), (target, response.status_code)
        assert b"secret" not in response.content
    # a forged "uploaded" file that is really a server path is refused before any handler reads it
    with pytest.raises(AppError):
        client.predict(handle_file(str(root / "library.sqlite")), api_name="/generate_preview")


def test_upload_size_is_limited(http, tmp_path):
    small = tmp_path / "small.abc"
    small.write_bytes(b"X:1\nK:C\nCDEF|\n")
    big = tmp_path / "big.abc"
    big.write_bytes(b"%" * (2 * 2**20))
    with small.open("rb") as f:
        assert http.post("gradio_api/upload", files={"files": ("small.abc", f)}).status_code == 200
    with big.open("rb") as f:
        response = http.post("gradio_api/upload", files={"files": ("big.abc", f)})
    assert response.status_code == 413


def test_continue_preview_and_errors_are_plain_messages(client, fixtures, tmp_path):
    piece = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))[0]["postprocessed"]
    score = tmp_path / "piece.abc"
    score.write_text(piece, encoding="utf-8")
    html, audio = client.predict(handle_file(str(score)), api_name="/generate_preview")
    assert "data:image/svg+xml;base64," in html and audio and os.path.getsize(audio) > 10_000
    assert '<div class="score-follow" data-follow="{' in html  # an upload's score follows its player too
    not_music = tmp_path / "notes.txt"
    not_music.write_text("hello", encoding="utf-8")
    with pytest.raises(AppError, match="Invalid file type"):
        client.predict(handle_file(str(not_music)), api_name="/generate_preview")
    garbled = tmp_path / "garbled.abc"
    garbled.write_bytes(b"X:1\n\xff\xfe\n")
    with pytest.raises(AppError, match="not UTF-8"):
        client.predict(handle_file(str(garbled)), api_name="/generate_preview")
    with pytest.raises(AppError, match="greater than maximum"):  # Gradio checks ranges ...
        client.predict(**generate_args(top_p=1.5, max_patches=5, bar_retries=8), api_name="/generate")
    with pytest.raises(AppError, match="without '_'"):  # ... the studio checks what Gradio cannot
        client.predict(**generate_args(period="Bar_oque", max_patches=5, bar_retries=8), api_name="/generate")


def test_a_models_card_is_read_once_and_a_foreign_file_is_a_plain_error(tmp_path, fixtures):
    import torch

    from pipelines.errors import NotaGenError
    from pipelines.model.network import count_parameters
    from pipelines.service import Backend, Workspace

    ws = Workspace.open(tmp_path / "workspace")
    shutil.copy(fixtures / "tiny_model.pth", ws.area("models") / "tiny.pth")
    torch.save({"weights": torch.zeros(2)}, ws.area("models") / "foreign.pth")
    backend = Backend(ws)
    try:
        path, card = backend.models.card(TINY)
        assert path == ws.root / TINY and backend.models.card(TINY)[1] is card  # cached while the file is unchanged
        assert f"{count_parameters(card.config) / 1e6:.0f} M parameters" in backend.training.memory(TINY, "", 1, 0)
        assert backend.dpo.memory(TINY).startswith(f"{count_parameters(card.config) / 1e6:.0f} M parameters")
        for ask in (backend.models.prompts, backend.dpo.memory, lambda ref: backend.training.memory(ref, "", 1, 0)):
            with pytest.raises(NotaGenError, match="foreign.pth: not a NotaGen checkpoint"):
                ask("models/foreign.pth")
    finally:
        backend.close()


def test_resuming_a_run_reads_its_saved_settings(tmp_path, fixtures):
    from pipelines.errors import TrainingError
    from pipelines.service import Backend, Workspace

    ws = Workspace.open(tmp_path / "workspace")
    shutil.copy(fixtures / "tiny_model.pth", ws.area("models") / "tiny.pth")
    (ws.area("datasets") / "chorales").mkdir()
    (ws.area("datasets") / "chorales" / "manifest.json").write_text('{"pieces": {}}', encoding="utf-8")
    run = ws.area("runs") / "r1"
    run.mkdir()
    saved = {"data_dir": "/elsewhere/datasets/chorales", "base": str(ws.root / TINY), "preset": None,
             "epochs": 4, "lr": 2e-5, "batch_size": 2, "resume": False, "out_dir": "/elsewhere/r1",
             "betas": [0.9, 0.95], "device": "cuda:3"}
    (run / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    backend = Backend(ws)
    try:
        config = backend.training.resume_config("r1")
        assert (config.data_dir, config.out_dir, config.base) == (ws.area("datasets") / "chorales", run,
                                                                  str(ws.root / TINY))
        assert (config.preset, config.resume, config.epochs, config.lr, config.batch_size) == (None, True, 4, 2e-5, 2)
        assert config.betas == (0.9, 0.95)  # every saved setting, not a hand-kept list of them
        assert config.device == backend.settings.device and config.models_dirs == [ws.area("models")]
        assert backend.models.ref_of("NotaGen-X") == "notagen-x"
        with pytest.raises(TrainingError, match="gone.pth is no longer in the workspace"):
            backend.models.ref_of(str(tmp_path / "gone.pth"))
        with pytest.raises(TrainingError, match="has nothing to resume"):
            backend.training.resume("r1")
        with pytest.raises(TrainingError, match="has no config.json"):
            (ws.area("runs") / "r2").mkdir()
            backend.training.resume_config("r2")
    finally:
        backend.close()
