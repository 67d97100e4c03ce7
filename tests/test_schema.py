"""Tests for the catalog's schema: the models against the migrations, constraints, stored prints.

Every test taking `catalog` runs twice: on SQLite and on a fresh PostgreSQL database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import add_tracks
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from mirsearch import fingerprint
from mirsearch.catalog import Catalog
from mirsearch.schema import Base, Track, TrackPrint


def _modelled(name: str | None, kind: str, _parents: dict) -> bool:
    """Whether a table or index is one the models declare: the text index (migration 0011,
    SQLite's FTS5 table and its shadow tables, PostgreSQL's trigram indexes) and PostgreSQL's
    index on tracks (status, id) (0013) are not."""
    name = name or ""
    if kind == "table":
        return not name.startswith("track_text")
    return not (kind == "index" and (name.endswith("_trigrams") or name == "ix_tracks_status_id"))


def test_models_match_the_migrated_schema(catalog):
    catalog.upgrade()
    with catalog.engine.connect() as connection:
        opts = {"compare_type": True, "include_name": _modelled}
        context = MigrationContext.configure(connection, opts=opts)
        assert compare_metadata(context, Base.metadata) == []


def test_path_is_unique_and_status_is_checked(catalog):
    add_tracks(catalog, a={})
    with pytest.raises(IntegrityError):
        add_tracks(catalog, a={})
    with pytest.raises(IntegrityError):
        add_tracks(catalog, b={"status": "weird"})


def test_deleting_a_track_clears_duplicate_of(catalog):
    ids = add_tracks(catalog, original={})
    copy = add_tracks(
        catalog, copy={"duplicate_of": ids["original"], "duplicate_evidence": [{"s": 1}]}
    )
    with catalog.session() as session, session.begin():
        session.execute(delete(Track).where(Track.id == ids["original"]))
    assert catalog.get(copy["copy"]).duplicate_of is None


def test_prints_round_trip_and_go_with_their_track(catalog):
    ids = add_tracks(catalog, a={}, b={})
    a_print = np.random.default_rng(0).normal(0.0, 6.0, (22, 64)).astype(np.float32)
    with catalog.session() as session, session.begin():
        session.add(TrackPrint.of(ids["a"], a_print))
    got = catalog.prints([ids["a"], ids["b"], 999])
    assert list(got) == [ids["a"]]  # b has no print, 999 no track
    assert np.array_equal(got[ids["a"]], fingerprint.decode(fingerprint.encode(a_print)))
    with catalog.session() as session, session.begin():
        session.execute(delete(Track).where(Track.id == ids["a"]))
    assert catalog.prints([ids["a"]]) == {}
    with catalog.session() as session:
        assert session.scalars(select(TrackPrint)).all() == []


def test_times_read_back_in_utc_on_every_backend(catalog, database_url, monkeypatch):
    """SQLite keeps no time zone (its times had read back naive) and PostgreSQL gives its
    session's: `tracks --json` and /api/tracks/<id> had said 16:34:37 on the one and
    11:34:37-05:00 on the other for the same moment."""
    ids = add_tracks(catalog, a={})
    indexed = datetime(2026, 12, 5, 11, 34, 37, tzinfo=timezone(timedelta(hours=-5)))
    with catalog.session() as session, session.begin():
        session.get(Track, ids["a"]).indexed_at = indexed
    monkeypatch.setenv("PGTZ", "America/New_York")  # a PostgreSQL session's time zone
    elsewhere = Catalog(database_url)
    try:
        row = elsewhere.get(ids["a"])
    finally:
        elsewhere.close()
    assert row.indexed_at == indexed and row.indexed_at.tzinfo == UTC
    assert row.to_dict()["indexed_at"] == "2026-12-05T16:34:37+00:00"
    assert row.updated_at.tzinfo == UTC
