"""Files on disk: atomic writes (a temp file beside the target, then a rename) and safe file names.

A crash or a cancelled job leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(temp_path)`, then move the temp file onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def safe_stem(text: str) -> str:
    """A file name stem made from any text: letters, digits, `.`, `_` and `-` only, at most 80 characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return stem[:80] or "piece"
