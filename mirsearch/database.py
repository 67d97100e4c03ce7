"""The catalog's database under its queries: the engine made for a URL (SQLite's pragmas, its
file, a read-only volume), the write-ahead log folded in, and what a driver's error says (its
migrations are migrations.py's)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import time
import weakref
from functools import lru_cache, partial
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a SQLite connection waits for another writer's lock
IDS_PER_QUERY = 10_000  # ids asked for in one query: SQLite takes at most 32,766 values
FULL_DISK_BYTES = 1 << 20  # free room under which SQLite's "disk I/O error" is told as a full disk
DISK_FULL = "database or disk is full"  # what SQLite says of SQLITE_FULL
DISK_IO_ERROR = "disk I/O error"  # of any SQLITE_IOERR (a full disk where it grows its -shm file)
_WARNED: weakref.WeakSet[sa.Engine] = weakref.WeakSet()  # engines warned of a log left unfolded


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def _holds_all(value, spec: str):
    """Whether `value` lower-cased holds every item of `spec`, a JSON list of one-key objects:
    {"any": [texts]}, one of those texts, or {"regex": pattern}, a match of that regular
    expression (NULL for NULL): a text search's words, checked in one call a row (plain loops:
    generators and a function a word took 7 µs a row of twelve words, these 0.9)."""
    if value is None:
        return None
    text = value.lower()
    for texts, pattern in _checks(spec):
        if pattern is not None:
            if pattern.search(text) is None:
                return False
            continue
        for one in texts:
            if one in text:
                break
        else:
            return False
    return True


@lru_cache(maxsize=64)
def _checks(spec: str) -> list[tuple[tuple[str, ...], re.Pattern | None]]:
    """`spec`'s items as (texts, None) or ((), compiled pattern)."""
    items = json.loads(spec)
    return [
        ((), re.compile(i["regex"])) if "regex" in i else (tuple(i["any"]), None) for i in items
    ]


def reason(exc: sa.exc.DBAPIError) -> str:
    """What the database driver said, on one line (psycopg adds a hint on a line of its own)."""
    return "; ".join(line.strip() for line in str(exc.orig).splitlines() if line.strip())


def shown(url: str) -> str:
    """`url` as a message may show it: its password hidden."""
    try:
        return str(sa.make_url(url))
    except sa.exc.ArgumentError:
        return "URL (not one SQLAlchemy reads)"


