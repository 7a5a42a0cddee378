"""Files on disk: atomic writes, reading text, and names that work on every OS.

A crash or a cancelled job leaves either the old file or the new one, never half of one:
a write goes to a temp file beside the target, which then replaces it. On Windows that
replace fails with PermissionError while another program (antivirus, OneDrive, an editor,
a search indexer) holds the target open for a moment, so it is retried briefly.

Names follow Windows' rules on every OS, so a workspace moved between systems stays valid:
names that differ only in case are one file there, and a path over 260 characters cannot be
opened by many programs, so generated names are kept short.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.errors import FileInUseError
from pipelines.fields import MAX_SCORE_MB

# Seconds to wait before each new try of a replace that Windows refused (about 1.5 s in all).
REPLACE_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8)
STEM_LIMIT = 80  # characters of a generated file name stem
# Characters of a name a user gives (a dataset, a run) or the build makes (a piece): a dataset file,
# datasets/<name>/augmented/<key>/<piece>_<key>.abc, stays within about 150 characters of the
# workspace, leaving 100 for the workspace's own folder under Windows' 260.
NAME_LIMIT = 60
BOM = "\ufeff"  # Notepad and Excel start UTF-8 files with it


def replace_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """`os.replace(source, target)`, tried again for about 1.5 s while the OS says the file is in use."""
    for delay in (*REPLACE_RETRY_DELAYS_S, None):
        try:
            os.replace(source, target)
            return
        except PermissionError as e:
            if delay is None:
                raise FileInUseError(
                    f"{target}: cannot be replaced because another program holds it open (antivirus, OneDrive, "
                    f"an editor or a viewer); close it, or wait a moment, and try again ({e.strerror})") from e
            time.sleep(delay)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(temp_path)`, then move the temp file onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        replace_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_text(path: str | os.PathLike, errors: str = "strict") -> str:
    """A text file a person may have saved (ABC, prompts, labels): UTF-8, with or without a byte order mark."""
    return Path(path).read_text(encoding="utf-8-sig", errors=errors)


def too_large(path: str | os.PathLike, limit_mb: float = MAX_SCORE_MB) -> str | None:
    """Why the file at `path` is too large to read as a score (its name, size and the limit), or None."""
    size = Path(path).stat().st_size
    if size <= limit_mb * 2**20:
        return None
    return f"{Path(path).name} is {size / 2**20:.1f} MB; score files of up to {limit_mb:g} MB are read"


def without_bom(text: str) -> str:
    """Text with the byte order mark a file or a paste may start with removed."""
    return text[1:] if text.startswith(BOM) else text


def shorten(name: str, limit: int = STEM_LIMIT) -> str:
    """`name` if it has at most `limit` characters, else its start and a hash of all of it (still unique)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{name[:limit - 9].rstrip('._-')}-{digest}"


def safe_stem(text: str) -> str:
    """A file name stem made from any text: letters, digits, `.`, `_` and `-` only, at most 80 characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return shorten(stem) or "piece"


def case_twin(folder: str | os.PathLike, name: str) -> str | None:
    """The name of an entry of `folder` that is `name` in other capitals (the same entry on Windows), if any."""
    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    key = name.casefold()
    return next((entry for entry in sorted(entries) if entry != name and entry.casefold() == key), None)


def claim_name(name: str, used: set[str], suffix: str = "") -> str:
    """`name`, else the first of `name+suffix`, `name+suffix+2`, `name+suffix+3`, ... that is not in `used`
    ignoring case (such names are one file on Windows); the name chosen is added to `used` (casefolded)."""
    candidate, n = name, 1
    while candidate.casefold() in used:
        n += 1
        candidate = f"{name}{suffix}" if n == 2 and suffix else f"{name}{suffix}{n}"
    used.add(candidate.casefold())
    return candidate
