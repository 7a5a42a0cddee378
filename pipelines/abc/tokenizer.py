"""Patch encoding of ABC text, exactly as upstream NotaGen's patchilizer.

A piece is metadata lines followed by tune-body lines (the first tune-body line
is the first one containing `[V:`). Metadata lines are cut into 16-char patches;
tune-body lines are split into bars at barlines and each bar is cut into
patches. A patch that does not fill 16 chars ends with the eos id (2) and is
padded with 0. In stream mode every tune-body line is prefixed `[r:i/j]` (its
index and the number of lines after it), which lets generation continue a piece
past the model's patch length from any line.
"""
from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass

import numpy as np

# The vocabulary is ASCII; ids below 3 are special.
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2

# A tune-body line's `[r:index/remaining]` prefix, as stream mode writes it.
STREAM_PREFIX = re.compile(r"^\[r:\d+/\d+\]")
BARLINES = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BARLINE_SPLIT = re.compile("(" + "|".join(map(re.escape, BARLINES)) + ")")


def readable(text: str) -> str:
    """Generated text as a musician reads it while it is written: without the prompt's single-`%`
    header lines (`%end` ...) and without the `[r:i/j]` line prefixes the model counts bars with."""
    return "\n".join(STREAM_PREFIX.sub("", line) for line in text.split("\n")
                     if not (line.startswith("%") and not line.startswith("%%")))


def split_bars(lines: list[str]) -> list[str]:
    """Split tune-body lines into bars; each bar after the first starts with its barline.

    A line's closing barline (and newline) is merged into its last bar unless that
    last piece holds a voice change, as upstream does. Upstream stops splitting
    (dropping this line and the rest) at a line that leaves a barline with nothing
    after it, which only a prefix cut right after a barline can do; that is kept
    for exact equality, and the generation engine only encodes whole lines.
    """
    bars: list[str] = []
    for line in lines:
        parts = [p for p in _BARLINE_SPLIT.split(line) if p]
        if len(parts) <= 1:
            bars.extend(parts)
            continue
        first = [] if parts[0] in BARLINES else [parts.pop(0)]
        if len(parts) % 2:
            break
        paired = first + [parts[i] + parts[i + 1] for i in range(0, len(parts), 2)]
        if "V" not in paired[-1]:
            if len(paired) == 1:
                break
            tail = paired.pop()
            paired[-1] += tail
        bars.extend(paired)
    return bars


def split_patches(text: str, patch_size: int, complete: bool = True) -> list[str]:
    """Cut text into patches; `complete` ends a short last patch with eos."""
    if complete and len(text) % patch_size:
        text += chr(EOS_ID)
    return [text[i:i + patch_size] for i in range(0, len(text), patch_size)]


def stream_prefix(lines: list[str], total: int | None = None) -> list[str]:
    """Prefix every tune-body line with `[r:index/remaining]`, counting `total` lines (default: these)."""
    n = len(lines) if total is None else total
    return [f"[r:{i}/{n - i - 1}]{line}" for i, line in enumerate(lines)]


