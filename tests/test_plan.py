"""What an indexing run plans (catalog on SQLite and PostgreSQL): unchanged files skipped, changed
ones redone, moved or renamed tracks followed, tracks missing their print or tags analysed again."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import rows

from mirsearch.api import Engine
from mirsearch.schema import Track


@pytest.fixture
def settings(db_settings):
    """Every indexing test runs with the catalog on SQLite and on PostgreSQL."""
    return db_settings


def test_second_run_changes_nothing_and_changed_files_are_redone(settings, folder, monkeypatch):
    """A touched file is hashed once to tell it unchanged, and its new time kept: it had been
    hashed whole again on every run."""
    from mirsearch import plan

    sha = plan.file_sha256
    engine = Engine(settings)
    engine.index_paths([folder])
    again = engine.index_paths([folder])
    assert (again.indexed, again.failed, again.unchanged) == (0, 0, 9)
    os.utime(folder / "demo-02.ogg")  # touched, same content: still unchanged
    hashed = []
    monkeypatch.setattr(plan, "file_sha256", lambda path: hashed.append(path.name) or sha(path))
    assert engine.index_paths([folder]).unchanged == 9 and hashed == ["demo-02.ogg"]
    assert engine.index_paths([folder]).unchanged == 9 and hashed == ["demo-02.ogg"]  # not again
    (folder / "demo-04.wav").unlink()
    from mirsearch.audio import load
    from mirsearch.encoding import write

    write(folder / "demo-04.wav", load(folder / "demo-01.flac").samples[::-1].copy(), 16_000)
    before = rows(engine)["demo-04.wav"].sha256
    third = engine.index_paths([folder])
    assert third.indexed == 1 and third.unchanged == 8
    assert rows(engine)["demo-04.wav"].sha256 != before


def test_a_moved_or_renamed_file_keeps_its_track_and_is_not_embedded_again(settings, folder):
    """A catalog reorganised on disk: each moved file's row follows it (same id, vectors, genre),
    nothing is analysed or flagged as a duplicate of its old self, and `--prune` has nothing to
    remove. A copy whose original is still there is a new track; one old file's content found
    twice moves once."""
    engine = Engine(settings)
    engine.index_paths([folder])
    before = rows(engine)
    (folder / "album").mkdir()
    (folder / "demo-01.flac").rename(folder / "album" / "first.flac")
    (folder / "demo-02.ogg").rename(folder / "album" / "second.ogg")
    shutil.copy(folder / "album" / "second.ogg", folder / "second-again.ogg")
    shutil.copy(folder / "demo-03.mp3", folder / "third-copy.mp3")
    summary = engine.index_paths([folder], prune=True)
    after = rows(engine)
    assert (summary.moved, summary.removed, summary.unchanged) == (2, 0, 7)
    assert summary.indexed == 2 and summary.duplicates == 2  # the two copies
    for old, new in (("demo-01.flac", "first.flac"), ("demo-02.ogg", "second.ogg")):
        assert old not in after
        assert after[new].id == before[old].id and after[new].genre == before[old].genre
        assert after[new].path == str((folder / "album" / new).resolve())
        assert after[new].duplicate_of is None
        assert engine.index().contains(after[new].id)
    assert after["second-again.ogg"].duplicate_of == before["demo-02.ogg"].id
    assert after["third-copy.mp3"].duplicate_of == before["demo-03.mp3"].id
    again = engine.index_paths([folder])
    assert (again.indexed, again.moved, again.unchanged) == (0, 0, 11)


def test_a_track_that_lost_its_print_or_tags_is_analysed_again(settings, folder):
    """What a schema downgrade drops (prints, tags) an upgrade brings back empty: the next run
    analyses those tracks again rather than calling them unchanged."""
    from sqlalchemy import delete, update

    from mirsearch.schema import TrackPrint

    engine = Engine(settings)
    first = engine.index_paths([folder])
    by_name = rows(engine)
    with engine.catalog.session() as session, session.begin():
        session.execute(delete(TrackPrint).where(TrackPrint.track_id == by_name["demo-01.flac"].id))
        session.execute(
            update(Track).where(Track.id == by_name["demo-02.ogg"].id).values(tags=None)
        )
    again = engine.index_paths([folder])
    assert again.indexed == 2 and again.unchanged == first.indexed + first.failed - 2
    by_name = rows(engine)
    assert by_name["demo-01.flac"].id in engine.catalog.prints([by_name["demo-01.flac"].id])
    assert by_name["demo-02.ogg"].tags
    assert engine.index_paths([folder]).indexed == 0
