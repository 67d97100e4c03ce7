"""Tests for the catalog database: migrations, the SQLite setup, and the query helpers.

Every test taking `catalog` runs twice: on SQLite and on a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import delete, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from mirsearch import database, fingerprint, track_filters
from mirsearch.catalog import Catalog
from mirsearch.errors import CatalogError, MirsearchError, NotFoundError
from mirsearch.schema import IndexState, Track, TrackGenre, TrackPrint


@pytest.fixture
def catalog(database_url):
    db = Catalog(database_url)
    yield db
    db.close()


@pytest.fixture
def sqlite_catalog(tmp_path):
    db = Catalog(f"sqlite:///{tmp_path / 'var' / 'catalog.db'}")
    yield db
    db.close()


def _add(db: Catalog, **rows: dict) -> dict[str, int]:
    """Insert tracks named by keyword (path = /music/<name>.flac unless given); returns
    name → id."""
    with db.session() as session, session.begin():
        tracks = {}
        for name, fields in rows.items():
            tracks[name] = Track(**{"path": f"/music/{name}.flac", "status": "indexed", **fields})
            session.add(tracks[name])
    return {name: track.id for name, track in tracks.items()}


def _tables(db: Catalog) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def test_first_use_migrates(catalog):
    assert catalog.index_state().generation == 0
    assert {"tracks", "index_state", "alembic_version"} <= _tables(catalog)
    with catalog.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_sqlite_gets_wal_and_foreign_keys(sqlite_catalog, tmp_path):
    catalog = sqlite_catalog
    assert catalog.index_state().generation == 0
    assert (tmp_path / "var" / "catalog.db").is_file()
    with catalog.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL: see database
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_upgrade_downgrade_upgrade(catalog):
    catalog.upgrade()
    catalog.downgrade()
    assert _tables(catalog) <= {"alembic_version"}
    catalog.upgrade()
    assert {"tracks", "index_state"} <= _tables(catalog)
    ids = _add(catalog, a={"title": "A"})
    assert catalog.get(ids["a"]).title == "A"


def test_the_first_session_migrates_a_catalog_behind_and_leaves_one_at_the_schema(catalog):
    assert catalog.revision() is None  # an empty database
    catalog.upgrade("0003")
    behind = Catalog(catalog.url)
    assert behind.revision() == "0003"
    assert behind.index_state().generation == 0  # its first session upgrades
    assert behind.revision() == database.SCHEMA_REVISION
    behind.close()


def test_an_upgraded_catalog_draws_its_id_and_a_new_one_has_its_own(catalog, tmp_path):
    from mirsearch.schema import IndexState

    catalog.upgrade("0004")
    with catalog.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO index_state (id, generation, updated_at) VALUES (1, 3, :now)"),
            {"now": datetime.now(UTC)},
        )
    catalog.upgrade()
    upgraded = catalog.index_state()
    assert upgraded.generation == 3 and len(upgraded.catalog_id) == 32
    other = Catalog(f"sqlite:///{tmp_path / 'other.db'}")
    with other.session() as session, session.begin():
        session.add(IndexState(id=1, generation=1))
    assert other.index_state().catalog_id not in (None, upgraded.catalog_id)
    other.close()


def test_an_upgraded_catalog_marks_the_highest_track_id_it_holds(catalog):
    catalog.upgrade("0007")
    with catalog.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO index_state (id, generation, updated_at) VALUES (1, 2, :now)"),
            {"now": datetime.now(UTC)},
        )
        for n in (1, 7):
            connection.execute(
                text(
                    "INSERT INTO tracks (id, path, status, n_windows, updated_at) "
                    "VALUES (:n, :path, 'indexed', 0, :now)"
                ),
                {"n": n, "path": f"/music/{n}.flac", "now": datetime.now(UTC)},
            )
    catalog.upgrade()
    with catalog.session() as session:
        assert session.get(IndexState, 1).last_track_id == 7
    catalog.downgrade("0007")
    assert catalog.revision() == "0007"


def test_stats_give_counts_and_the_generation_of_one_moment(catalog, monkeypatch):
    """Read one by one, an index run committing between them had paired one generation's
    track count with the next one's generation (7 readings in ~6,900 during indexing)."""
    from sqlalchemy.orm import Session

    from mirsearch.schema import IndexState

    _add(catalog, a={"duration_s": 60.0})
    other = Catalog(catalog.url)
    read = Session.execute
    committed = []

    def execute(session, *args, **kwargs):  # an index run commits after each statement
        result = read(session, *args, **kwargs)
        if session.bind is not other.engine and not committed:
            committed.append(True)
            with other.session() as theirs, theirs.begin():
                theirs.add(Track(path="/music/b.flac", status="indexed", duration_s=60.0))
                theirs.merge(IndexState(id=1, generation=1, model_hash="m"))
        return result

    monkeypatch.setattr(Session, "execute", execute)
    stats = catalog.stats()
    other.close()
    assert (stats["indexed"], stats["index_generation"]) in ((1, 0), (2, 1)), stats


def test_schema_revision_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == database.SCHEMA_REVISION


