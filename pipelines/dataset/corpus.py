"""The built-in dataset: labelled scores from the corpus bundled with music21 (works offline).

Bach's chorales (Baroque / Bach, Johann Sebastian / Choral), the Haydn, Mozart and
Beethoven string quartets (Classical / ... / Chamber), Schumann's first quartet,
and the few other pieces there whose composer and scoring NotaGen-X knows. It is
the data of the demo model and of the tests.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from pipelines.dataset.annotate import Labels
from pipelines.dataset.build import BuildReport, DatasetConfig, build_named, piece_name
from pipelines.errors import DatasetError

BACH = ("Baroque", "Bach, Johann Sebastian")
BEETHOVEN = ("Classical", "Beethoven, Ludwig van")
HAYDN = ("Classical", "Haydn, Joseph")
MOZART = ("Classical", "Mozart, Wolfgang Amadeus")
SCHUMANN = ("Romantic", "Schumann, Robert")

# (path below music21's corpus folder, labels); the first matching rule wins, in this order.
CORPUS_RULES: tuple[tuple[str, tuple[str, str, str]], ...] = (
    (r"bach/bwv[0-9.]+(-[a-z0-9]+)?\.mxl", (*BACH, "Choral")),
    (r"beethoven/opus(18no[0-9]|59no[0-9]|74|132|133)(/movement[0-9])?\.mxl", (*BEETHOVEN, "Chamber")),
    (r"haydn/opus[0-9]+no[0-9]+/movement[0-9]\.mxl", (*HAYDN, "Chamber")),
    (r"mozart/(k80|k155|k156|k458)/movement[0-9]\.mxl", (*MOZART, "Chamber")),
    (r"mozart/k545/movement[0-9]_exposition\.mxl", (*MOZART, "Keyboard")),
    (r"schumann_robert/opus41no1/movement[0-9]\.mxl", (*SCHUMANN, "Chamber")),
    (r"schumann_robert/(opus48no2\.mxl|dichterliebe_no2\.xml)", (*SCHUMANN, "Art Song")),
    (r"corelli/opus3no1/1grave\.xml", ("Baroque", "Corelli, Arcangelo", "Chamber")),
    (r"handel/rinaldo/Lascia_chio_pianga\.mxl", ("Baroque", "Handel, George Frideric", "Vocal-Orchestral")),
    (r"chopin/mazurka06-2\.krn", ("Romantic", "Chopin, Frederic", "Keyboard")),
)


def corpus_root() -> Path:
    import music21

    root = Path(music21.__file__).resolve().parent / "corpus"
    if not root.is_dir():
        raise DatasetError(f"{root}: music21's bundled corpus is missing (reinstall music21)")
    return root


def corpus_sources(limit: int | None = None) -> list[tuple[Path, str, Labels]]:
    """(file, piece name, labels) of the labelled corpus pieces, in rule order then path order."""
    root = corpus_root()
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    chosen = []
    for pattern, labels in CORPUS_RULES:
        rule = re.compile(pattern)
        chosen.extend((root / f, piece_name(Path(f)), Labels(*labels)) for f in files if rule.fullmatch(f))
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"limit {limit} must be at least 1")
        chosen = chosen[:limit]
    return chosen


def build_corpus_dataset(out_dir: str | os.PathLike, limit: int | None = None, config: DatasetConfig | None = None,
                         on_progress: Callable[[int, int], None] | None = None,
                         should_stop: Callable[[], bool] | None = None) -> BuildReport:
    """Build the labelled corpus dataset into `out_dir`; `limit` takes the first N pieces (chorales first)."""
    config = config or DatasetConfig()
    sources = corpus_sources(limit)
    config.piece_labels = {piece: labels for _, piece, labels in sources} | config.piece_labels
    return build_named([(path, piece) for path, piece, _ in sources], out_dir, config, on_progress, should_stop)
