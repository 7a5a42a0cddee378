"""The workspace: one folder that holds all studio data, and the one check every user path goes through.

Layout:

    imports/         score files a user uploads or copies in, one folder per import
    datasets/<name>/ built datasets (see pipelines.dataset)
    models/          checkpoints: NotaGen-X, downloaded or copied models
    runs/<name>/     training and DPO runs (checkpoints, logs, prompts.txt)
    exports/<job>/   files a user downloads (ABC, MusicXML, MIDI, WAV, PDF); the only folder served
    jobs/            one JSON file per job (see pipelines.jobs)
    library.sqlite   every generation (see pipelines.library)
    settings.json    studio settings (see pipelines.settings)

`inside(root, user_path)` is the path-safety function: a path typed or picked in the
UI (or sent over HTTP) is taken relative to a workspace folder and must stay inside it.
It refuses `..`, absolute paths, drive letters, UNC and device paths, Windows reserved
names (CON, NUL, COM1, ...), alternate data streams, names Windows would silently change
(trailing dots or spaces), control characters, links or junctions that lead out, and a new
name that an existing one equals but for capitals (one file on Windows).
The rules are the same on every OS, so a workspace moved between Linux and Windows stays valid.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import WorkspaceError
from pipelines.files import NAME_LIMIT, case_twin

AREAS = ("imports", "datasets", "models", "runs", "exports", "jobs")
LIBRARY_NAME = "library.sqlite"
SETTINGS_NAME = "settings.json"

_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
_RESERVED |= {f"{dev}{n}" for dev in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]}
_DRIVE = re.compile(r"^[A-Za-z]:")
_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9 ._,+()-]{{0,{NAME_LIMIT - 1}}}$")
_FORBIDDEN_CHARS = set('<>:"|?*')


def check_part(part: str, shown: str) -> None:
    """One path component: refuse what is unsafe or not portable to Windows."""
    if part in ("", "."):
        return
    if part == "..":
        raise WorkspaceError(f"{shown!r}: '..' is not allowed; choose a path inside the workspace")
    if any(ord(c) < 32 for c in part) or part and _FORBIDDEN_CHARS & set(part):
        raise WorkspaceError(f"{shown!r}: the name {part!r} has characters Windows does not allow (<>:\"|?* or control)")
    if part != part.rstrip(" ."):
        raise WorkspaceError(f"{shown!r}: the name {part!r} ends in a dot or space, which Windows drops")
    stem = part.split(".")[0].rstrip(" ").upper()
    if stem in _RESERVED:
        raise WorkspaceError(f"{shown!r}: {part!r} is a reserved device name on Windows")


def check_relative(user_path: str | os.PathLike) -> list[str]:
    """The components of a relative user path, after the checks that need no file system."""
    text = os.fspath(user_path)
    if not isinstance(text, str):
        raise WorkspaceError(f"{text!r}: a path must be text")
    if not text.strip():
        raise WorkspaceError("an empty path was given; choose a file or folder inside the workspace")
    if "\x00" in text:
        raise WorkspaceError(f"{text!r}: a path cannot contain a NUL character")
    if text.startswith(("/", "\\")):
        kind = "a UNC or device path" if text.startswith(("//", "\\\\")) else "an absolute path"
        raise WorkspaceError(f"{text!r}: {kind} is not allowed; give a path relative to the workspace")
    if _DRIVE.match(text):
        raise WorkspaceError(f"{text!r}: a drive letter is not allowed; give a path relative to the workspace")
    if Path(text).is_absolute():
        raise WorkspaceError(f"{text!r}: an absolute path is not allowed; give a path relative to the workspace")
    parts = re.split(r"[\\/]+", text)
    for part in parts:
        check_part(part, text)
    return [p for p in parts if p not in ("", ".")]


def inside(root: str | os.PathLike, user_path: str | os.PathLike, must_exist: bool = False) -> Path:
    """`user_path` (relative) resolved inside `root`; WorkspaceError for anything that could lead out.

    The result is the resolved path, so a link inside the workspace that points
    elsewhere inside it is followed, and one that points out is refused.
    """
    parts = check_relative(user_path)
    base = Path(root).resolve()
    candidate = base.joinpath(*parts)
    resolved = candidate.resolve(strict=False)
    if resolved != base and not resolved.is_relative_to(base):
        raise WorkspaceError(f"{os.fspath(user_path)!r}: leads outside the workspace (through a link or junction)")
    check_case(base, parts, os.fspath(user_path))
    if must_exist and not resolved.exists():
        raise WorkspaceError(f"{os.fspath(user_path)!r}: no such file or folder in the workspace")
    return resolved


def check_case(base: Path, parts: list[str], shown: str) -> None:
    """Refuse a new name that an existing one equals but for capitals: Windows would take it for that one
    (a run 'chorales' beside 'Chorales' would resume or overwrite it)."""
    folder = base
    for part in parts:
        if not os.path.lexists(folder / part):
            twin = case_twin(folder, part)
            if twin is not None:
                raise WorkspaceError(f"{shown!r}: {twin!r} already exists, and names that differ only in capitals "
                                     f"are the same on Windows; use {twin!r} or another name")
            return
        folder = folder / part


def check_name(name: str, what: str = "name") -> str:
    """A new folder or file name a user types (a dataset, a run): one plain, portable component."""
    name = (name or "").strip()
    if not name:
        raise WorkspaceError(f"the {what} is empty")
    check_relative(name)
    if not _NAME.match(name) or "/" in name or "\\" in name:
        raise WorkspaceError(f"{name!r}: a {what} is letters, digits, spaces and . _ , + ( ) -, "
                             f"starting with a letter or digit, at most {NAME_LIMIT} characters")
    return name


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Workspace":
        """The workspace at `root`, creating its folders; WorkspaceError if it cannot be made."""
        path = Path(root).expanduser().resolve()
        try:
            for area in AREAS:
                (path / area).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WorkspaceError(f"{path}: cannot create the workspace ({e.strerror})") from None
        return cls(path)

    def area(self, name: str) -> Path:
        if name not in AREAS:
            raise WorkspaceError(f"{name!r} is not a workspace area ({', '.join(AREAS)})")
        return self.root / name

    def path(self, area: str, user_path: str | os.PathLike, must_exist: bool = False) -> Path:
        """A user path inside one area (e.g. a dataset name inside datasets/)."""
        return inside(self.area(area), user_path, must_exist=must_exist)

    def relative(self, path: Path) -> str:
        """How a path inside the workspace is shown and sent back: relative, with '/'."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    @property
    def library_path(self) -> Path:
        return self.root / LIBRARY_NAME

    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_NAME

    def folders(self, area: str) -> list[str]:
        """Sub-folders of an area, by name (what a folder picker lists)."""
        base = self.area(area)
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def files(self, area: str, suffixes: tuple[str, ...], depth: int = 3) -> list[str]:
        """Files with these suffixes inside an area, as workspace-relative paths (links leading out skipped)."""
        base = self.area(area)
        found = []
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if len(rel.parts) > depth or any(p.startswith(".") for p in rel.parts):
                continue
            if path.is_file() and path.suffix.lower() in suffixes:
                if path.resolve().is_relative_to(self.root):
                    found.append(self.relative(path))
        return found