def test_a_catalog_at_the_schema_is_used_without_importing_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog(url).upgrade()
    script = (
        "import sys; from mirsearch.catalog import Catalog; "
        f"Catalog({url!r}).index_state(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_catalog_damaged_inside_a_table_is_told_in_a_line(sqlite_catalog):
    """SQLite's "database disk image is malformed" is a bare DatabaseError: every command had
    died in a traceback, where a damaged header was told in a line."""
    _add(sqlite_catalog, a={"title": "A"}, b={"title": "B"})
    sqlite_catalog.checkpoint()
    with sqlite_catalog.engine.connect() as connection:
        page = connection.exec_driver_sql("PRAGMA page_size").scalar()
        root = connection.exec_driver_sql(
            "SELECT rootpage FROM sqlite_master WHERE name = 'tracks'"
        ).scalar()
    sqlite_catalog.close()
    with open(sqlite_catalog.file, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(b"\xff" * 12)
    damaged = Catalog(sqlite_catalog.url, create=False)
    with pytest.raises(CatalogError, match="cannot be used: database disk image is malformed"):
        damaged.stats()


def test_a_log_left_unfolded_by_a_full_disk_is_warned_of(sqlite_catalog, caplog):
    """A full disk at the checkpoint that ends `mirsearch index` was logged at debug: the run
    ended 0 without a word, and catalog.db alone (a backup, a read-only reader) was damaged."""
    import sqlite3

    import sqlalchemy as sa

    _add(sqlite_catalog, a={"title": "kept"})

    def full(_connection, _cursor, statement, *_args) -> None:
        if "wal_checkpoint" in statement:  # SQLite's words when the file cannot grow
            raise sqlite3.OperationalError("database or disk is full")

    sa.event.listen(sqlite_catalog.engine, "before_cursor_execute", full)
    sqlite_catalog.checkpoint()
    sqlite_catalog.checkpoint()  # after its migration and at its end: warned of once a command
    sa.event.remove(sqlite_catalog.engine, "before_cursor_execute", full)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1
    assert re.match(
        rf"{sqlite_catalog.file} does not hold the whole catalog: its write-ahead log "
        r"catalog\.db-wal could not be folded in: database or disk is full \([\d,]+ bytes free "
        rf"in {sqlite_catalog.file.parent}\)\. Nothing is lost",
        warned[0],
    )
    assert [t.title for t in sqlite_catalog.list_tracks()[0]] == ["kept"]
    caplog.clear()
    sqlite_catalog.checkpoint()  # room again: folded in, not a word
    assert (
        not caplog.records and sqlite_catalog.file.with_name("catalog.db-wal").stat().st_size == 0
    )


@pytest.mark.parametrize("free", [8192, 10**9])  # a few KB free, and a disk with room
def test_a_disk_io_error_on_a_nearly_full_disk_is_told_as_a_full_disk(
    sqlite_catalog, monkeypatch, free
):
    """SQLite says "disk I/O error" when it cannot grow its -shm file: an index run on a home
    with a few KB free had said only that. With room on the disk, it stays an I/O error."""
    import shutil
    import sqlite3

    import sqlalchemy as sa

    _add(sqlite_catalog, a={"title": "A"})

    def io_error(_connection, _cursor, statement, *_args) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    usage = shutil.disk_usage(sqlite_catalog.file.parent)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=free))
    sa.event.listen(sqlite_catalog.engine, "before_cursor_execute", io_error)
    told = "disk I/O error$"
    if free == 8192:
        where = re.escape(str(sqlite_catalog.file.parent))
        told = rf"disk I/O error \(the disk is full: 8,192 bytes free in {where}\)$"
    with pytest.raises(CatalogError, match=rf"catalog\.db cannot be used: {told}"):
        sqlite_catalog.stats()


def test_a_migration_that_fails_is_told_in_a_line(tmp_path, monkeypatch):
    """A full disk during the first migration had ended `index` in a traceback."""
    import sqlalchemy as sa

    def full(self, revision="head"):
        raise sa.exc.OperationalError("CREATE TABLE", {}, Exception("database or disk is full"))

    monkeypatch.setattr(Catalog, "upgrade", full)
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    with pytest.raises(CatalogError, match="cannot be used: database or disk is full"):
        catalog.index_state()


# A process that dies (kill -9) right after its migration ran the statement argv[2] begins with.
DIE_MIGRATING = """
import os, sys
import sqlalchemy as sa
from mirsearch.catalog import Catalog
catalog = Catalog(sys.argv[1])
@sa.event.listens_for(catalog.engine, "after_cursor_execute")
def die(connection, cursor, statement, *rest):
    if statement.lstrip().upper().startswith(sys.argv[2]):
        os.kill(os.getpid(), 9)
catalog.migrate()
"""


@pytest.mark.parametrize("statement", ["CREATE TABLE TRACKS", "CREATE INDEX IX_TRACKS_STATUS"])
def test_a_migration_killed_midway_on_sqlite_leaves_none_of_it(tmp_path, statement):
    """SQLite's driver had committed each CREATE TABLE before the first write to
    alembic_version on its own: a catalog killed there kept tables without their revision, and
    every later command failed ("table index_state already exists")."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    died = subprocess.run([sys.executable, "-c", DIE_MIGRATING, url, statement])
    assert died.returncode == -9
    catalog = Catalog(url)
    assert catalog.revision() is None and _tables(catalog) <= {"alembic_version"}
    assert catalog.index_state().generation == 0  # migrated from the start
    assert catalog.revision() == database.SCHEMA_REVISION
    catalog.close()


def test_upgrade_converts_format_1_prints_and_downgrade_writes_them_back(catalog):
    """A catalog of the previous version (1-byte prints) keeps every print through 0003."""
    catalog.upgrade("0002")
    rng = np.random.default_rng(1)
    one_byte = np.clip(rng.normal(60, 12, (44, 320)), 0, 255).astype(np.uint8)
    with catalog.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tracks (id, path, status, n_windows, updated_at) "
                "VALUES (1, '/music/old.flac', 'indexed', 6, '2026-11-28')"
            )
        )
        connection.execute(
            text("INSERT INTO track_prints (track_id, bands, data) VALUES (1, 44, :data)"),
            {"data": one_byte.tobytes()},
        )
    catalog.upgrade()  # through 0004 (tags): adding and dropping a column keeps every print
    with catalog.engine.connect() as connection:
        format_, data = connection.execute(text("SELECT format, data FROM track_prints")).one()
    converted = fingerprint.decode(bytes(data), format=format_)
    expected = fingerprint.from_format_1(one_byte.tobytes(), 44)
    assert format_ == fingerprint.FORMAT and converted.shape == (22, 320)
    centred = expected - expected.mean(axis=0)
    assert np.corrcoef(converted.ravel(), centred.ravel())[0, 1] > 0.95
    catalog.downgrade("0002")
    with catalog.engine.connect() as connection:
        bands, data = connection.execute(text("SELECT bands, data FROM track_prints")).one()
    back = np.frombuffer(data, dtype=np.uint8).reshape(bands, -1)
    assert back.shape == (44, 320)
    assert np.corrcoef(back[::2].astype(np.float32).ravel(), converted.ravel())[0, 1] > 0.99
    catalog.upgrade()
    assert np.array_equal(catalog.prints([1])[1], converted)


def test_a_catalog_stamped_0004_without_0003_gets_its_prints_converted(catalog):
    """The versions that shipped 0004 on top of 0002 left catalogs with no track_prints.format
    and 1-byte prints; the previous version took the stamp at its word and indexing then failed
    on the missing column after putting the old index aside. 0009 runs 0003's work on them."""
    catalog.upgrade("0002")
    one_byte = np.clip(np.random.default_rng(2).normal(60, 12, (44, 320)), 0, 255)
    one_byte = one_byte.astype(np.uint8)
    with catalog.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tracks (id, path, status, n_windows, updated_at) "
                "VALUES (1, '/music/old.flac', 'indexed', 6, '2026-11-29')"
            )
        )
        connection.execute(
            text("INSERT INTO track_prints (track_id, bands, data) VALUES (1, 44, :data)"),
            {"data": one_byte.tobytes()},
        )
        connection.execute(text("ALTER TABLE tracks ADD COLUMN tags JSON"))  # their 0004
        connection.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    catalog.upgrade("0008")  # as the previous version left it: at 0008, still without the column
    opened = Catalog(catalog.url)
    assert opened.index_state().generation == 0  # the first session migrates
    with opened.engine.connect() as connection:
        format_, data = connection.execute(text("SELECT format, data FROM track_prints")).one()
    expected = fingerprint.from_format_1(one_byte.tobytes(), 44)
    converted = fingerprint.decode(bytes(data), format=format_)
    assert format_ == fingerprint.FORMAT and converted.shape == expected.shape
    centred = expected - expected.mean(axis=0)
    assert np.corrcoef(converted.ravel(), centred.ravel())[0, 1] > 0.95
    assert np.array_equal(opened.prints([1])[1], converted)
    opened.close()


