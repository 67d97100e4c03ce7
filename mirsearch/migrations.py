"""The catalog schema's migrations (the Alembic scripts in migrations/): run in one
transaction, one process at a time, over a connection; the revision this code wants, the ones
it knows, and a column a skipped migration left out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from mirsearch.errors import MirsearchError

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
SCHEMA_REVISION = "0013"  # the newest migration in MIGRATIONS_DIR (a test holds them together)
MIGRATION_LOCK = 0x6D69727365617263  # the PostgreSQL advisory lock migrations take ("mirsearc")


@contextmanager
def migrating(connection: sa.Connection) -> Iterator[sa.Connection]:
    """`connection` in one transaction for a migration: committed whole, or not at all.

    PostgreSQL's DDL is transactional, and an advisory lock orders processes that meet a
    new catalog together. SQLite's is too, but its Python driver opens a transaction only
    before a row is written: each CREATE TABLE before the first write to alembic_version
    was committed on its own, and a crash there left tables without their revision, every
    later command failing ("table index_state already exists"). There the transaction is
    opened by hand, BEGIN IMMEDIATE: it also makes a second process wait for the first's
    migration, then go on from the revision it left.
    """
    with connection.begin():
        if connection.dialect.name != "sqlite":
            _one_migration_at_a_time(connection)
            yield connection
            return
        driver = connection.connection.driver_connection
        driver.isolation_level = None  # none of the driver's own transactions: ours only
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection
        finally:
            driver.isolation_level = ""  # the driver's default, for the pool's next user


def _one_migration_at_a_time(connection: sa.Connection) -> None:
    """On PostgreSQL, wait for any other process's migration of this database to commit, then
    migrate from what it left (alembic reads the revision after this): processes that first
    met a new catalog together (two machines' index runs, servers starting) had raced to make
    its tables, all but one failing."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def alembic_config(connection: sa.Connection):
    """An Alembic Config built in code (no alembic.ini) that migrates over `connection`."""
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise MirsearchError(
            f"the database migrations are missing: expected them in {MIGRATIONS_DIR}; "
            "install mirsearch from its source checkout (pip install -e .)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def known_revision(revision: str) -> bool:
    """Whether `revision` is one of the migrations in MIGRATIONS_DIR."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision) is not None
    except CommandError:
        return False


def missing_column(engine: sa.Engine, metadata: sa.MetaData) -> str | None:
    """The first column ("table.column") of `metadata` the database lacks, or None: a catalog
    whose migrations were skipped (stamped as having had them)."""
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                return f"{table.name}.{column.name}"
    return None
