"""Windows' rule for replacing files, simulated where /proc shows what this process holds.

Windows refuses to replace (or delete) a file while a process holds it open or has any part
of it memory-mapped; Linux allows both, so a test there cannot see that fault on its own.
`simulate_windows_replace` (the `windows_replace` fixture) makes `os.replace` refuse such files as
Windows does.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROC = Path("/proc/self")
needs_proc = pytest.mark.skipif(not (PROC / "maps").is_file(), reason="needs /proc to see mapped and open files")


def mapped_files() -> set[str]:
    """Files this process has memory-mapped (a replaced file shows as '... (deleted)' and is left out)."""
    found = set()
    for line in (PROC / "maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            found.add(parts[5])
    return found


def open_files() -> set[str]:
    found = set()
    for fd in os.listdir(PROC / "fd"):
        try:
            found.add(os.readlink(PROC / "fd" / fd))
        except OSError:
            pass  # closed meanwhile
    return found


def held(path: str | os.PathLike) -> bool:
    """Whether this process maps or holds open the file at `path`."""
    real = os.path.realpath(path)
    return real in mapped_files() or real in open_files()


def simulate_windows_replace(monkeypatch) -> list[str]:
    """`os.replace` that raises PermissionError, as Windows does, while either file is held; returns the refusals.

    Without /proc it changes nothing: Windows itself applies the rule, other systems are not checked.
    """
    real_replace = os.replace
    refused: list[str] = []
    if not (PROC / "maps").is_file():
        return refused

    def replace(source, target, **kw):
        for path in (source, target):
            if os.path.exists(path) and held(path):
                refused.append(os.fspath(path))
                raise PermissionError(13, "The process cannot access the file because it is being used by "
                                          "another process", os.fspath(path))
        return real_replace(source, target, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr("pipelines.files.REPLACE_RETRY_DELAYS_S", (0.01,))  # a held file stays held
    return refused
