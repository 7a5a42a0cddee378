"""The SQLite library of generations: add, search, rate, replay data, preference records."""
import sqlite3
import threading
from contextlib import closing

import pytest

from pipelines.service.library import SCHEMA_VERSION, Generation, Library, LibraryError


def piece(**kw):
    base = dict(model="models/tiny.pth", prompt="Baroque_Bach, Johann Sebastian_Choral", seed=3, status="ok",
                period="Baroque", composer="Bach, Johann Sebastian", instrumentation="Choral",
                parameters={"top_k": 9, "top_p": 0.9, "temperature": 1.2}, raw="%Baroque\n", abc="X:1\nK:C\nC|\n")
    base.update(kw)
    return Generation(**base)


def test_add_get_roundtrip(tmp_path):
    lib = Library(tmp_path / "library.sqlite")
    new_id = lib.add(piece(files={"abc": "exports/j/p.abc"}))
    got = lib.get(new_id)
    assert got.id == new_id and got.created > 0
    assert got.parameters == {"top_k": 9, "top_p": 0.9, "temperature": 1.2}
    assert got.files == {"abc": "exports/j/p.abc"} and got.rating == 0
    # the data survives a new Library object (a restarted studio)
    assert Library(tmp_path / "library.sqlite").get(new_id).abc == "X:1\nK:C\nC|\n"
    with pytest.raises(LibraryError):
        lib.get(new_id + 1)
    with pytest.raises(LibraryError):
        lib.add(piece(status="great"))