def test_a_downgrade_below_0009_writes_format_4_prints_as_format_3(catalog):
    """Versions at 0004 and the first at 0005 read formats 2 and 3: a rollback to them had
    left prints they refused, their advice (`db upgrade`) looping."""
    print_ = np.random.default_rng(3).normal(0, 6, (22, 160)).astype(np.float32)
    stored = fingerprint.decode(fingerprint.encode(print_))
    ids = _add(catalog, a={})
    with catalog.session() as session, session.begin():
        session.add(TrackPrint.of(ids["a"], print_))
    catalog.downgrade("0008")
    with catalog.engine.connect() as connection:
        format_, data = connection.execute(text("SELECT format, data FROM track_prints")).one()
    assert format_ == 3
    assert np.array_equal(fingerprint.decode(bytes(data), format=3), stored)


def test_a_catalog_missing_a_column_of_its_revision_is_refused_before_any_write(catalog):
    catalog.upgrade()
    ids = _add(catalog, a={"title": "A"})
    catalog.downgrade("0009")
    with catalog.engine.begin() as connection:
        connection.execute(text("ALTER TABLE tracks DROP COLUMN tags"))
    opened = Catalog(catalog.url)
    with pytest.raises(CatalogError, match=r"lacks the column tracks\.tags.*Index the music again"):
        opened.get(ids["a"])
    opened.close()


def test_a_catalog_upgraded_by_a_newer_version_is_refused_in_a_line(catalog):
    catalog.upgrade()
    with catalog.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    opened = Catalog(catalog.url)
    with pytest.raises(CatalogError, match=r"revision 0099, which this version .* does not know"):
        opened.stats()
    assert opened.revision() == "0099"  # left as it was
    opened.close()


def test_missing_migrations_raise_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "MIGRATIONS_DIR", tmp_path / "nowhere")
    db = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(MirsearchError, match="migrations are missing"):
        db.stats()


def test_rows_stay_readable_after_the_session_closes(catalog):
    ids = _add(catalog, a={"title": "Song", "descriptors": {"tempo_bpm": 120.0}})
    row = catalog.get(ids["a"])
    assert row.title == "Song" and row.descriptors == {"tempo_bpm": 120.0}
    assert catalog.by_path("/music/a.flac").id == ids["a"]
    assert catalog.by_path("/music/none.flac") is None
    assert catalog.get(999) is None
    assert set(catalog.get_many([ids["a"], 999])) == {ids["a"]}
    data = row.to_dict()
    assert data["path"] == "/music/a.flac" and isinstance(data["updated_at"], str)


def test_list_tracks_filters_and_pages(catalog):
    _add(
        catalog,
        one={"title": "Blue Moon", "artist": "Ella", "genre": "jazz"},
        two={"title": "Red Sky", "artist": "MOONLIGHT band", "genre": "rock"},
        three={"title": None, "genre": "rock", "tag_genre": "Jazz"},
        four={"title": "Broken", "status": "failed", "error": "bad file"},
        moon_file={"title": "x"},
    )
    rows, total = catalog.list_tracks(q="moon")
    assert total == 3 and {r.path for r in rows} == {
        "/music/one.flac",
        "/music/two.flac",
        "/music/moon_file.flac",
    }
    assert [r.path for r in catalog.list_tracks(q="n_f")[0]] == ["/music/moon_file.flac"]
    assert catalog.list_tracks(q="o_e")[1] == catalog.list_tracks(q="%")[1] == 0  # no wildcards
    rows, total = catalog.list_tracks(genre="JAZZ")
    assert total == 2 and {r.path for r in rows} == {"/music/one.flac", "/music/three.flac"}
    rows, total = catalog.list_tracks(status="failed")
    assert total == 1 and rows[0].error == "bad file"
    assert catalog.list_tracks(status=None)[1] == 5
    page1, total = catalog.list_tracks(per_page=2)
    page2, _ = catalog.list_tracks(page=2, per_page=2)
    page3, _ = catalog.list_tracks(page=3, per_page=2)
    assert total == 4 and [len(page1), len(page2), len(page3)] == [2, 2, 0]
    assert [r.id for r in page1 + page2] == sorted(r.id for r in page1 + page2)
    for nul in ({"q": "\x00"}, {"genre": "rock\x00"}):  # SQLite listed every track for q=%00
        with pytest.raises(MirsearchError, match="NUL"):
            catalog.list_tracks(**nul)
    for page, per_page in ((0, 2), (10**20, 2), (1, 10**20)):  # 10**20: past SQL's integers
        with pytest.raises(MirsearchError, match="must be 1 to 1,000,000,000"):
            catalog.list_tracks(page=page, per_page=per_page)


def test_versions_are_the_tracks_flagged_near_duplicates_either_way(catalog):
    ids = _add(catalog, original={}, other={})
    copies = _add(
        catalog,
        fast={"duplicate_of": ids["original"]},
        slow={"duplicate_of": ids["original"]},
        failed={"duplicate_of": ids["original"], "status": "failed"},
    )
    later = _add(catalog, copy_of_fast={"duplicate_of": copies["fast"]})
    assert catalog.versions([ids["original"]]) == {copies["fast"], copies["slow"]}
    assert catalog.versions([copies["fast"]]) == {ids["original"], later["copy_of_fast"]}
    assert catalog.versions([ids["original"], copies["fast"]]) == {
        copies["slow"],
        later["copy_of_fast"],
    }
    assert catalog.versions([ids["other"]]) == catalog.versions([]) == set()


def test_flagged_are_the_indexed_copies_whose_matches_still_hold(catalog):
    """A copy waiting to be analysed again (a new index marks every track pending) keeps its
    duplicate_of and evidence in its row, but is not in the index: it is not listed, as `stats`
    does not count it; nor is a copy whose match's track now holds other content."""
    ids = _add(catalog, original={"sha256": "aa"}, changed={"sha256": "cc"})

    def match(track: str, sha256: str) -> dict:
        return {"track_id": ids[track], "track_sha256": sha256, "score": 1.0}

    copies = _add(
        catalog,
        copy={"duplicate_of": ids["original"], "duplicate_evidence": [match("original", "aa")]},
        waiting={
            "duplicate_of": ids["original"],
            "duplicate_evidence": [match("original", "aa")],
            "status": "pending",
        },
        stale={"duplicate_of": ids["changed"], "duplicate_evidence": [match("changed", "bb")]},
    )
    assert catalog.flagged() == [(copies["copy"], [match("original", "aa")])]


