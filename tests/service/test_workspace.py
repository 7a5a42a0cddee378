"""The workspace's path-safety function and layout."""
import pytest

from pipelines.errors import WorkspaceError
from pipelines.files import NAME_LIMIT
from pipelines.service.workspace import AREAS, Workspace, check_name, inside
from tests.paths import needs_symlinks

BAD_PATHS = [
    "..", "../secret.txt", "datasets/../../etc/passwd", "a/b/../../..", "..\\..\\windows",
    "/etc/passwd", "\\Windows\\system32", "C:\\Windows\\win.ini", "c:relative.txt", "D:/data",
    "\\\\server\\share\\file", "//server/share/file", "\\\\?\\C:\\file", "\\\\.\\COM1",
    "CON", "nul", "NUL.txt", "models/com1.pth", "LPT9", "aux.tar.gz", "conin$",
    "file.txt:stream", "name.", "name ", "bad|name", "a\x00b", "", "   ", "tab\tname",
]


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(tmp_path / "ws")


def test_open_creates_the_layout(ws):
    for area in AREAS:
        assert (ws.root / area).is_dir()
    assert ws.library_path == ws.root / "library.sqlite"
    assert ws.settings_path == ws.root / "settings.json"


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_unsafe_paths_are_refused(ws, bad):
    with pytest.raises(WorkspaceError):
        inside(ws.root, bad)


def test_safe_paths_resolve_inside(ws):
    (ws.root / "datasets" / "bach").mkdir()
    assert inside(ws.root, "datasets/bach") == ws.root / "datasets" / "bach"
    assert inside(ws.root, "datasets\\bach", must_exist=True) == ws.root / "datasets" / "bach"
    assert inside(ws.root, "./datasets//bach/") == ws.root / "datasets" / "bach"
    assert ws.path("datasets", "new one") == ws.root / "datasets" / "new one"
    assert inside(ws.root, "con-artist.txt").name == "con-artist.txt"  # only the exact device names are reserved
    with pytest.raises(WorkspaceError, match="no such"):
        inside(ws.root, "datasets/missing", must_exist=True)


@needs_symlinks
def test_links_that_lead_out_are_refused(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x", encoding="utf-8")
    (ws.root / "imports" / "escape").symlink_to(outside, target_is_directory=True)
    (ws.root / "imports" / "alias").symlink_to(ws.root / "datasets", target_is_directory=True)
    with pytest.raises(WorkspaceError, match="outside"):
        inside(ws.root, "imports/escape/secret.txt")
    with pytest.raises(WorkspaceError, match="outside"):
        ws.path("imports", "escape")
    assert inside(ws.root, "imports/alias") == ws.root / "datasets"  # a link that stays inside is fine
    # an area path cannot climb to its siblings through a link either
    with pytest.raises(WorkspaceError):
        ws.path("exports", "../library.sqlite")
    assert "imports/escape/secret.txt" not in ws.files("imports", (".txt",))


def test_listings_are_server_side_pickers(ws):
    (ws.root / "imports" / "bach").mkdir()
    (ws.root / "imports" / ".hidden").mkdir()
    (ws.root / "models" / "a.pth").write_bytes(b"x")
    (ws.root / "models" / "notes.txt").write_bytes(b"x")
    assert ws.folders("imports") == ["bach"]
    assert ws.files("models", (".pth",)) == ["models/a.pth"]
    with pytest.raises(WorkspaceError):
        ws.area("..")


@pytest.mark.parametrize("name", ["../x", "a/b", "CON", "", "x" * 101, "-flag", "a:b"])
def test_new_names_are_one_plain_component(name):
    with pytest.raises(WorkspaceError):
        check_name(name, "dataset name")


def test_good_names_pass():
    assert check_name("  Bach chorales (2024) v1.2 ", "dataset name") == "Bach chorales (2024) v1.2"


def test_a_new_name_equal_to_an_existing_one_but_for_capitals_is_refused(ws):
    (ws.area("runs") / "Chorales").mkdir()
    (ws.area("models") / "Bach.pth").write_bytes(b"x")
    assert ws.path("runs", "Chorales") == ws.area("runs").resolve() / "Chorales"
    for area, name, twin in (("runs", "chorales", "Chorales"), ("runs", "CHORALES/last.pth", "Chorales"),
                             ("models", "bach.pth", "Bach.pth")):
        with pytest.raises(WorkspaceError, match=f"'{twin}' already exists.*differ only in capitals"):
            ws.path(area, name)
    assert ws.path("runs", "Chorales/last.pth").name == "last.pth"  # inside the existing one: fine
    assert ws.path("runs", "Haydn").name == "Haydn"


def test_a_name_over_the_limit_is_refused_so_paths_stay_short():
    assert check_name("x" * NAME_LIMIT, "run name") == "x" * NAME_LIMIT
    with pytest.raises(WorkspaceError, match=f"at most {NAME_LIMIT} characters"):
        check_name("x" * (NAME_LIMIT + 1), "run name")