@dataclass(frozen=True)
class Patchilizer:
    patch_size: int = 16
    stream: bool = True

    @property
    def bos_patch(self) -> str:
        return chr(BOS_ID) * (self.patch_size - 1) + chr(EOS_ID)

    @property
    def eos_patch(self) -> str:
        return chr(BOS_ID) + chr(EOS_ID) * (self.patch_size - 1)

    def metadata_patches(self, lines: list[str]) -> list[str]:
        return [p for line in lines for p in split_patches(line, self.patch_size)]

    def tunebody_patches(self, lines: list[str], open_end: bool = False) -> list[str]:
        """Patches of the bars of `lines`; with `open_end` the last bar is left unfinished."""
        bars = split_bars(lines)
        patches = []
        for i, bar in enumerate(bars):
            last = open_end and i == len(bars) - 1
            patches += split_patches(bar, self.patch_size, complete=not last)
        return patches

    def to_ids(self, patch: str, pad: bool = True) -> list[int]:
        ids = [ord(c) for c in patch]
        return ids + [PAD_ID] * (self.patch_size - len(ids)) if pad else ids

    def ids_array(self, patches: list[str]) -> np.ndarray:
        """(N, patch_size) code points of padded patches: `to_ids` of each, in one pass (~10x faster)."""
        text = "".join(p.ljust(self.patch_size, chr(PAD_ID)) for p in patches)
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).reshape(-1, self.patch_size).astype(np.int64)

    def encode_train(self, abc: str, patch_length: int, add_special_patches: bool = True,
                     cut: bool = True, rng: random.Random | None = None, as_array: bool = False):
        """Training patches (lists of ids, or one (N, P) array with `as_array`); pieces longer
        than `patch_length` are cut at a line boundary.

        In stream mode the cut keeps the metadata and either the head of the tune
        body, its tail, or a middle section starting at a random line (chosen
        with `rng`), as upstream does.
        """
        lines = [line + "\n" for line in abc.split("\n") if line]
        body_start = next((i for i, line in enumerate(lines) if "[V:" in line), len(lines) - 1)
        meta_lines, body_lines = lines[:body_start], lines[body_start:]
        if self.stream:
            body_lines = stream_prefix(body_lines)
        meta = self.metadata_patches(meta_lines)
        body = self.tunebody_patches(body_lines)
        if add_special_patches:
            meta = [self.bos_patch] + meta
            body = body + [self.eos_patch]
        patches = meta + body
        if self.stream and len(patches) > patch_length:
            patches = meta + self._cut_body(body_lines, body, len(meta), patch_length,
                                            add_special_patches, rng or random.Random())
        if cut:
            patches = patches[:patch_length]
        ids = self.ids_array(patches)
        return ids if as_array else ids.tolist()

    def _cut_body(self, body_lines, body, n_meta, patch_length, add_special, rng) -> list[str]:
        # A cut may start after any patch that ends a line (index 0 = whole body).
        line_starts = [0] + [i + 1 for i, p in enumerate(body) if "\n" in p]
        overflow = n_meta + len(body) - patch_length
        starts = line_starts[:bisect.bisect_left(line_starts, overflow) + 1]
        choices = ["head", "tail", "middle"][:min(len(starts), 3)]
        choice = rng.choice(choices)
        if choice == "head":
            return body
        line = len(starts) - 1 if choice == "tail" else rng.choice(range(1, len(starts) - 1))
        kept = self.tunebody_patches(body_lines[line:])
        return kept + [self.eos_patch] if add_special else kept

    def encode_generate(self, abc: str, patch_length: int, add_special_patches: bool = True) -> list[list[int]]:
        """Patches of a generation prefix; a last patch that is not finished is not padded.

        The prefix may end mid-line (then its last line has no newline) and mid-bar.
        """
        raw = [line for line in abc.split("\n") if line]
        body_start = next((i for i, line in enumerate(raw) if line.startswith(("[V:", "[r:"))), len(raw))
        meta_lines = [line + "\n" for line in raw[:body_start]]
        body_lines = [line + "\n" for line in raw[body_start:]]
        if self.stream and body_lines and not abc.endswith("\n"):
            body_lines[-1] = body_lines[-1][:-1]
        patches = self.metadata_patches(meta_lines)
        if body_lines:
            patches += self.tunebody_patches(body_lines, open_end=True)
        if add_special_patches:
            patches = [self.bos_patch] + patches
        patches = patches[:patch_length]
        return [self.to_ids(p, pad=len(p) == self.patch_size or p[-1] == chr(EOS_ID)) for p in patches]

    @staticmethod
    def decode_patch(ids) -> str:
        """Chars of one patch up to its eos; special ids (0, 1) are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i > EOS_ID:
                out.append(chr(i))
        return "".join(out)

    def decode(self, patches) -> str:
        return "".join(self.decode_patch(p) for p in patches)



def pad_patches(encoded, patch_size: int):
    """Right-pad encoded pieces (lists of patches or (N, P) arrays) into (B, N, P) patches and
    (B, N) masks (1 for a real patch), as tensors."""
    import torch  # here, so that reading and writing ABC never loads torch

    width = max(len(e) for e in encoded)
    patches = np.zeros((len(encoded), width, patch_size), dtype=np.int64)  # numpy: ~15x faster than per-row tensors
    masks = np.zeros((len(encoded), width), dtype=np.int64)
    for i, e in enumerate(encoded):
        patches[i, :len(e)] = e
        masks[i, :len(e)] = 1
    return torch.from_numpy(patches), torch.from_numpy(masks)