def test_tracks_asked_for_by_many_ids_are_read_a_query_at_a_time(catalog, monkeypatch):
    monkeypatch.setattr("mirsearch.catalog.IDS_PER_QUERY", 3)
    ids = _add(catalog, **{f"t{i}": {} for i in range(8)})
    asked = [*ids.values(), 10_000]
    assert sorted(catalog.get_many(asked)) == sorted(ids.values())


def test_genres_count_each_track_once_per_distinct_genre(catalog):
    ids = _add(
        catalog,
        a={"genre": "rock", "tag_genre": "Rock"},  # agrees with the model: counts once
        b={"genre": "rock", "tag_genre": "Punk "},
        c={"genre": "jazz"},
        d={"genre": "pop", "status": "failed"},  # not indexed: not counted
        e={"tag_genre": "  "},  # blank tag: ignored
    )
    assert catalog.genres() == [("rock", 2), ("jazz", 1), ("punk", 1)]
    assert catalog.track_ids_for_genres(["PUNK"]) == {ids["b"]}
    assert catalog.track_ids_for_genres(["rock", "jazz"]) == {ids["a"], ids["b"], ids["c"]}
    assert catalog.track_ids_for_genres(["pop"]) == set()
    assert catalog.track_ids_for_genres([]) == set()
    with pytest.raises(MirsearchError, match="genre cannot hold a NUL"):  # SQLite: "%;\x00;%"
        catalog.track_ids_for_genres(["\x00"])  # had been every track with a tag genre
    with pytest.raises(MirsearchError, match="genre is at most 1,000 characters"):
        catalog.track_ids_for_genres(["g" * 1_001])  # as the listing: searches had taken it


def test_a_tag_of_several_genres_counts_and_filters_as_each(catalog):
    """FFmpeg gives a file's two GENRE tags as "Rock;Pop": it had been one genre, "rock;pop",
    that neither filter found."""
    ids = _add(
        catalog,
        a={"genre": "rock", "tag_genre": "Rock; Pop"},  # the model's among them: counts once
        b={"genre": "jazz", "tag_genre": "Punk;Ska"},  # as a catalog indexed before kept it
        c={"genre": "pop", "tag_genre": "Synth-pop"},
        d={"tag_genre": "100%; x_y"},  # % and _ are no wildcards
        e={"tag_genre": "xay; 1000"},  # ... in the genre asked for either
    )
    assert catalog.genres() == [
        ("pop", 2),
        ("100%", 1),
        ("1000", 1),
        ("jazz", 1),
        ("punk", 1),
        ("rock", 1),
        ("ska", 1),
        ("synth-pop", 1),
        ("x_y", 1),
        ("xay", 1),
    ]
    assert catalog.track_ids_for_genres(["pop"]) == {ids["a"], ids["c"]}
    assert catalog.track_ids_for_genres([" SKA "]) == {ids["b"]}
    assert catalog.track_ids_for_genres(["x_y"]) == {ids["d"]}
    assert catalog.track_ids_for_genres(["100%"]) == {ids["d"]}
    assert catalog.track_ids_for_genres(["x"]) == catalog.track_ids_for_genres(["xby"]) == set()
    assert catalog.track_ids_for_genres(["xay"]) == {ids["e"]}
    assert [r.id for r in catalog.list_tracks(genre="punk")[0]] == [ids["b"]]


def test_genres_and_titles_fold_every_script_on_both_backends(catalog):
    """SQLite's lower() had folded ASCII only: a tagged genre "Électro" matched no spelling
    there, nor "ärtist" its "Ärtist", where PostgreSQL found them."""
    ids = _add(catalog, a={"genre": "rock", "tag_genre": "Électro", "artist": "Ärtist"})
    assert ("électro", 1) in catalog.genres()
    assert catalog.track_ids_for_genres(["ÉLECTRO"]) == {ids["a"]}
    assert [r.id for r in catalog.list_tracks(genre="électro")[0]] == [ids["a"]]
    assert [r.id for r in catalog.list_tracks(q="ärtist")[0]] == [ids["a"]]


def test_a_decomposed_name_or_genre_is_found_by_the_composed_one_and_back(catalog):
    """A file named on a Mac writes é as e and an accent: `--q "Beyoncé"` typed the usual way
    had found it by no spelling, nor its decomposed genre tag the composed `--genre`."""
    decomposed = unicodedata.normalize("NFD", "Beyoncé")
    with catalog.session() as session, session.begin():
        track = Track(path=f"/music/{decomposed}.flac", status="indexed", tag_genre="E\u0301lectro")
        session.add(track)
    assert decomposed != "Beyoncé"
    for q in ("Beyoncé", decomposed):
        assert [r.id for r in catalog.list_tracks(q=q)[0]] == [track.id]
    assert [r.id for r in catalog.list_tracks(genre="électro")[0]] == [track.id]
    assert catalog.track_ids_for_genres(["Électro"]) == {track.id}


def _filed(db: Catalog) -> dict[int, set[str]]:
    """track id → the genres the track_genres table files it under."""
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT track_id, genre FROM track_genres")).all()
    filed: dict[int, set[str]] = {}
    for track_id, genre in rows:
        filed.setdefault(track_id, set()).add(genre)
    return filed


def test_a_track_is_refiled_when_its_genres_change_and_unfiled_when_it_goes(catalog):
    """Re-analysis sets genre and tag_genre on the row it loads (records.py): the genre kept
    keeps its row (deleted and added in one flush, it had clashed on the primary key)."""
    ids = _add(catalog, a={"genre": "rock", "tag_genre": "Rock; Pop"}, b={"genre": "jazz"})
    assert _filed(catalog) == {ids["a"]: {"rock", "pop"}, ids["b"]: {"jazz"}}
    with catalog.session() as session, session.begin():
        row = session.get(Track, ids["a"])
        row.tag_genre = "Punk"
        row.genre = "rock"
    assert _filed(catalog) == {ids["a"]: {"rock", "punk"}, ids["b"]: {"jazz"}}
    assert catalog.track_ids_for_genres(["pop"]) == set()
    assert catalog.track_ids_for_genres(["punk"]) == {ids["a"]}
    with catalog.session() as session, session.begin():
        session.execute(delete(Track).where(Track.id == ids["b"]))  # as pruning deletes
    assert _filed(catalog) == {ids["a"]: {"rock", "punk"}}
    assert catalog.genres() == [("punk", 1), ("rock", 1)]


