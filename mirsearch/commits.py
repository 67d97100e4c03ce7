"""How an indexing run commits: each batch of results is one transaction of the catalog that
ends by writing the vector index as the next generation and recording it, so that the catalog
and the index never disagree, wherever the run stops and whichever other run commits."""

from __future__ import annotations

import errno
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mirsearch.analysis import FileAnalysis
from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.database import reason
from mirsearch.errors import CatalogError, IndexMismatchError
from mirsearch.generations import prune_generations
from mirsearch.index import VectorIndex
from mirsearch.records import RunCounts, record
from mirsearch.schema import IndexState, Track

# Each batch writes the whole index as a new generation: 2 GB at 12 M windows (100,000 tracks),
# rewritten every 32 tracks had made the writes grow with the square of the catalog. Once writing
# one takes SLOW_SAVE_S or more, the next batch lasts until that is at most SAVE_SHARE of it.
SLOW_SAVE_S = 1.0
SAVE_SHARE = 0.1


NOT_COMMITTED = "this batch was not committed, the catalog and index are as the last one left them"


def _what_to_do(exc: OSError) -> str:
    """What a user does about a generation's file that could not be written."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "make room and run `mirsearch index` again"
    return "run `mirsearch index` again once the index folder can be written"


class Commits:
    """The generations one indexing run writes into `catalog` and its index folder, from the
    generation `at` it loaded."""

    def __init__(self, catalog: Catalog, settings: Settings, *, at: int):
        self.catalog = catalog
        self.settings = settings
        self.at = at  # the catalog's index generation this run loaded or last wrote
        self.saving_s = 0.0  # how long writing the last generation's files took

    def batch(
        self,
        index: VectorIndex,
        first: FileAnalysis,
        results: Iterator[FileAnalysis],
        model_hash: str,
        counts: RunCounts,
        progress: Callable[[int], None] | None,
        *,
        tracks: int,
        seconds: float,
    ) -> None:
        """Record `first` and the results after it, one at a time as they arrive, in one
        transaction that ends by writing a new index generation: after `tracks` results or
        `seconds`, and not before ten times the last generation's writing where that took
        seconds (SLOW_SAVE_S). Each is checked for duplicates on arrival, while the workers go
        on, and against the tracks recorded before it in this batch too."""
        started = time.perf_counter()
        # a batch lasts long enough for writing its generation to be a small share of the run
        least_s = self.saving_s / SAVE_SHARE if self.saving_s >= SLOW_SAVE_S else 0.0
        with self.generation(index, model_hash) as session:
            for n, result in enumerate(itertools.chain([first], results), 1):
                record(session, index, result, model_hash, counts, settings=self.settings)
                if progress:
                    progress(1)
                elapsed = time.perf_counter() - started
                if (n >= tracks or elapsed > seconds) and elapsed >= least_s:
                    break

    @contextmanager
    def generation(self, index: VectorIndex, model_hash: str) -> Iterator[Session]:
        """One transaction that ends by saving the index as the next generation and recording it.

        The index files are written before the commit: a crash in between leaves the catalog on
        the previous generation, whose files are still on disk, so the two never disagree. A
        generation this run did not write (another indexing run's, on another machine sharing
        the catalog) stops it before it writes over that one: its rows are rolled back.
        """
        try:
            with self.catalog.session() as session, session.begin():
                yield session
                state = session.get(IndexState, 1, with_for_update=True)
                if state is None:  # a row not there yet is locked by no one: two runs may make it
                    state = IndexState(id=1, generation=0, model_hash=model_hash)
                    session.add(state)
                    session.flush()  # its catalog_id drawn
                if state.generation != self.at:
                    raise IndexMismatchError(
                        f"another indexing run committed generation {state.generation} of this "
                        f"catalog while this one held generation {self.at}: this batch was not "
                        "committed; run `mirsearch index` again"
                    )
                generation = state.generation + 1
                saving = time.perf_counter()
                try:
                    index.save(self.settings.index_dir, generation, catalog_id=state.catalog_id)
                    self.saving_s = time.perf_counter() - saving
                except OSError as exc:  # a full disk: the catalog stays at the last generation
                    raise OSError(f"{exc}; {NOT_COMMITTED}: {_what_to_do(exc)}") from exc
                state.generation, state.model_hash = generation, model_hash
                highest = session.scalar(select(func.max(Track.id))) or 0
                # records._new_track_id
                state.last_track_id = max(state.last_track_id or 0, highest)
        except CatalogError as exc:  # its commit failed (a full disk, a server lost)
            raise CatalogError(
                f"{exc}; {NOT_COMMITTED}: run `mirsearch index` again once the catalog can be "
                "written (a full disk: make room)"
            ) from exc
        except IntegrityError as exc:
            # another machine's run made the same rows (on PostgreSQL, which lets two runs write
            # at once: the first generation's, or the tracks of one folder): it had been a
            # traceback (UniqueViolation)
            raise IndexMismatchError(
                "another indexing run wrote the same rows of this catalog meanwhile "
                f"({reason(exc)}): this batch was not committed; run `mirsearch index` again"
            ) from exc
        self.at = generation
        prune_generations(self.settings.index_dir, keep=generation)
