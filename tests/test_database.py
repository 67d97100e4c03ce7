"""The catalog's database (database.py) and its migrations (migrations.py, migrations/): the
engine and SQLite's setup, a read-only volume, a full disk, a damaged file, migrations committed
whole and one process at a time, and each migration's conversions.

Every test taking `catalog` runs twice: on SQLite and on a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import add_tracks, table_names
from sqlalchemy import select, text

from mirsearch import database, fingerprint, migrations
from mirsearch.catalog import Catalog
from mirsearch.errors import CatalogError, MirsearchError, NotFoundError
from mirsearch.schema import IndexState, Track, TrackPrint


def test_first_use_migrates(catalog):
    assert catalog.index_state().generation == 0
    assert {"tracks", "index_state", "alembic_version"} <= table_names(catalog)
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
    assert table_names(catalog) <= {"alembic_version"}
    catalog.upgrade()
    assert {"tracks", "index_state"} <= table_names(catalog)
    ids = add_tracks(catalog, a={"title": "A"})
    assert catalog.get(ids["a"]).title == "A"


def test_the_first_session_migrates_a_catalog_behind_and_leaves_one_at_the_schema(catalog):
    assert catalog.revision() is None  # an empty database
    catalog.upgrade("0003")
    behind = Catalog(catalog.url)
    assert behind.revision() == "0003"
    assert behind.index_state().generation == 0  # its first session upgrades
    assert behind.revision() == migrations.SCHEMA_REVISION
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


def test_schema_revision_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == migrations.SCHEMA_REVISION


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
    add_tracks(sqlite_catalog, a={"title": "A"}, b={"title": "B"})
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

    import sqlalchemy as sa

    add_tracks(sqlite_catalog, a={"title": "kept"})

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

    import sqlalchemy as sa

    add_tracks(sqlite_catalog, a={"title": "A"})

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
    assert catalog.revision() is None and table_names(catalog) <= {"alembic_version"}
    assert catalog.index_state().generation == 0  # migrated from the start
    assert catalog.revision() == migrations.SCHEMA_REVISION
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
    ids = add_tracks(catalog, a={})
    with catalog.session() as session, session.begin():
        session.add(TrackPrint.of(ids["a"], print_))
    catalog.downgrade("0008")
    with catalog.engine.connect() as connection:
        format_, data = connection.execute(text("SELECT format, data FROM track_prints")).one()
    assert format_ == 3
    assert np.array_equal(fingerprint.decode(bytes(data), format=3), stored)


def test_a_catalog_missing_a_column_of_its_revision_is_refused_before_any_write(catalog):
    catalog.upgrade()
    ids = add_tracks(catalog, a={"title": "A"})
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
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", tmp_path / "nowhere")
    db = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(MirsearchError, match="migrations are missing"):
        db.stats()


def test_a_second_catalog_reads_what_the_first_wrote(catalog):
    ids = add_tracks(catalog, a={"title": "shared"})
    other = Catalog(catalog.url)
    try:
        with other.session() as session:
            assert session.scalar(select(Track.title).where(Track.id == ids["a"])) == "shared"
    finally:
        other.close()


def test_an_empty_file_is_no_catalog_to_a_reader_but_one_beside_its_log_may_be(tmp_path):
    """A reader had opened a 0-byte catalog.db and made it an empty database; an indexing run
    makes its catalog in it. A catalog in WAL mode whose log was never folded in is a 0-byte
    file beside a log holding its pages: not refused as empty."""
    file = tmp_path / "catalog.db"
    file.touch()
    with pytest.raises(NotFoundError, match=r"catalog\.db: the file is empty \(0 bytes\)"):
        Catalog(f"sqlite:///{file}", create=False).migrate()
    assert os.listdir(tmp_path) == ["catalog.db"] and file.stat().st_size == 0
    log = tmp_path / "catalog.db-wal"
    log.write_bytes(bytes.fromhex("377f0682") + bytes(28))  # a write-ahead log's header
    assert not database.holds_nothing(file)
    log.write_bytes(b"")
    assert database.holds_nothing(file)
    log.unlink()
    Catalog(f"sqlite:///{file}").migrate()
    assert file.stat().st_size > 0 and not database.holds_nothing(file)


def test_a_sqlite_uri_names_the_file_it_makes(tmp_path, monkeypatch):
    """SQLite's URI form (`file:PATH?...&uri=true`, for a read-only catalog with mode=ro): its
    folder is made, not a folder named 'file:' where the command runs."""
    monkeypatch.chdir(tmp_path)
    catalog = Catalog(f"sqlite:///file:{tmp_path / 'home' / 'catalog.db'}?uri=true")
    catalog.migrate()
    catalog.close()
    assert (tmp_path / "home" / "catalog.db").is_file() and not (tmp_path / "file:").exists()


def assert_read_not_written(url: str) -> None:
    """The catalog at `url`, holding one track "kept", is read, and a write to it refused in a
    line."""
    reader = Catalog(url, create=False)
    try:
        assert [t.title for t in reader.list_tracks()[0]] == ["kept"]
        with pytest.raises(CatalogError, match="attempt to write a readonly database"):
            add_tracks(reader, b={"title": "refused"})
    finally:
        reader.close()


def test_a_catalog_on_a_read_only_volume_is_read_as_immutable(tmp_path, monkeypatch):
    """SQLite opens a WAL database on read-only media only where its -shm and -wal files are:
    a catalog closed cleanly, served from a read-only volume, was 'unable to open database
    file'. There it is opened read-only and immutable (the volume faked: tests may run as
    root, and cannot mount)."""
    url = f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
    writer = Catalog(url)
    add_tracks(writer, a={"title": "kept"})
    writer.close()
    assert not (tmp_path / "home" / "catalog.db-wal").exists()
    statvfs = os.statvfs

    def read_only(path):
        flags = statvfs(path)
        if os.fspath(path) != str(tmp_path / "home"):
            return flags
        return os.statvfs_result((*flags[:8], flags.f_flag | os.ST_RDONLY, flags.f_namemax))

    monkeypatch.setattr(os, "statvfs", read_only)
    assert_read_not_written(url)


def test_a_catalog_no_one_may_write_is_read_as_immutable(tmp_path, monkeypatch):
    """A home made read-only by permissions (chmod -R a-w), its catalog closed cleanly: every
    command that only reads had failed with "attempt to write a readonly database" (SQLite
    could not make catalog.db-shm there), where the same home on a read-only volume was read.
    This process's permission is faked (root may write anywhere); the modes are real."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'catalog.db'}"
    writer = Catalog(url)
    add_tracks(writer, a={"title": "kept"})
    writer.close()
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: str(path) != str(home) and access(path, mode)
    )
    (home / "catalog.db").chmod(0o444)
    home.chmod(0o555)
    try:
        assert_read_not_written(url)
    finally:
        home.chmod(0o755)
    assert sorted(path.name for path in home.iterdir()) == ["catalog.db"]


