"""The library: every generation the studio made, in one SQLite file under the workspace.

A row keeps what is needed to find, replay and judge a piece: the model, the prompt,
the sampling parameters and seed, when it was made, its status (ok / limit /
cancelled / invalid, with the reason), the generated and post-processed text, the
exported files and a rating (-1 thumbs down, 0 none, +1 thumbs up). A pairwise judgement
("A is better than B", table `judgements`) compares two finished pieces of one prompt; the
latest judgement of two pieces is the one kept, whichever way it went. Rated pieces
(`preference_records`) and judged pairs (`pairwise_records`) are the human preferences DPO
learns from. A continued piece names the score it continued in its parameters (`continue_name`);
a variation or a rewritten bar of a library piece also names that piece (`parent_id`), and `keep`
makes the chosen one a version of it (`version` 2, 3, ...; the parent is version 1; 0: not kept).
A variation of an uploaded score has no library parent: its file name stays the record, and its
kept versions are numbered among those of the same file.

`revision()` is a counter that every added or re-rated row, and every judgement given or removed,
moves on (SQLite triggers, so any writer counts, the CLI included): a viewer asks it every few
seconds and reloads only when it moved. Schema 2 added it; a library of schema 1 gets the counter
when it is opened. Schema 3 added `parent_id` and `version` and the `judgements` table: an older
library gets the columns (empty) and the table when it is opened.

Every call opens its own connection, so the UI's threads and the job worker can use
one Library object; WAL mode lets readers go on while a job writes.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.errors import NotaGenError

SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    period TEXT NOT NULL DEFAULT '',
    composer TEXT NOT NULL DEFAULT '',
    instrumentation TEXT NOT NULL DEFAULT '',
    parameters TEXT NOT NULL DEFAULT '{}',
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    raw TEXT NOT NULL DEFAULT '',
    abc TEXT,
    files TEXT NOT NULL DEFAULT '{}',
    seconds REAL NOT NULL DEFAULT 0,
    rating INTEGER NOT NULL DEFAULT 0,
    parent_id INTEGER,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS generations_created ON generations(created);
CREATE TABLE IF NOT EXISTS changes (one INTEGER PRIMARY KEY CHECK (one = 1), revision INTEGER NOT NULL);
INSERT OR IGNORE INTO changes (one, revision) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS generations_added AFTER INSERT ON generations
    BEGIN UPDATE changes SET revision = revision + 1; END;
CREATE TRIGGER IF NOT EXISTS generations_changed AFTER UPDATE ON generations
    BEGIN UPDATE changes SET revision = revision + 1; END;
CREATE TRIGGER IF NOT EXISTS generations_removed AFTER DELETE ON generations
    BEGIN UPDATE changes SET revision = revision + 1; END;
"""
# Columns newer than schema 1, added to an older library's table when it is opened (name -> declaration).
_ADDED_COLUMNS = {"parent_id": "INTEGER", "version": "INTEGER NOT NULL DEFAULT 0"}
_INDEXES = "CREATE INDEX IF NOT EXISTS generations_parent ON generations(parent_id);"
# Pairwise judgements, in a table of their own (created where missing, so any older library gets it). One row per
# two pieces, whichever way round (the unique index): judging them again replaces the row.
_JUDGEMENTS = """
CREATE TABLE IF NOT EXISTS judgements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    better INTEGER NOT NULL REFERENCES generations(id),
    worse INTEGER NOT NULL REFERENCES generations(id),
    CHECK (better != worse)
);
CREATE UNIQUE INDEX IF NOT EXISTS judgements_pieces ON judgements(min(better, worse), max(better, worse));
CREATE TRIGGER IF NOT EXISTS judgements_added AFTER INSERT ON judgements
    BEGIN UPDATE changes SET revision = revision + 1; END;
CREATE TRIGGER IF NOT EXISTS judgements_removed AFTER DELETE ON judgements
    BEGIN UPDATE changes SET revision = revision + 1; END;
CREATE TRIGGER IF NOT EXISTS judgements_of_removed AFTER DELETE ON generations
    BEGIN DELETE FROM judgements WHERE better = old.id OR worse = old.id; END;
"""
STATUSES = ("ok", "limit", "cancelled", "invalid", "unchanged")  # unchanged: a continuation with nothing added
_COLUMNS = ("id", "created", "job_id", "model", "prompt", "period", "composer", "instrumentation", "parameters",
            "seed", "status", "reason", "raw", "abc", "files", "seconds", "rating", "parent_id", "version")