def sqlite_file(url: str) -> Path | None:
    """The SQLite database's file; None for a server's database or one in memory."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = (parsed.database or "").removeprefix("file:")  # as ?uri=true has it
    return None if database in ("", ":memory:") else Path(database)


def create_engine(url: str, *, create: bool) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    file = sqlite_file(url)
    if create and file:
        file.parent.mkdir(parents=True, exist_ok=True)
    if file and "uri" not in parsed.query and _unchangeable(file):
        # SQLite opens a WAL database it may not write only if its -shm and -wal files are
        # there (a catalog closed cleanly has none), or as immutable, which such a file is
        url = f"sqlite:///file:{quote(str(file))}?mode=ro&immutable=1&uri=true"
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    if file:
        sa.event.listen(engine, "handle_error", partial(_told_plainly, file))
    return engine


def _unchangeable(file: Path) -> bool:
    """Whether the SQLite file is there and nothing can change it: on a file system mounted
    read-only, or, where this process may not write its folder, with no write permission for
    anyone on it and its folder (a home made read-only with `chmod -R a-w`) and no write-ahead
    log beside it (one that is there is read through its -shm file, as SQLite opens it)."""
    try:
        if not file.is_file():
            return False
        if os.statvfs(file.parent).f_flag & os.ST_RDONLY:
            return True
        if os.access(file.parent, os.W_OK):  # root's, or this user's: may be written
            return False
        modes = file.stat().st_mode | file.parent.stat().st_mode
        return not modes & 0o222 and not file.with_name(file.name + "-wal").exists()
    except OSError:
        return False


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # SQLite's own lower() folds ASCII only: "Électro" stayed so, and no genre filter or title
    # search found it, where PostgreSQL's does (Python's folds every script)
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    # the same fold under a name of ours, for the triggers that keep the text index (migration
    # 0011): a connection without it (the sqlite3 shell) is refused a change to a track's texts
    # instead of putting that index out of step with them
    dbapi_connection.create_function("mirsearch_lower", 1, _lower, deterministic=True)
    # a text search's words, checked in one call a row (track_filters._WordsHeld)
    dbapi_connection.create_function("mirsearch_holds_all", 2, _holds_all, deterministic=True)
    cursor = dbapi_connection.cursor()
    _write_ahead_log(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    # each commit on disk before it returns: an index run deletes the last generation's files
    # once the next is committed, and under NORMAL a power cut could take the commit back to a
    # generation whose files are gone (the index files are synced before the commit; one sync
    # more a batch of tracks)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _write_ahead_log(cursor) -> None:
    """Put the database in WAL mode. Turning a new file's journal to WAL takes SQLite's
    exclusive lock without its busy handler: of processes (or threads) opening a new catalog
    together, all but one had failed at once with "database is locked". Waits as a locked
    write does instead, then tells the same error."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def checkpoint(engine: sa.Engine) -> None:
    """Fold a SQLite database's write-ahead log into its file, at the end of what writes it.
    A command leaves without closing its connections (cli.run), when SQLite would have done
    it: an indexed catalog had lived in catalog.db-wal, catalog.db an empty shell to a backup
    of that file alone, and to readers on a read-only volume (opened immutable, the log
    unread) no catalog at all. Best effort: a database that cannot be used says so in what the
    command does next, not here; a log left unfolded (a full disk) is warned of, as nothing is
    lost while the log stays with the file."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    except sa.exc.DBAPIError as exc:
        file = sqlite_file(str(engine.url))
        unfolded = file and _has_frames(file.with_name(file.name + "-wal"))
        if not unfolded or engine in _WARNED:  # once a command (after its migration, at its end)
            log.debug("catalog %s not checkpointed: %s", shown(str(engine.url)), exc)
            return
        _WARNED.add(engine)
        log.warning(
            "%s does not hold the whole catalog: its write-ahead log %s-wal could not be folded "
            "in: %s. Nothing is lost while the two files stay together, but a copy of %s "
            "alone, or a reader on a read-only volume, finds it damaged: make room and run "
            "`mirsearch index` again to fold it in",
            file,
            file.name,
            reason(exc),
            file.name,
        )


def holds_nothing(file: Path) -> bool:
    """Whether the SQLite file is there with nothing in it: 0 bytes, with no write-ahead log
    beside it holding the pages (a catalog in WAL mode whose log was never folded in). SQLite
    opens such a file as a new database, and writes one into it."""
    try:
        return file.stat().st_size == 0 and not _has_frames(file.with_name(file.name + "-wal"))
    except OSError:
        return False


def _has_frames(wal: Path) -> bool:
    """Whether the write-ahead log `wal` is there and not empty."""
    try:
        return wal.stat().st_size > 0
    except OSError:
        return False


def _told_plainly(file: Path, context: sa.engine.ExceptionContext):
    """A handler of a SQLite engine's errors: those a person cannot act on as SQLite words them
    (a full disk, a folder it may not write) are returned with what to know; None leaves the
    others as they are."""
    told = context.sqlalchemy_exception
    if not isinstance(told, sa.exc.DBAPIError):
        return None
    words = _full_disk(file.parent, str(context.original_exception)) or _read_only_folder(
        file, context.original_exception
    )
    if words is None:
        return None
    return type(told)(
        told.statement,
        told.params,
        sqlite3.OperationalError(words),
        connection_invalidated=told.connection_invalidated,
    )


def _full_disk(directory: Path, words: str) -> str | None:
    """SQLite's "database or disk is full" with where and how much room is left, and its "disk
    I/O error" said to be a full disk when it nearly is (what SQLite says when it cannot grow
    its -shm file); None for other errors."""
    if words not in (DISK_FULL, DISK_IO_ERROR):
        return None
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return None
    if words == DISK_FULL:
        return f"{DISK_FULL} ({free:,} bytes free in {directory})"
    if free < FULL_DISK_BYTES:
        return f"{DISK_IO_ERROR} (the disk is full: {free:,} bytes free in {directory})"
    return None


def _read_only_folder(file: Path, exc: BaseException) -> str | None:
    """SQLite's "attempt to write a readonly database" when it could not make its -shm file
    (reading a WAL database needs one) in a folder this user may not write; None otherwise."""
    if getattr(exc, "sqlite_errorname", None) != "SQLITE_READONLY_DIRECTORY":
        return None
    return (
        f"{exc}: SQLite must make {file.name}-shm in {file.parent} to read it, and this user "
        "may not write there; let it write there, or make the folder and the catalog read-only "
        "to everyone (chmod a-w), which readers then open as they are"
    )


def cannot_be_used(exc: sa.exc.DatabaseError) -> bool:
    """Whether `exc` says the database cannot be used (lost, locked, full, or damaged inside:
    SQLite's "database disk image is malformed" is a bare DatabaseError), not that a statement
    broke a constraint."""
    return isinstance(exc, sa.exc.OperationalError) or type(exc) is sa.exc.DatabaseError