def test_search_filters_and_escapes(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    a = lib.add(piece())
    b = lib.add(piece(prompt="Classical_Mozart, Wolfgang Amadeus_Chamber", status="invalid", abc=None,
                      reason="post-processing failed"))
    c = lib.add(piece(model="demo", prompt="Romantic_Chopin, Frederic_Keyboard"))
    assert [e.id for e in lib.search()] == [c, b, a]  # newest first
    assert [e.id for e in lib.search("mozart")] == [b]
    assert [e.id for e in lib.search("bach choral")] == [a]
    assert [e.id for e in lib.search(status="invalid")] == [b]
    assert [e.id for e in lib.search(model="demo")] == [c]
    assert lib.search("%") == [] and lib.search("Baroqu__Bach") == []  # LIKE wildcards are literal
    assert [e.id for e in lib.search("Baroque_Bach")] == [a]
    assert [e.id for e in lib.search("post-processing")] == [b]


def test_ratings_feed_preferences(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    good = lib.add(piece())
    bad = lib.add(piece(seed=4))
    lib.add(piece(status="limit", abc=None))
    unrated = lib.add(piece(seed=5))
    assert lib.rate(good, 1).rating == 1
    lib.rate(bad, -1)
    records = lib.preference_records()
    assert [(r.id, r.rating) for r in records] == [(good, 1), (bad, -1)]
    assert records[0].abc.startswith("X:1") and records[0].prompt.startswith("Baroque_")
    assert [e.id for e in lib.search(rating=1)] == [good]
    lib.rate(good, 0)
    assert [r.id for r in lib.preference_records()] == [bad]
    with pytest.raises(LibraryError):
        lib.rate(unrated, 5)
    with pytest.raises(LibraryError):
        lib.rate(9999, 1)


def test_concurrent_writers(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    errors = []

    def write(n):
        try:
            for i in range(20):
                lib.add(piece(seed=n * 100 + i, job_id=str(n)))
        except LibraryError as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(lib.search(limit=1000)) == 80
    assert [e.seed for e in lib.by_job("2")] == list(range(200, 220))


def test_the_revision_moves_on_when_a_piece_is_added_or_rated(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    start = lib.revision()
    first = lib.add(piece())
    assert lib.revision() == start + 1
    lib.rate(first, 1)
    assert lib.revision() == start + 2
    lib.search("bach")
    lib.get(first)
    assert lib.revision() == start + 2  # reading changes nothing
    assert Library(tmp_path / "l.sqlite").revision() == start + 2  # kept across a restart


# The library as schema 1 wrote it (before the revision counter).
SCHEMA_1 = """
CREATE TABLE generations (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, job_id TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL, prompt TEXT NOT NULL, period TEXT NOT NULL DEFAULT '', composer TEXT NOT NULL DEFAULT '',
    instrumentation TEXT NOT NULL DEFAULT '', parameters TEXT NOT NULL DEFAULT '{}', seed INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', raw TEXT NOT NULL DEFAULT '', abc TEXT,
    files TEXT NOT NULL DEFAULT '{}', seconds REAL NOT NULL DEFAULT 0, rating INTEGER NOT NULL DEFAULT 0);
CREATE INDEX generations_created ON generations(created);
INSERT INTO generations (created, model, prompt, parameters, seed, status)
    VALUES (1.0, 'demo', 'Baroque_Bach, Johann Sebastian_Choral', '{"continue_name": "bwv1.6.mxl"}', 1, 'ok');
PRAGMA user_version = 1;
"""


def test_a_library_of_schema_1_is_read_and_gets_the_revision(tmp_path):
    path = tmp_path / "library.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA_1)
    lib = Library(path)
    old = lib.get(1)
    assert (old.model, old.continued_from) == ("demo", "bwv1.6.mxl")
    start = lib.revision()
    lib.rate(1, -1)
    lib.add(piece())
    assert lib.revision() == start + 2
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_continued_piece_names_the_score_it_continues(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    new = lib.add(piece(parameters={"continue_name": "", "keep_lines": 0}))
    continued = lib.add(piece(parameters={"continue_name": "bwv1.6.mxl", "keep_lines": 4}))
    assert lib.get(new).continued_from == ""
    assert lib.get(continued).continued_from == "bwv1.6.mxl"
    assert piece(parameters={}).continued_from == ""  # a piece stored before continuations were recorded


def test_a_library_of_schema_2_gets_the_parent_and_version_columns_and_keeps_its_pieces(tmp_path):
    path = tmp_path / "library.sqlite"
    with closing(sqlite3.connect(path)) as db:  # a schema-2 workspace: the table as it was, then the counter
        db.executescript(SCHEMA_1.replace("PRAGMA user_version = 1;", ""))
        db.execute("PRAGMA user_version = 2")
    lib = Library(path)
    old = lib.get(1)
    assert (old.parent_id, old.version, old.kept) == (None, 0, False)
    variation = lib.add(piece(parent_id=1))
    assert lib.keep(variation).version == 2  # a variation of the old piece, kept
    with closing(sqlite3.connect(path)) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(generations)")}
        assert {"parent_id", "version"} <= columns
        assert "generations_parent" in {row[1] for row in db.execute("PRAGMA index_list(generations)")}
    Library(path)  # opened again: nothing to add twice
    assert lib.get(variation).parent_id == 1


def test_kept_variations_are_numbered_versions_of_their_parent_and_listed_with_it(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    parent = lib.add(piece())
    first, second, third = (lib.add(piece(seed=s, parent_id=parent)) for s in (4, 5, 6))
    other = lib.add(piece(seed=9))
    assert lib.get(first).parent_id == parent and not lib.get(first).kept
    assert lib.search(versions_of=parent) == [lib.get(parent)]  # nothing kept yet: the piece alone
    assert lib.keep(second).version == 2 and lib.keep(first).version == 3
    assert lib.keep(second).version == 2  # kept again: the same version
    assert [e.id for e in lib.search(versions_of=parent)] == [second, first, parent]  # newest first
    assert lib.search(versions_of=other) == [lib.get(other)]
    assert not lib.get(third).kept
    with pytest.raises(LibraryError, match=f"piece #{parent} is a new piece"):
        lib.keep(parent)
    unfinished = lib.add(piece(parent_id=parent, abc=None, status="limit"))
    with pytest.raises(LibraryError, match="no finished score to keep"):
        lib.keep(unfinished)


def test_variations_of_an_uploaded_score_are_numbered_among_those_of_the_same_file(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    a = lib.add(piece(parameters={"continue_name": "bwv1.6.mxl"}))
    b = lib.add(piece(parameters={"continue_name": "bwv1.6.mxl"}))
    c = lib.add(piece(parameters={"continue_name": "mine.abc"}))
    assert [lib.keep(i).version for i in (a, b, c)] == [2, 3, 2]
    assert lib.get(a).parent_id is None


def test_pairwise_judgements_compare_two_finished_pieces_of_one_prompt(tmp_path):
    lib = Library(tmp_path / "l.sqlite")
    a, b, c = lib.add(piece(seed=1)), lib.add(piece(seed=2)), lib.add(piece(seed=3, abc="X:1\nK:G\nG|\n"))
    other_prompt = lib.add(piece(prompt="Classical_Mozart, Wolfgang Amadeus_Chamber"))
    unfinished = lib.add(piece(status="limit", abc=None))
    start = lib.revision()
    first = lib.prefer(a, b)
    assert (first.better, first.worse, first.other(a), first.other(b)) == (a, b, b, a)
    lib.prefer(b, a)  # the same two pieces judged again, the other way round: the latest is kept
    lib.prefer(c, a)
    assert [(j.better, j.worse) for j in lib.judgements()] == [(c, a), (b, a)]  # newest first
    assert [(j.better, j.worse) for j in lib.judgements(b)] == [(b, a)]
    assert lib.revision() == start + 3
    records = lib.pairwise_records()
    assert [(r.better, r.worse) for r in records] == [(b, a), (c, a)]  # oldest first, as DPO reads them
    assert records[1].better_abc == "X:1\nK:G\nG|\n" and records[1].worse_abc == "X:1\nK:C\nC|\n"
    assert records[1].prompt == "Baroque_Bach, Johann Sebastian_Choral"
    assert lib.pairwise_records(model="demo") == []
    assert [e.id for e in lib.comparable(a)] == [c, b]  # same prompt, finished, newest first
    for better, worse, why in ((a, a, "compared with itself"), (a, other_prompt, "different prompts"),
                               (unfinished, a, f"piece {unfinished} has no finished score"),
                               (a, 9999, "no generation 9999")):
        with pytest.raises(LibraryError, match=why):
            lib.prefer(better, worse)
    judged = lib.judgements(c)[0]
    lib.remove_judgement(judged.id)
    assert [(j.better, j.worse) for j in lib.judgements()] == [(b, a)]
    with pytest.raises(LibraryError, match=f"no judgement {judged.id}"):
        lib.remove_judgement(judged.id)


def test_a_library_without_the_judgements_table_gets_it(tmp_path):
    path = tmp_path / "library.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA_1)
    lib = Library(path)
    second = lib.add(piece(prompt="Baroque_Bach, Johann Sebastian_Choral"))
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE generations SET abc = 'X:1', prompt = ? WHERE id = 1", (lib.get(second).prompt,))
    assert lib.prefer(second, 1).better == second and [r.worse for r in lib.pairwise_records()] == [1]
    with closing(sqlite3.connect(path)) as db, db:  # a piece removed takes its judgements with it
        db.execute("DELETE FROM generations WHERE id = 1")
    assert lib.judgements() == [] and lib.pairwise_records() == []