class LibraryError(NotaGenError):
    """The library file cannot be read or written, or an entry is missing."""


@dataclass
class Generation:
    model: str  # workspace-relative path or a named model ("demo", "notagen-x")
    prompt: str  # Period_Composer_Instrumentation
    seed: int
    status: str
    parameters: dict = field(default_factory=dict)  # sampling, limits, continuation
    period: str = ""
    composer: str = ""
    instrumentation: str = ""
    reason: str = ""
    raw: str = ""
    abc: str | None = None
    files: dict = field(default_factory=dict)  # kind -> workspace-relative path of an export
    seconds: float = 0.0
    job_id: str = ""
    rating: int = 0
    parent_id: int | None = None  # the library piece this one is a variation or a rewritten bar of
    version: int = 0  # kept as version 2, 3, ... of its parent (or of the score it continues); 0: not kept
    created: float = 0.0
    id: int | None = None

    @property
    def continued_from(self) -> str:
        """The name of the score this piece continues ("" for a new piece)."""
        return str(self.parameters.get("continue_name") or "")

    @property
    def kept(self) -> bool:
        return self.version > 0

    @property
    def keepable(self) -> bool:
        """A finished variation (or rewritten bar) not kept yet: what `Library.keep` takes."""
        return not self.kept and self.abc is not None and (self.parent_id is not None or bool(self.continued_from))


@dataclass(frozen=True)
class PreferenceRecord:
    """A human judgement for DPO: the piece, +1 (liked) or -1 (disliked), and its prompt."""
    abc: str
    rating: int
    prompt: str
    model: str
    id: int


@dataclass(frozen=True)
class Judgement:
    """"Piece `better` is better than piece `worse`": two finished pieces of one prompt, as the user judged them."""
    id: int
    better: int
    worse: int
    created: float

    def other(self, entry_id: int) -> int:
        """The piece this judgement compares `entry_id` with."""
        return self.worse if entry_id == self.better else self.better


@dataclass(frozen=True)
class PairRecord:
    """A pairwise judgement for DPO: the better and the worse piece's ABC, their prompt and ids."""
    better_abc: str
    worse_abc: str
    prompt: str
    better: int
    worse: int