def test_upgrading_files_the_genres_of_the_tracks_a_catalog_holds(catalog):
    """Migration 0010 fills track_genres from the rows of a catalog made before it."""
    catalog.upgrade()
    catalog.downgrade("0009")
    tracks = [
        (1, "rock", "Rock; Pop", "indexed"),
        (2, "jazz", None, "indexed"),
        (3, None, " E\u0301lectro ", "indexed"),  # decomposed, as a Mac wrote it before 0004
        (4, "pop", "  ", "failed"),
    ]
    with catalog.engine.begin() as connection:
        for track_id, genre, tag_genre, status in tracks:
            connection.execute(
                text(
                    "INSERT INTO tracks (id, path, genre, tag_genre, status, n_windows, updated_at)"
                    " VALUES (:id, :path, :genre, :tag, :status, 0, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": track_id,
                    "path": f"/m/{track_id}",
                    "genre": genre,
                    "tag": tag_genre,
                    "status": status,
                },
            )
    reopened = Catalog(catalog.url)
    reopened.migrate()
    assert _filed(reopened) == {1: {"rock", "pop"}, 2: {"jazz"}, 3: {"électro"}, 4: {"pop"}}
    assert reopened.genres() == [("jazz", 1), ("pop", 1), ("rock", 1), ("électro", 1)]
    assert reopened.track_ids_for_genres(["Électro", "POP"]) == {1, 3}
    reopened.close()


def _counted(db: Catalog) -> dict[str, int]:
    """The counts kept per genre (migration 0012), those at 0 left out."""
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT genre, tracks FROM genre_counts")).all()
    return {genre: n for genre, n in rows if n}


def _counted_by_reading(db: Catalog) -> dict[str, int]:
    """What the counts should be: the indexed tracks' filings, counted."""
    query = (
        "SELECT track_genres.genre, count(*) FROM track_genres JOIN tracks"
        " ON tracks.id = track_genres.track_id WHERE status = 'indexed' GROUP BY track_genres.genre"
    )
    with db.engine.connect() as connection:
        return dict(connection.execute(text(query)).all())


def _filed_under(session, genre: str) -> list[int]:
    return list(session.scalars(select(TrackGenre.track_id).where(TrackGenre.genre == genre)))


def test_the_genre_counts_follow_every_change_to_tracks_and_their_genres(catalog):
    """Triggers keep them (migration 0012) through whatever writes tracks: the ORM adding,
    refiling, indexing and deleting tracks (the cascade of their filings included), a Core
    update of many statuses at once, a genre renamed where it is filed, tracks and filings
    inserted by Core as bench/scale.py does."""
    catalog.migrate()
    rng = random.Random(7)
    genres, tags = ["rock", "pop", "jazz", None], [None, "Rock; Pop", "Jazz", " É\u0301lectro "]
    statuses = ["indexed", "indexed", "failed", "pending"]
    ids: list[int] = []
    changes = ["add", "refile", "status", "both", "delete", "bulk", "rename"]
    moved = set()  # the changes that moved a count
    for step in range(80):
        change = rng.choice(changes) if ids else "add"
        before = _counted(catalog)
        with catalog.session() as session, session.begin():
            track = session.get(Track, rng.choice(ids)) if ids else None
            if change == "add":
                track = Track(path=f"/m/{step}.flac", status=rng.choice(statuses))
                track.genre, track.tag_genre = rng.choice(genres), rng.choice(tags)
                session.add(track)
                session.flush()
                ids.append(track.id)
            if change in ("refile", "both"):
                track.genre, track.tag_genre = rng.choice(genres), rng.choice(tags)
            if change in ("status", "both"):
                track.status = rng.choice(statuses)
            if change == "delete":
                session.execute(delete(Track).where(Track.id == track.id))  # as pruning deletes
                ids.remove(track.id)
            if change == "bulk":
                wanted = rng.choice(statuses)
                session.execute(update(Track).where(Track.id.in_(ids[::2])).values(status=wanted))
            if change == "rename":  # a genre renamed where it is filed
                old, new = rng.sample(["rock", "pop", "jazz", "bebop"], 2)
                filed = update(TrackGenre).where(TrackGenre.genre == old).values(genre=new)
                session.execute(filed.where(~TrackGenre.track_id.in_(_filed_under(session, new))))
        assert _counted(catalog) == _counted_by_reading(catalog), (step, change)
        moved |= {change} if _counted(catalog) != before else set()
    assert moved == set(changes)
    with catalog.session() as session, session.begin():
        rows = [{"id": 1000 + i, "path": f"/core/{i}", "status": "indexed"} for i in range(3)]
        session.execute(insert(Track), rows)
        session.execute(insert(TrackGenre), [{"track_id": r["id"], "genre": "jazz"} for r in rows])
    assert _counted(catalog) == _counted_by_reading(catalog)
    assert catalog.genres() == sorted(_counted(catalog).items(), key=lambda p: (-p[1], p[0]))


def test_upgrading_counts_the_genres_of_the_tracks_a_catalog_holds(catalog):
    """Migration 0012 counts the indexed tracks' filings of a catalog made before it."""
    ids = _add(
        catalog,
        a={"genre": "rock", "tag_genre": "Rock; Pop"},
        b={"genre": "rock"},
        c={"genre": "jazz", "status": "failed"},
    )
    catalog.downgrade("0011")
    reopened = Catalog(catalog.url)
    assert reopened.genres() == [("rock", 2), ("pop", 1)]
    with reopened.session() as session, session.begin():
        session.get(Track, ids["c"]).status = "indexed"
    assert reopened.genres() == [("rock", 2), ("jazz", 1), ("pop", 1)]
    reopened.close()


def _sqlite_plan(connection, query) -> str:
    """SQLite's plan of `query`, its steps in a line."""
    compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
    steps = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")  # no :name read
    return " ".join(row[-1] for row in steps)


def test_a_genre_filter_looks_the_genre_up_by_index_on_both_backends(catalog):
    """A filter had matched every row's genre and split every tag's: work in proportion to the
    catalog (~170 ms at 100,000 tracks). SQLite's plan searches the genres' index; PostgreSQL's
    reads the indexed tracks' ids from an index too (migration 0013: its index on status alone
    had it read every track's row, 93 ms for a genre of 40,445 tracks, 38 since)."""
    _add(catalog, a={"genre": "rock"}, b={"genre": "jazz", "status": "failed"})
    matches = track_filters.genre_matches(["rock"])
    query = select(Track.id).where(Track.status == "indexed", matches)
    with catalog.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = _sqlite_plan(connection, query)
            assert "USING COVERING INDEX ix_track_genres_genre_track_id (genre=?)" in plan, plan
            assert "SCAN track_genres" not in plan and "SCAN tracks" not in plan, plan
            return
        connection.commit()
        vacuum = connection.execution_options(isolation_level="AUTOCOMMIT")
        vacuum.execute(text("VACUUM ANALYZE tracks, track_genres"))  # as autovacuum keeps them
        connection.execute(text("SET enable_seqscan = off"))  # as at a catalog's size
        compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
        plan = " ".join(row[0] for row in connection.execute(text(f"EXPLAIN {compiled}")))
    assert "Index Only Scan using ix_tracks_status_id on tracks" in plan, plan
    assert "Index Only Scan using ix_track_genres_genre_track_id" in plan, plan


