"""What an indexing run has to do: the files to analyse, those unchanged and the tracks moved."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Row, select

from mirsearch.analysis import file_sha256
from mirsearch.catalog import Catalog
from mirsearch.schema import Track, TrackPrint

# What a track's row tells of its file (changed, moved) and of its analysis (whole or not)
PLANNED = (
    Track.id,
    Track.path,
    Track.status,
    Track.size_bytes,
    Track.mtime,
    Track.sha256,
    Track.tags,
)


def plan(
    catalog: Catalog, files: list[Path], *, again: bool = False
) -> tuple[list[Path], int, dict[Path, int], dict[int, float]]:
    """Split files into those to analyse, the number unchanged since the last run and those
    that are indexed tracks moved or renamed (by track id; see `_moved`), and give the new
    modification time of each unchanged file found so by its content hash (by track id: a
    touched file, a copy that did not keep times), to be recorded so that the next run need not
    hash it again. An indexed track without its print or tags (a schema downgrade drops them;
    an upgrade brings back only the empty table or column) is analysed again; with `again` (a
    rebuild), every file is."""
    with catalog.session() as session:  # the columns compared, not whole rows: 12 kB a track
        rows = {row.path: row for row in session.execute(select(*PLANNED))}
        printed = set(session.scalars(select(TrackPrint.track_id)))
    complete = {
        path: row
        for path, row in rows.items()
        if row.status == "indexed" and row.id in printed and row.tags is not None
    }
    todo, new, unchanged, touched = [], [], 0, {}
    for path in files:
        row = rows.get(str(path))
        if row is None:
            new.append(path)
            todo.append(path)
            continue
        if not again and (row.status == "failed" or str(path) in complete):
            try:
                stat = path.stat()
                same_stat = row.size_bytes == stat.st_size and row.mtime == stat.st_mtime
                if same_stat or row.sha256 == file_sha256(path):
                    unchanged += 1
                    if not same_stat:
                        touched[row.id] = stat.st_mtime
                    continue
            except OSError:  # unreadable now: the analysis records why
                pass
        todo.append(path)
    moved = _moved(new, complete.values())
    return [p for p in todo if p not in moved], unchanged, moved, touched


def _moved(new: list[Path], rows: Iterable[Row]) -> dict[Path, int]:
    """The new paths among `new` that hold an indexed track whose file is gone from its own path
    (moved or renamed): the same size, then the same content hash. Each track moves once. Only
    the tracks of a new file's size are looked for on disk: a run without new files touches
    none of the catalog's paths."""
    sizes = {}
    for path in new:
        try:
            sizes[path] = path.stat().st_size
        except OSError:  # unreadable: the analysis records why
            continue
    wanted = set(sizes.values())
    gone_by_size = defaultdict(list)
    for row in rows:
        if row.size_bytes in wanted and not os.path.lexists(row.path):
            gone_by_size[row.size_bytes].append(row)
    moved: dict[Path, int] = {}
    for path, size in sizes.items():
        candidates = gone_by_size.get(size)
        if not candidates:
            continue
        try:
            digest = file_sha256(path)
        except OSError:
            continue
        for row in candidates:
            if row.sha256 == digest:
                moved[path] = row.id
                candidates.remove(row)
                break
    return moved