class Library:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with closing(self._connect()) as db, db:
                db.executescript(_SCHEMA)
                present = {row["name"] for row in db.execute("PRAGMA table_info(generations)")}
                for name, declaration in _ADDED_COLUMNS.items():
                    if name not in present:
                        db.execute(f"ALTER TABLE generations ADD COLUMN {name} {declaration}")
                db.executescript(_INDEXES)
                db.executescript(_JUDGEMENTS)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise LibraryError(f"{self.path}: cannot open the library ({e})") from None

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _run(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            with closing(self._connect()) as db, db:
                cursor = db.execute(sql, args)
                return cursor.fetchall() if cursor.description else [cursor.lastrowid]
        except sqlite3.Error as e:
            raise LibraryError(f"{self.path}: {e}") from None

    def add(self, entry: Generation) -> int:
        """Store a generation; returns its id."""
        if entry.status not in STATUSES:
            raise LibraryError(f"status {entry.status!r} is not one of {STATUSES}")
        row = asdict(entry)
        row["created"] = row["created"] or time.time()
        row["parameters"] = json.dumps(row["parameters"], sort_keys=True)
        row["files"] = json.dumps(row["files"], sort_keys=True)
        columns = [c for c in _COLUMNS if c != "id"]
        (new_id,) = self._run(f"INSERT INTO generations ({', '.join(columns)}) VALUES "
                              f"({', '.join('?' for _ in columns)})", tuple(row[c] for c in columns))
        return int(new_id)

    def get(self, entry_id: int) -> Generation:
        rows = self._run("SELECT * FROM generations WHERE id = ?", (int(entry_id),))
        if not rows:
            raise LibraryError(f"no generation {entry_id} in the library")
        return _entry(rows[0])

    def rate(self, entry_id: int, rating: int) -> Generation:
        """Thumbs up (+1), down (-1) or cleared (0)."""
        if rating not in (-1, 0, 1):
            raise LibraryError(f"a rating is -1, 0 or +1, not {rating!r}")
        self.get(entry_id)
        self._run("UPDATE generations SET rating = ? WHERE id = ?", (rating, int(entry_id)))
        return self.get(entry_id)

    def keep(self, entry_id: int) -> Generation:
        """Keep a variation (or a rewritten bar) as a new version of the piece it came from: the next version
        number among its parent's kept ones (the parent is version 1), or, for a variation of an uploaded score,
        among the kept ones of that file. Keeping a kept piece again changes nothing."""
        entry = self.get(entry_id)
        if entry.kept:
            return entry
        if entry.parent_id is None and not entry.continued_from:
            raise LibraryError(f"piece #{entry.id} is a new piece, not a variation of one: there is nothing to keep "
                               "it as a version of")
        if entry.abc is None:
            raise LibraryError(f"piece #{entry.id} has no finished score to keep ({entry.status})")
        try:
            with closing(self._connect()) as db, db:
                db.execute("BEGIN IMMEDIATE")  # two keeps at once never take the same number
                if entry.parent_id is not None:
                    rows = db.execute("SELECT version, parameters FROM generations WHERE parent_id = ? AND version > 0",
                                      (entry.parent_id,)).fetchall()
                else:
                    rows = [r for r in db.execute("SELECT version, parameters FROM generations WHERE parent_id IS NULL "
                                                  "AND version > 0").fetchall()
                            if json.loads(r["parameters"] or "{}").get("continue_name") == entry.continued_from]
                version = max([1, *(r["version"] for r in rows)]) + 1
                db.execute("UPDATE generations SET version = ? WHERE id = ? AND version = 0", (version, entry.id))
        except sqlite3.Error as e:
            raise LibraryError(f"{self.path}: {e}") from None
        return self.get(entry.id)

    def search(self, text: str = "", status: str = "", rating: int | None = None, model: str = "",
               limit: int = 200, versions_of: int | None = None) -> list[Generation]:
        """Newest first. `text` matches the prompt, model or reason (case-insensitive, words ANDed); `versions_of`
        a piece id: that piece and its kept versions."""
        where, args = [], []
        for word in (text or "").split():
            where.append("(prompt LIKE ? ESCAPE '\\' OR model LIKE ? ESCAPE '\\' OR reason LIKE ? ESCAPE '\\')")
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pattern] * 3
        if status:
            where.append("status = ?")
            args.append(status)
        if rating is not None:
            where.append("rating = ?")
            args.append(int(rating))
        if model:
            where.append("model = ?")
            args.append(model)
        if versions_of is not None:
            where.append("(id = ? OR (parent_id = ? AND version > 0))")
            args += [int(versions_of)] * 2
        sql = "SELECT * FROM generations" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._run(sql + " ORDER BY id DESC LIMIT ?", (*args, max(1, min(int(limit), 10_000))))
        return [_entry(r) for r in rows]

    def revision(self) -> int:
        """A counter that moves on whenever a row is added or changed: compare it to know whether to reload."""
        return int(self._run("SELECT revision FROM changes")[0]["revision"])

    def by_job(self, job_id: str) -> list[Generation]:
        return [_entry(r) for r in self._run("SELECT * FROM generations WHERE job_id = ? ORDER BY id", (job_id,))]

    def preference_records(self, model: str = "") -> list[PreferenceRecord]:
        """Rated pieces that have post-processed ABC, oldest first: the human preferences DPO reads."""
        sql = "SELECT * FROM generations WHERE rating != 0 AND abc IS NOT NULL"
        args: tuple = ()
        if model:
            sql += " AND model = ?"
            args = (model,)
        return [PreferenceRecord(e.abc, e.rating, e.prompt, e.model, e.id)
                for e in map(_entry, self._run(sql + " ORDER BY id", args))]

    # -- pairwise judgements
    def prefer(self, better: int, worse: int) -> Judgement:
        """Judge piece `better` better than piece `worse`: two finished pieces (post-processed ABC) of one prompt.
        An earlier judgement of the same two pieces, either way round, is replaced."""
        a, b = self.get(better), self.get(worse)
        if a.id == b.id:
            raise LibraryError(f"piece {a.id} cannot be compared with itself: pick another piece")
        for entry in (a, b):
            if entry.abc is None:
                raise LibraryError(f"piece {entry.id} has no finished score ({entry.status}), so it cannot be "
                                   f"compared")
        if a.prompt != b.prompt:
            raise LibraryError(f"pieces {a.id} and {b.id} have different prompts ({a.prompt} and {b.prompt}): "
                               f"only pieces of one prompt are compared")
        new_id = self._run("INSERT OR REPLACE INTO judgements (created, better, worse) VALUES (?, ?, ?)",
                           (time.time(), a.id, b.id))[0]
        return self._judgements("WHERE j.id = ?", (int(new_id),))[0]

    def judgements(self, entry_id: int | None = None) -> list[Judgement]:
        """Newest first: every pairwise judgement, or those of one piece (better or worse)."""
        if entry_id is None:
            return self._judgements("", ())
        return self._judgements("WHERE j.better = ? OR j.worse = ?", (int(entry_id), int(entry_id)))

    def remove_judgement(self, judgement_id: int) -> None:
        if not self._judgements("WHERE j.id = ?", (int(judgement_id),)):
            raise LibraryError(f"no judgement {judgement_id} in the library")
        self._run("DELETE FROM judgements WHERE id = ?", (int(judgement_id),))

    def comparable(self, entry_id: int, limit: int = 200) -> list[Generation]:
        """Newest first: the other finished pieces (post-processed ABC) of the piece's prompt."""
        entry = self.get(entry_id)
        rows = self._run("SELECT * FROM generations WHERE prompt = ? AND id != ? AND abc IS NOT NULL "
                         "ORDER BY id DESC LIMIT ?", (entry.prompt, entry.id, max(1, int(limit))))
        return [_entry(r) for r in rows]

    def pairwise_records(self, model: str = "") -> list[PairRecord]:
        """Judged pairs, oldest judgement first: the pairwise human preferences DPO reads (`model`: those whose
        two pieces that model wrote)."""
        sql = ("SELECT g.abc AS better_abc, w.abc AS worse_abc, g.prompt, j.better, j.worse FROM judgements j "
               "JOIN generations g ON g.id = j.better JOIN generations w ON w.id = j.worse "
               "WHERE g.abc IS NOT NULL AND w.abc IS NOT NULL")
        args: tuple = ()
        if model:
            sql += " AND g.model = ? AND w.model = ?"
            args = (model, model)
        return [PairRecord(**dict(r)) for r in self._run(sql + " ORDER BY j.id", args)]

    def _judgements(self, where: str, args: tuple) -> list[Judgement]:
        rows = self._run("SELECT j.id, j.better, j.worse, j.created FROM judgements j JOIN generations g ON "
                         f"g.id = j.better JOIN generations w ON w.id = j.worse {where} ORDER BY j.id DESC", args)
        return [Judgement(**dict(r)) for r in rows]


def _entry(row: sqlite3.Row) -> Generation:
    data = dict(row)
    data["parameters"] = json.loads(data["parameters"] or "{}")
    data["files"] = json.loads(data["files"] or "{}")
    return Generation(**data)