def test_a_home_whose_modes_forbid_writing_is_written_by_whom_may_write_anyway(tmp_path):
    """The modes of a home made read-only (chmod -R a-w) do not stop root, nor the owner once
    they change them back: where this process may write the folder, the catalog is opened as
    ever, not read as immutable (which would refuse every write and miss every other writer's)."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'catalog.db'}"
    writer = Catalog(url)
    add_tracks(writer, a={"title": "kept"})
    writer.close()
    (home / "catalog.db").chmod(0o444)
    home.chmod(0o555)
    try:
        if not os.access(home, os.W_OK):
            pytest.skip("only a process that may write anywhere (root) writes this home")
        again = Catalog(url)
        add_tracks(again, b={"title": "added"})
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
    add_tracks(writer, a={"title": "kept"})
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
    assert Catalog(database_url).revision() == migrations.SCHEMA_REVISION


def test_a_new_sqlite_catalog_opened_while_another_writes_it_waits_for_the_writer(tmp_path):
    """Turning a new SQLite file's journal to WAL needs its exclusive lock, which SQLite asks
    for without waiting: a process opening the catalog while another made its tables had
    failed at once ("database is locked"; the test above, 8 rounds of 100, and once in CI).
    It waits as for any writer."""
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
        assert catalog.revision() == migrations.SCHEMA_REVISION
    finally:
        done.join()
        catalog.close()
        writer.close()