# Texts a search must tell apart as the row scan does: FTS5's own syntax, LIKE's wildcards, a
# quote, scripts whose case SQLite's FTS5 folds otherwise than Python (Cherokee, Turkish İ), a
# decomposed name, trigrams split between a track's title and artist, and words of under 3
# characters, found only whole (beside no letter or digit).
TEXTS = {
    "a": {"title": "Électro Night", "artist": "AND OR NOT", "path": '/x/"quoted" NEAR(x).wav'},
    "b": {"title": "Northern Lights", "artist": "İstanbul", "path": "/m/100%_done.ogg"},
    "c": {"title": "ᎠᎡᎢ dance", "artist": "abc", "path": unicodedata.normalize("NFD", "/m/é.flac")},
    "d": {"title": "xabc", "artist": "bcdx", "path": "/m/*^-:.mp3"},
    "e": {"title": "Symphony No. 5 Part 2", "artist": "", "path": "/m/2025/x_1(é)-v.ogg"},
}
SEARCHES = (
    *("électro", "ÉLECTRO", "northern lig", "ern", "ꭰꭱꭲ", "Ꭰ", "ᎠᎡᎢ", "istanbul", "i̇stan"),
    *("İstanbul", "100%", "0%_", "%_d", "and or", "near(", '"quoted"', '"', "*^-:", "é.f"),
    *("e\u0301.f", "abcd", "abc", "bcdx", "ab", "x", "no such text"),
    *("lights northern", "night électro", "dance abc", "électro ᎠᎡᎢ", "x abc", "   "),
    *(
        "part 2",
        "2",
        "1",
        "no. 5",
        "é",
        "e\u0301",
        "(é)",
        "v",
        "x",
        "(x",
        "x)",
        "_",
        "\\",
        "[",
        "?",
    ),
)


def test_a_text_search_finds_what_reading_every_row_finds_on_both_backends(catalog):
    """SQLite's text index names candidates by trigram (migration 0011) and PostgreSQL's serve
    the match itself: neither may find a track the row scan does not, nor miss one."""
    ids = _add(catalog, **TEXTS)

    def scanned(q: str) -> list[int]:
        matches = track_filters.text_matches(q, trigrams=False)
        with catalog.session() as session:
            return list(session.scalars(select(Track.id).where(matches).order_by(Track.id)))

    found = {q: [track.id for track in catalog.list_tracks(q=q)[0]] for q in SEARCHES}
    assert found == {q: scanned(q) for q in SEARCHES}
    missed = {q for q, tracks in found.items() if not tracks}  # which of the İ ones, by backend
    assert {"abcd", "no such text", "électro ᎠᎡᎢ", "ab", "Ꭰ", "x abc", "\\", "[", "?"} <= missed
    assert len(missed) <= 13
    assert found["ꭰꭱꭲ"] == found["é.f"] == [ids["c"]] and found["near("] == [ids["a"]]
    assert found["abcd"] == []  # "abc" in one text, "bcd" in another
    assert found["İstanbul"] == [ids["b"]]  # as stored, whatever the backend's lower makes of İ
    # each word anywhere in the texts, in any order; a blank text keeps every track
    assert found["lights northern"] == [ids["b"]] and found["dance abc"] == [ids["c"]]
    assert found["   "] == sorted(ids.values())
    # a word of under 3 characters only whole: not the 2 of 2025, the 1 of 100%, x of xabc
    assert found["part 2"] == found["2"] == found["1"] == found["no. 5"] == [ids["e"]]
    assert found["x"] == [ids["a"], ids["e"]] and found["(x"] == found["x)"] == [ids["a"]]
    assert found["é"] == found["e\u0301"] == [ids["c"], ids["e"]] and found["v"] == [ids["e"]]
    assert found["_"] == [ids["b"], ids["e"]]  # no letter or digit in it: anywhere


def test_a_text_search_lists_what_the_tags_name_before_what_only_a_path_does(catalog):
    """By id alone, an untagged bootleg whose file name held the words came before the
    recording whose title and artist are them, and at a catalog's size pages before it."""
    ids = _add(
        catalog,
        bootleg={"path": "/dl/Halo (Beyonce) 2 live bootleg.mp3"},
        in_folder={"title": "Intro", "path": "/music/Halo 2/01.flac"},
        halo={"title": "Halo", "artist": "Beyonce", "path": "/music/b/01.flac"},
        halo_2={"title": "Halo 2", "artist": "Remixer", "path": "/music/halo 2.flac"},
    )

    def listed(q: str, **page) -> list[int]:
        return [track.id for track in catalog.list_tracks(q=q, **page)[0]]

    assert listed("halo") == [ids["halo"], ids["halo_2"], ids["bootleg"], ids["in_folder"]]
    assert listed("beyonce HALO") == [ids["halo"], ids["bootleg"]]
    assert listed("halo 2") == [ids["halo_2"], ids["bootleg"], ids["in_folder"]]
    assert listed("halo", page=2, per_page=2) == [ids["bootleg"], ids["in_folder"]]
    assert listed("") == sorted(ids.values())  # no text: by id


def test_a_text_search_is_served_by_an_index_on_both_backends(catalog):
    """It had lower-cased and matched every row (~290 ms at 100,000 tracks on SQLite)."""
    _add(catalog, **TEXTS)
    matches = track_filters.text_matches("northern", trigrams=catalog._text_index)
    query = select(Track.id).where(Track.status == "indexed", matches)
    with catalog.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = _sqlite_plan(connection, query)
            assert "SCAN track_text VIRTUAL TABLE INDEX" in plan, plan
            assert "SEARCH tracks USING INDEX ix_tracks_status (status=? AND rowid=?)" in plan
        else:  # the index chosen as at a catalog's size, over the status index and a scan
            connection.execute(text("SET enable_seqscan = off"))
            compiled = select(Track.id).where(matches).compile(connection)
            steps = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
            plan = " ".join(row[0] for row in steps)
            for column in ("title", "artist", "path"):
                assert f"Bitmap Index Scan on ix_tracks_{column}_trigrams" in plan, plan
            # a word under 3 characters, which no trigram holds, is checked on the rows read
            short = select(Track.id).where(track_filters.text_matches("2", trigrams=False))
            compiled = short.compile(connection)
            steps = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
            assert "trigrams" not in " ".join(row[0] for row in steps)


