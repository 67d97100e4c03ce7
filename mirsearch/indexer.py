"""Walk folders, analyse new or changed audio, commit it to the catalog and the vector index."""

from __future__ import annotations

import itertools
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from mirsearch.analysis import FileAnalysis, analyse_all
from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.database import reason
from mirsearch.errors import AudioError, IndexMismatchError
from mirsearch.files import discover
from mirsearch.flags import forget_duplicates_of
from mirsearch.generations import none_of, prune_generations, saved_record, writing
from mirsearch.index import VectorIndex
from mirsearch.index_meta import LOST, IndexMeta
from mirsearch.model_card import read_card
from mirsearch.plan import plan
from mirsearch.prefetch import DecodeAhead
from mirsearch.records import record
from mirsearch.schema import IndexState, Track
from mirsearch.scoring import calibrated_threshold
from mirsearch.workers import default_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSummary:
    indexed: int = 0  # files analysed and committed in this run
    unchanged: int = 0  # files whose content hash (and model) had not changed
    moved: int = 0  # indexed tracks found at a new path (moved or renamed), not embedded again
    failed: int = 0  # files recorded as failed, with their message
    changing: int = 0  # files that changed while they were read: not recorded, tried next run
    removed: int = 0  # rows pruned because their file is gone
    missing: int = 0  # tracks under the paths named whose file is gone, kept without --prune
    duplicates: int = 0  # newly indexed tracks flagged as near-duplicates of catalog tracks
    seconds: float = 0.0  # wall time of the run
    audio_hours: float = 0.0  # hours of audio analysed in this run

    def to_dict(self) -> dict:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "failed": self.failed,
            "changing": self.changing,
            "removed": self.removed,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "seconds": round(self.seconds, 3),
            "audio_hours": round(self.audio_hours, 4),
        }


# Each batch writes the whole index as a new generation: 2 GB at 12 M windows (100,000 tracks),
# rewritten every 32 tracks had made the writes grow with the square of the catalog. Once writing
# one takes SLOW_SAVE_S or more, the next batch lasts until that is at most SAVE_SHARE of it.
SLOW_SAVE_S = 1.0
SAVE_SHARE = 0.1


