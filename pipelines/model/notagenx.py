"""NotaGen-X by name: finding its file, and fetching it from the official Hugging Face repository.

NotaGen-X is present when its file is found: an explicit path (from settings),
or the official file name inside one of the models folders (the workspace's
`models/`). `download_notagenx` streams the file into a temp file beside its
destination while hashing it, checks its size and SHA-256 against what the hub
reports (for a Git LFS file the ETag is the SHA-256 of its content), checks its
tensor shapes, and only then moves it into place; a cancelled or failed
download leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import CheckpointError, NotaGenError
from pipelines.files import replace_file
from pipelines.model.checkpoint import infer_config, read_checkpoint_file
from pipelines.model.config import NotaGenConfig, preset

NOTAGENX_REPO = "ElectricAlexis/NotaGen"
NOTAGENX_FILE = "weights_notagenx_p_size_16_p_length_1024_p_layers_20_h_size_1280.pth"
NOTAGENX_NAMES = ("notagen-x", "notagenx")  # compared case-insensitively


class DownloadError(NotaGenError):
    """A model download that failed, was cancelled, or produced a file that does not check out."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    size: int | None = None  # bytes, when known
    sha256: str | None = None  # hex digest, when known


def is_notagenx_name(spec: str) -> bool:
    return spec.strip().lower() in NOTAGENX_NAMES


def find_notagenx(models_dirs: Sequence[Path] = (), explicit: Path | None = None) -> Path | None:
    """The NotaGen-X file if present: `explicit` (a settings path) or the official name in a models folder."""
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path(d) / NOTAGENX_FILE for d in models_dirs]
    return next((p for p in candidates if p.is_file()), None)


def resolve_base(spec: str, models_dirs: Sequence[Path] = ()) -> Path:
    """A base model argument (a file, or NotaGen-X by name) as an existing file."""
    if is_notagenx_name(spec):
        found = find_notagenx(models_dirs)
        if found is None:
            where = ", ".join(str(d) for d in models_dirs) or "no models folder given"
            raise CheckpointError(f"NotaGen-X ({NOTAGENX_FILE}) is not in {where}; "
                                  f"download it with `notagen download-notagenx`")
        return found
    path = Path(spec)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def notagenx_remote(endpoint: str | None = None, revision: str = "main") -> RemoteFile:
    """The official file's URL, size and SHA-256, as the Hugging Face hub reports them (network)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(NOTAGENX_REPO, NOTAGENX_FILE, revision=revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url)
    except OSError as e:  # requests' errors are OSErrors; so are huggingface_hub's HTTP errors
        raise DownloadError(f"cannot reach {url}: {e}") from e
    etag = (meta.etag or "").strip('"').lower()
    sha = etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None
    return RemoteFile(url=url, size=meta.size, sha256=sha)


def download_file(remote: RemoteFile, dest: Path, on_progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, chunk_size: int = 1 << 20) -> Path:
    """Stream `remote` to `dest` through a temp file; verify size and SHA-256; then move it in place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(remote.url, headers={"User-Agent": "notagen-studio"})
            try:
                response = urllib.request.urlopen(request, timeout=60)
            except OSError as e:
                raise DownloadError(f"cannot download {remote.url}: {e}") from e
            with response:
                total = remote.size or int(response.headers.get("Content-Length") or 0)
                while block := response.read(chunk_size):
                    if should_stop and should_stop():
                        raise DownloadError(f"download of {dest.name} cancelled after {done} bytes")
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if on_progress:
                        on_progress(done, total)
        if remote.size is not None and done != remote.size:
            raise DownloadError(f"{remote.url}: got {done} bytes, expected {remote.size}")
        if remote.sha256 is not None and digest.hexdigest() != remote.sha256.lower():
            raise DownloadError(f"{remote.url}: SHA-256 {digest.hexdigest()} does not match {remote.sha256}")
        replace_file(tmp, dest)  # retried while an antivirus scans the new file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def check_notagen_file(path: Path, expected: NotaGenConfig) -> None:
    """The file is a NotaGen state dict of the expected sizes (read memory-mapped, no model built)."""
    data = read_checkpoint_file(path)
    found, problem = None, "no 'model' entry"
    if isinstance(data, dict) and "model" in data:
        try:
            found = infer_config(data["model"])
        except CheckpointError as e:
            problem = str(e)  # only the text: its traceback would keep the file mapped
    del data  # unmapped before the file is moved or removed (Windows refuses either while it is mapped)
    if found is None:
        raise DownloadError(f"{path}: not a NotaGen checkpoint ({problem})")
    if found != expected:
        raise DownloadError(f"{path}: holds a model of sizes {found}, expected {expected}")


def download_notagenx(models_dir: Path, on_progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None, remote: RemoteFile | None = None,
                      expected: NotaGenConfig | None = None) -> Path:
    """Fetch NotaGen-X into `models_dir` (the official name), verified; returns its path.

    `remote` and `expected` default to the official file and NotaGen-X's sizes;
    tests pass a local file:// source and a small model.
    """
    remote = remote or notagenx_remote()
    dest = Path(models_dir) / NOTAGENX_FILE
    # Download beside the destination under another name, so a file that fails the shape check never lands.
    staged = download_file(remote, dest.with_name(dest.name + ".verify"), on_progress, should_stop)
    try:
        check_notagen_file(staged, expected or preset("notagen-x"))
        replace_file(staged, dest)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return dest