def _text_candidates(db: Catalog, q: str) -> set[int]:
    """The tracks SQLite's text index names for `q` (lower-cased)."""
    with db.engine.connect() as connection:
        return set(connection.scalars(track_filters.text_candidates([{q}])))


def test_the_text_index_follows_a_track_renamed_and_removed(sqlite_catalog):
    ids = _add(sqlite_catalog, a={"title": "Old Name", "artist": "Band"}, b={"title": "Other"})
    assert _text_candidates(sqlite_catalog, "old name") == {ids["a"]}
    with sqlite_catalog.session() as session, session.begin():
        session.get(Track, ids["a"]).title = "New Name"
        session.get(Track, ids["b"]).path = "/moved/b.flac"  # as a file moved is followed
    assert _text_candidates(sqlite_catalog, "old name") == set()
    assert _text_candidates(sqlite_catalog, "/moved/") == {ids["b"]}
    assert _text_candidates(sqlite_catalog, "/music/") == {ids["a"]}
    assert _text_candidates(sqlite_catalog, "new name") == {ids["a"]}
    assert _text_candidates(sqlite_catalog, "band") == {ids["a"]}
    with sqlite_catalog.session() as session, session.begin():
        session.execute(delete(Track).where(Track.id == ids["a"]))  # as pruning deletes
    assert _text_candidates(sqlite_catalog, "new name") == set()
    assert _text_candidates(sqlite_catalog, "other") == {ids["b"]}


def test_a_connection_of_another_program_is_refused_a_change_to_a_track_s_texts(sqlite_catalog):
    """The text index's triggers fold as Python does, under a name only mirsearch gives its
    connections: the sqlite3 shell's lower() folds ASCII only, and would have put the index out
    of step with the texts."""
    ids = _add(sqlite_catalog, a={"title": "Électro"})
    other = sqlite3.connect(sqlite_catalog.file)
    with other:
        other.execute("UPDATE tracks SET status = 'failed' WHERE id = ?", (ids["a"],))
        with pytest.raises(sqlite3.OperationalError, match="no such function: mirsearch_lower"):
            other.execute("UPDATE tracks SET title = 'ÉLECTRO' WHERE id = ?", (ids["a"],))
    other.close()
    assert sqlite_catalog.get(ids["a"]).status == "failed"
    assert sqlite_catalog.get(ids["a"]).title == "Électro"
    assert _text_candidates(sqlite_catalog, "électro") == {ids["a"]}


def test_a_catalog_without_the_text_index_reads_every_row(sqlite_catalog):
    """Migration 0011 makes none where SQLite lacks FTS5's trigram tokenizer (before 3.34)."""
    ids = _add(sqlite_catalog, **TEXTS)
    with sqlite_catalog.engine.begin() as connection:
        for trigger in ("insert", "update", "delete"):
            connection.execute(text(f"DROP TRIGGER track_text_{trigger}"))
        connection.execute(text("DROP TABLE track_text"))
    opened = Catalog(sqlite_catalog.url)
    assert not opened._text_index
    assert [track.id for track in opened.list_tracks(q="NORTHERN")[0]] == [ids["b"]]
    _add(opened, e={"title": "Northern Skies"})  # no trigger left to ask for the index
    assert len(opened.list_tracks(q="northern")[0]) == 2
    opened.close()


def test_upgrading_indexes_the_texts_of_the_tracks_a_catalog_holds(catalog):
    """Migration 0011 indexes the texts of the rows of a catalog made before it."""
    catalog.upgrade()
    catalog.downgrade("0010")
    with catalog.engine.begin() as connection:
        for track_id, title in ((1, "Électro Night"), (2, None), (3, "Northern Lights")):
            connection.execute(
                text(
                    "INSERT INTO tracks (id, path, title, status, n_windows, updated_at)"
                    " VALUES (:id, :path, :title, 'indexed', 0, CURRENT_TIMESTAMP)"
                ),
                {"id": track_id, "path": f"/m/{track_id}.flac", "title": title},
            )
    reopened = Catalog(catalog.url)
    assert [track.id for track in reopened.list_tracks(q="ÉLECTRO")[0]] == [1]
    assert [track.id for track in reopened.list_tracks(q=".flac")[0]] == [1, 2, 3]
    if reopened.file is not None:
        assert _text_candidates(reopened, "northern") == {3}
    reopened.close()


def test_stats_and_index_state(catalog):
    _add(
        catalog,
        a={"genre": "rock", "duration_s": 1800.0},
        b={"genre": "jazz", "duration_s": 1800.0},
        c={"status": "failed"},
        d={"status": "pending", "duration_s": 99.0},
    )
    with catalog.session() as session, session.begin():
        session.add(IndexState(id=1, generation=7, model_hash="abc"))
    with catalog.session() as session, session.begin(), pytest.raises(IntegrityError):
        session.add(IndexState(id=2, generation=1))
        session.flush()
    stats = catalog.stats()
    assert stats["tracks"] == 4
    assert (stats["indexed"], stats["failed"], stats["pending"]) == (2, 1, 1)
    assert stats["audio_hours"] == pytest.approx(1.0)
    assert stats["genres"] == {"jazz": 1, "rock": 1}
    assert stats["index_generation"] == 7 and stats["model_hash"] == "abc"
    state = catalog.index_state()
    assert (state.generation, state.model_hash) == (7, "abc")


def test_a_second_catalog_reads_what_the_first_wrote(catalog):
    ids = _add(catalog, a={"title": "shared"})
    other = Catalog(catalog.url)
    try:
        with other.session() as session:
            assert session.scalar(select(Track.title).where(Track.id == ids["a"])) == "shared"
    finally:
        other.close()


def test_a_sqlite_uri_names_the_file_it_makes(tmp_path, monkeypatch):
    """SQLite's URI form (`file:PATH?...&uri=true`, for a read-only catalog with mode=ro): its
    folder is made, not a folder named 'file:' where the command runs."""
    monkeypatch.chdir(tmp_path)
    catalog = Catalog(f"sqlite:///file:{tmp_path / 'home' / 'catalog.db'}?uri=true")
    catalog.migrate()
    catalog.close()
    assert (tmp_path / "home" / "catalog.db").is_file() and not (tmp_path / "file:").exists()