class Indexer:
    """Brings the catalog and the vector index up to date with folders of audio files."""

    def __init__(self, settings: Settings, *, catalog: Catalog | None = None):
        self.settings = settings
        self.catalog = catalog or Catalog(settings.db_url)
        self.batch_tracks = 32  # commit (index files + one DB transaction) at least this often
        self.batch_seconds = 20.0  # ... or after this long
        self._at = 0  # the catalog's index generation this run loaded or last wrote
        self._saving_s = 0.0  # how long writing the last generation's files took

    def run(
        self,
        paths: Iterable[Path],
        *,
        workers: int | None = None,
        engine: str = "local",
        address: str | None = None,
        prune: bool = False,
        rebuild: bool = False,
        progress: Callable[[int], None] | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> IndexSummary:
        """Index `paths`; returns counts. Safe to interrupt at any point and run again.
        `rebuild`: every file under `paths` analysed again (prints, waveforms and pause masks
        of this version for old tracks), into the index as it is, or a new one where the index
        folder is lost (`_open_index`).

        The files are analysed by `workers` processes of `engine` ("local", or "ray" at
        `address`; None: one per core, never more than there are files to analyse); results are
        committed here in batches, so the catalog and the vector index are written by one
        process whatever the engine, and by one run at a time (generations.writing).
        """
        with writing(self.settings.index_dir), _checkpointed(self.catalog):
            return self._run(
                paths,
                workers=workers,
                engine=engine,
                address=address,
                prune=prune,
                rebuild=rebuild,
                progress=progress,
                on_total=on_total,
            )

    def _run(
        self,
        paths: Iterable[Path],
        *,
        workers: int | None,
        engine: str,
        address: str | None,
        prune: bool,
        rebuild: bool,
        progress: Callable[[int], None] | None,
        on_total: Callable[[int], None] | None,
    ) -> IndexSummary:
        started = time.perf_counter()
        paths = [Path(p) for p in paths]
        deleted = self._deleted_folders(paths)
        if deleted and not prune:
            raise AudioError(
                f"{deleted[0]}: no such file or folder, and the catalog holds tracks under it: "
                "run with --prune to drop them, or put the folder back"
            )
        # each path checked first: a missing one, a link loop...
        files = discover([p for p in paths if p not in deleted])
        if not files and not deleted:
            log.warning("no audio files in %s", ", ".join(map(str, paths)))
        roots = [p.resolve() for p in paths]
        meta = self._expected_meta()
        index = self._open_index(meta, rebuild=rebuild)
        todo, unchanged, moved, touched = plan(self.catalog, files, again=rebuild)
        self._move(moved)
        self._retime(touched)
        # the first files are decoded while torch loads, on another core (where torch is loaded
        # already, as in a server or a notebook, there is nothing to overlap)
        overlap = engine == "local" and (os.cpu_count() or 1) > 1 and "torch" not in sys.modules
        with DecodeAhead(todo if overlap else [], self.settings.audio) as ahead:
            # generations a reader held off pruning last time (see generations.reading) go now
            prune_generations(self.settings.index_dir, keep=self.catalog.index_state().generation)
            if on_total:
                on_total(len(files))
            if progress and unchanged + len(moved):
                progress(unchanged + len(moved))
            counts = {"indexed": 0, "failed": 0, "changing": 0, "duplicates": 0, "audio_s": 0.0}
            gone = self._gone_under(roots, files)
            if gone and prune:
                self._prune(index, [track_id for track_id, _ in gone])
            elif gone:  # kept, found by queries at a path that is no more: said, not silent
                log.warning(
                    "%d tracks under the paths named have no file any more (%s%s): run with "
                    "--prune to drop them, or put the files back",
                    len(gone),
                    gone[0][1],
                    ", ..." if len(gone) > 1 else "",
                )
            if workers is None:
                workers = default_workers(len(todo))
            results = analyse_all(
                todo,
                self.settings,
                workers=workers,
                engine=engine,
                address=address,
                ahead=ahead,
            )
            # the workers fill the cores: this process's own work (the duplicate check's search
            # and print checks, the index adds) takes one thread, not one a core to compete with
            # them (with the workers' BLAS capped too, see Embedder: indexing ../shared/audio
            # took 18 % less time and 19 % less CPU, four interleaved pairs of runs)
            filled = engine == "local" and workers > 1
            with threadpool_limits(1) if filled else nullcontext():
                for first in results:
                    self._commit(index, first, results, meta.model_hash, counts, progress)
        self._tell_pending()
        return IndexSummary(
            indexed=counts["indexed"],
            unchanged=unchanged,
            moved=len(moved),
            failed=counts["failed"],
            changing=counts["changing"],
            removed=len(gone) if prune else 0,
            missing=0 if prune else len(gone),
            duplicates=counts["duplicates"],
            seconds=time.perf_counter() - started,
            audio_hours=counts["audio_s"] / 3600.0,
        )

    # -- planning -------------------------------------------------------------------------------

    def _expected_meta(self) -> IndexMeta:
        card = read_card(self.settings.model_path)  # without torch: a run with nothing to do
        threshold = calibrated_threshold(card.matching_hash, config=self.settings.duplicates)
        return IndexMeta.for_card(card, self.settings.embedding, match_threshold=threshold)

    def _open_index(self, meta: IndexMeta, *, rebuild: bool = False) -> VectorIndex:
        """The index at the catalog's generation, or a fresh one after a model change (the
        catalog's tracks marked to be embedded again).

        A threshold calibrated since the index was saved is taken into it at once, and an index
        of another kind than the config calls for is converted (a new generation, nothing
        embedded again): the threshold belongs to the scoring code. A `rebuild` analyses its
        tracks again into the index as it is where that loads, so that readers find the tracks
        it has not reached yet (a new index had taken every track out of the catalog's search
        until the rebuild ended), and makes a new one where it does not (an index folder lost).
        """
        state = self.catalog.index_state()
        self._at = state.generation
        if state.generation and not rebuild:
            self._require_files_of(state)
        if state.generation and state.model_hash == meta.model_hash:
            try:
                index = VectorIndex.load(
                    self.settings.index_dir,
                    state.generation,
                    expect=meta,
                    config=self.settings.index,
                    catalog_id=state.catalog_id,
                )
            except IndexMismatchError as exc:
                log.warning("%s; embedding every track again", exc)
            else:
                recalibrated = index.meta.match_threshold != meta.match_threshold
                if recalibrated:
                    index.recalibrate(meta.match_threshold)
                if index.convert_if_due() or recalibrated:  # e.g. float32 windows → 8-bit
                    with self._generation(index, meta.model_hash):
                        pass  # no catalog row changes: the index is saved as the next generation
                return index
        if state.generation:  # tracks to embed again: a model that cannot load changes nothing
            from mirsearch.checkpoints import load_checkpoint

            load_checkpoint(self.settings.model_path)
        index = VectorIndex.create(meta, self.settings.index)
        with self._generation(index, meta.model_hash) as session:
            stale = session.execute(
                update(Track).where(Track.status == "indexed").values(status="pending")
            ).rowcount
        if stale:
            log.info("a new index: %d tracks will be analysed again", stale)
        return index

    def _tell_pending(self) -> None:
        """Warn of tracks left out of the index: a new index (a model changed, an index lost or
        damaged) marks every track to be analysed again, and a run on some of the catalog's
        folders had left the others unsearchable without a word."""
        _, pending = self.catalog.list_tracks(status="pending", per_page=1)
        if pending:
            log.warning(
                "%d tracks of the catalog wait to be analysed again, outside the paths named "
                "(the index was made anew): run `mirsearch index` on their folders too, or "
                "`--prune` those that are gone",
                pending,
            )

    def _require_files_of(self, state: IndexState) -> None:
        """IndexMismatchError when the catalog's current generation's files are not in the index
        folder, none of them, or those there were written for another catalog: a home that is
        not this catalog's (a second MIRSEARCH_HOME on one PostgreSQL catalog had rebuilt the
        index into itself, the real home's left behind and every track elsewhere unsearchable;
        a home used before by a catalog at the same generation had done so too), or an index
        lost. A generation with some of its files is one a crash or a hand damaged: it is
        rebuilt, as before."""
        folder, generation = self.settings.index_dir, state.generation
        at = f"the catalog {self.catalog.shown_url} is at index generation {generation}"
        if none_of(folder, generation):
            raise IndexMismatchError(f"{at}, none of whose files is in {folder}: {LOST}")
        try:
            written_for = saved_record(folder, generation).get("catalog_id")
        except (OSError, ValueError):  # its meta file lost or damaged: rebuilt
            return
        if written_for and state.catalog_id and written_for != state.catalog_id:
            raise IndexMismatchError(
                f"{at}, and the files of that generation in {folder} were written for another "
                f"catalog database: {LOST}"
            )

    def _move(self, moved: dict[Path, int]) -> None:
        """Point the tracks of `moved` at their files' new paths: nothing else changes (the
        vector index holds them by track id), so nothing is embedded again."""
        if not moved:
            return
        with self.catalog.session() as session, session.begin():
            for path, track_id in moved.items():
                row = session.get(Track, track_id)
                log.info("%s moved to %s", row.path, path)
                row.path, row.mtime = str(path), path.stat().st_mtime
                row.updated_at = datetime.now(UTC)

    def _retime(self, touched: dict[int, float]) -> None:
        """Record the modification times of unchanged tracks' files touched since they were
        indexed (`plan`): each had been hashed whole again on every run."""
        if not touched:
            return
        with self.catalog.session() as session, session.begin():
            for track_id, mtime in touched.items():
                session.get(Track, track_id).mtime = mtime

    def _deleted_folders(self, paths: list[Path]) -> list[Path]:
        """The paths named that are not there at all (not even a link to nothing) while the
        catalog holds tracks under them: a folder deleted whole, whose tracks a prune removes.
        Any other missing path is an error, as without a prune (a typo prunes nothing)."""
        absent = [p for p in paths if not os.path.lexists(p)]
        if not absent or not self.catalog.exists():
            return []
        with self.catalog.session() as session:
            held = list(session.scalars(select(Track.path)))
        return [p for p in absent if any(_under_any(track, [p.resolve()]) for track in held)]

    def _gone_under(self, roots: list[Path], files: list[Path]) -> list[tuple[int, str]]:
        """The tracks (id, path) under `roots` whose file is deleted: not those the walk leaves
        out (a dot-file indexed by its name, a folder it could not list)."""
        present = {str(p) for p in files}
        with self.catalog.session() as session:
            held = session.execute(select(Track.id, Track.path)).all()
        return [
            (track_id, path)
            for track_id, path in held
            if path not in present and _under_any(path, roots) and _gone(path)
        ]

    def _prune(self, index: VectorIndex, gone: list[int]) -> None:
        """Drop the tracks `gone` from the catalog and the index, and from the evidence of the
        tracks flagged as their duplicates."""
        with self._generation(index, index.meta.model_hash) as session:
            index.remove(gone)
            session.execute(delete(Track).where(Track.id.in_(gone)))
            forget_duplicates_of(session, set(gone))

    # -- committing -------------------------------------------------------------------------------

    def _commit(
        self,
        index: VectorIndex,
        first: FileAnalysis,
        results: Iterator[FileAnalysis],
        model_hash: str,
        counts: dict,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Record `first` and the results after it, one at a time as they arrive, in one
        transaction that ends by writing a new index generation: after `batch_tracks` results or
        `batch_seconds`, and not before ten times the last generation's writing where that took
        seconds (SLOW_SAVE_S). Each is checked for duplicates on arrival, while the workers go
        on, and against the tracks recorded before it in this batch too."""
        started = time.perf_counter()
        # a batch lasts long enough for writing its generation to be a small share of the run
        least_s = self._saving_s / SAVE_SHARE if self._saving_s >= SLOW_SAVE_S else 0.0
        with self._generation(index, model_hash) as session:
            for n, result in enumerate(itertools.chain([first], results), 1):
                record(session, index, result, model_hash, counts, settings=self.settings)
                if progress:
                    progress(1)
                elapsed = time.perf_counter() - started
                if (n >= self.batch_tracks or elapsed > self.batch_seconds) and elapsed >= least_s:
                    break

    @contextmanager
    def _generation(self, index: VectorIndex, model_hash: str) -> Iterator[Session]:
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
                if state.generation != self._at:
                    raise IndexMismatchError(
                        f"another indexing run committed generation {state.generation} of this "
                        f"catalog while this one held generation {self._at}: this batch was not "
                        "committed; run `mirsearch index` again"
                    )
                generation = state.generation + 1
                saving = time.perf_counter()
                try:
                    index.save(self.settings.index_dir, generation, catalog_id=state.catalog_id)
                    self._saving_s = time.perf_counter() - saving
                except OSError as exc:  # a full disk: the catalog stays at the last generation
                    raise OSError(
                        f"{exc}; this batch was not committed, the catalog and index are as the "
                        "last one left them: make room and run `mirsearch index` again"
                    ) from exc
                state.generation, state.model_hash = generation, model_hash
                highest = session.scalar(select(func.max(Track.id))) or 0
                # records._new_track_id
                state.last_track_id = max(state.last_track_id or 0, highest)
        except IntegrityError as exc:
            # another machine's run made the same rows (on PostgreSQL, which lets two runs write
            # at once: the first generation's, or the tracks of one folder): it had been a
            # traceback (UniqueViolation)
            raise IndexMismatchError(
                "another indexing run wrote the same rows of this catalog meanwhile "
                f"({reason(exc)}): this batch was not committed; run `mirsearch index` again"
            ) from exc
        self._at = generation
        prune_generations(self.settings.index_dir, keep=generation)


@contextmanager
def _checkpointed(catalog: Catalog) -> Iterator[None]:
    """The catalog's file holding all that was committed when the run ends, however it ends."""
    try:
        yield
    finally:
        catalog.checkpoint()


def _gone(path: str) -> bool:
    """Whether no file is at `path` any more: nothing there (or no folder above it), or a folder
    in its place; a file that cannot be read now is not gone."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False


def _under_any(path: str, roots: list[Path]) -> bool:
    """Whether `path`, as the catalog stores it (resolved), is one of the resolved `roots` or
    under one: compared as text, not as a Path made of each row (every run asks it of the rows
    outside the files found, all of the catalog's for a run on one new folder: 24 ms at 2,583
    tracks against 0.25)."""
    return any(path == str(root) or path.startswith(os.path.join(root, "")) for root in roots)