def test_a_catalog_on_a_read_only_volume_is_read_as_immutable(tmp_path, monkeypatch):
    """SQLite opens a WAL database on read-only media only where its -shm and -wal files are:
    a catalog closed cleanly, served from a read-only volume, was 'unable to open database
    file'. There it is opened read-only and immutable (the volume faked: tests may run as
    root, and cannot mount)."""
    url = f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
    writer = Catalog(url)
    _add(writer, a={"title": "kept"})
    writer.close()
    assert not (tmp_path / "home" / "catalog.db-wal").exists()
    statvfs = os.statvfs

    def read_only(path):
        flags = statvfs(path)
        if os.fspath(path) != str(tmp_path / "home"):
            return flags
        return os.statvfs_result((*flags[:8], flags.f_flag | os.ST_RDONLY, flags.f_namemax))

    monkeypatch.setattr(os, "statvfs", read_only)
    reader = Catalog(url, create=False)
    try:
        assert [t.title for t in reader.list_tracks()[0]] == ["kept"]
        with pytest.raises(CatalogError, match="attempt to write a readonly database"):
            _add(reader, b={"title": "refused"})
    finally:
        reader.close()


def test_a_catalog_no_one_may_write_is_read_as_immutable(tmp_path, monkeypatch):
    """A home made read-only by permissions (chmod -R a-w), its catalog closed cleanly: every
    command that only reads had failed with "attempt to write a readonly database" (SQLite
    could not make catalog.db-shm there), where the same home on a read-only volume was read.
    This process's permission is faked (root may write anywhere); the modes are real."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'catalog.db'}"
    writer = Catalog(url)
    _add(writer, a={"title": "kept"})
    writer.close()
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: str(path) != str(home) and access(path, mode)
    )
    (home / "catalog.db").chmod(0o444)
    home.chmod(0o555)
    reader = Catalog(url, create=False)
    try:
        assert [t.title for t in reader.list_tracks()[0]] == ["kept"]
        with pytest.raises(CatalogError, match="attempt to write a readonly database"):
            _add(reader, b={"title": "refused"})
    finally:
        reader.close()
        home.chmod(0o755)
    assert sorted(path.name for path in home.iterdir()) == ["catalog.db"]


def test_a_home_whose_modes_forbid_writing_is_written_by_whom_may_write_anyway(tmp_path):
    """The modes of a home made read-only (chmod -R a-w) do not stop root, nor the owner once
    they change them back: where this process may write the folder, the catalog is opened as
    ever, not read as immutable (which would refuse every write and miss every other writer's)."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'catalog.db'}"
    writer = Catalog(url)
    _add(writer, a={"title": "kept"})
    writer.close()
    (home / "catalog.db").chmod(0o444)
    home.chmod(0o555)
    try:
        if not os.access(home, os.W_OK):
            pytest.skip("only a process that may write anywhere (root) writes this home")
        again = Catalog(url)
        _add(again, b={"title": "added"})
        assert [t.title for t in again.list_tracks()[0]] == ["kept", "added"]
        again.close()
    finally:
        home.chmod(0o755)
        (home / "catalog.db").chmod(0o644)


def test_a_database_password_is_never_shown():
    """A PostgreSQL URL's password stays out of every message: a catalog that cannot be
    reached is named with *** in its place."""
    url = "postgresql+psycopg://mirsearch:s3cret-word@127.0.0.1:9/catalog"
    catalog = Catalog(url, create=False)
    assert catalog.shown_url == "postgresql+psycopg://mirsearch:***@127.0.0.1:9/catalog"
    with pytest.raises(CatalogError) as refused:
        catalog.counts()
    assert "s3cret" not in str(refused.value) and "mirsearch:***@127.0.0.1:9" in str(refused.value)


def test_a_catalog_in_a_folder_this_user_may_not_write_says_why(tmp_path):
    """A catalog its owner may still write, in a folder this user may not: SQLite cannot make
    the -shm file it reads through, and had said only "attempt to write a readonly database"."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'catalog.db'}"
    writer = Catalog(url)
    _add(writer, a={"title": "kept"})
    writer.close()
    home.chmod(0o555)
    script = (
        "from mirsearch.catalog import Catalog\n"
        "from mirsearch.errors import CatalogError\n"
        f"try:\n    Catalog({url!r}, create=False).list_tracks()\n"
        "except CatalogError as exc:\n    print(exc)\n"
    )
    command = [sys.executable, "-c", script]
    if os.access(home, os.W_OK):  # root: read without the power to write any folder
        if shutil.which("setpriv") is None:
            pytest.skip("this process may write any folder (root) and setpriv is absent")
        command = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]
    try:
        told = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    finally:
        home.chmod(0o755)
    assert re.search(
        rf"attempt to write a readonly database: SQLite must make catalog\.db-shm in "
        rf"{re.escape(str(home))} to read it, and this user may not write there",
        told.stdout,
    ), told.stdout + told.stderr


def test_a_catalog_opened_to_read_makes_none_in_an_empty_database(database_url):
    """A read-only command pointed at an empty PostgreSQL database (the server's admin one, a
    typo) had made the whole schema in it and answered 'no tracks'."""
    reader = Catalog(database_url, create=False)
    try:
        with pytest.raises(NotFoundError, match="no catalog"):
            reader.list_tracks()
        assert reader.exists() is False or reader.revision() is None
    finally:
        reader.close()


def test_processes_meeting_a_new_catalog_together_migrate_it_once(database_url):
    """Machines' index runs or servers starting against a new PostgreSQL catalog had raced to
    make its tables: all but one failed (DuplicateTable, UniqueViolation). On SQLite, each
    migration's BEGIN IMMEDIATE makes the others wait for it."""
    import threading

    catalogs = [Catalog(database_url) for _ in range(4)]
    start, failures = threading.Barrier(len(catalogs)), []

    def first_use(catalog: Catalog) -> None:
        start.wait()
        try:
            catalog.migrate()
        except Exception as exc:  # noqa: BLE001 what each met is the finding
            failures.append(exc)

    threads = [threading.Thread(target=first_use, args=(c,)) for c in catalogs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for catalog in catalogs:
        catalog.close()
    assert failures == []
    assert Catalog(database_url).revision() == database.SCHEMA_REVISION


def test_a_new_sqlite_catalog_opened_while_another_writes_it_waits_for_the_writer(tmp_path):
    """Turning a new SQLite file's journal to WAL needs its exclusive lock, which SQLite asks
    for without waiting: a process opening the catalog while another made its tables had
    failed at once ("database is locked"; the test above, 8 rounds of 100, and once in CI).
    It waits as for any writer."""
    import sqlite3
    import threading

    file = tmp_path / "catalog.db"
    writer = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE earlier (x)")
    writer.execute("BEGIN IMMEDIATE")  # as another process's migration holds it
    done = threading.Timer(0.5, writer.rollback)
    done.start()
    catalog = Catalog(f"sqlite:///{file}")
    try:
        catalog.migrate()
        assert catalog.revision() == database.SCHEMA_REVISION
    finally:
        done.join()
        catalog.close()
        writer.close()
