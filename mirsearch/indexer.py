"""Walk folders, analyse new or changed audio, commit it to the catalog and the vector index."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, update
from threadpoolctl import threadpool_limits

from mirsearch.analysis import analyse_all
from mirsearch.catalog import Catalog
from mirsearch.commits import Commits
from mirsearch.config import Settings
from mirsearch.errors import AudioError, IndexMismatchError
from mirsearch.files import discover
from mirsearch.flags import forget_duplicates_of
from mirsearch.generations import none_of, prune_generations, saved_record, writing
from mirsearch.index import VectorIndex
from mirsearch.index_meta import LOST, IndexMeta
from mirsearch.model_card import read_card
from mirsearch.plan import deleted_folders, gone_under, plan, record_moves, record_times
from mirsearch.prefetch import DecodeAhead
from mirsearch.records import RunCounts
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


class Indexer:
    """Brings the catalog and the vector index up to date with folders of audio files."""

    def __init__(self, settings: Settings, *, catalog: Catalog | None = None):
        self.settings = settings
        self.catalog = catalog or Catalog(settings.db_url)
        self.batch_tracks = 32  # commit (index files + one DB transaction) at least this often
        self.batch_seconds = 20.0  # ... or after this long
        self.commits = Commits(self.catalog, settings, at=0)

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
        deleted = deleted_folders(self.catalog, paths)
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
        planned = plan(self.catalog, files, again=rebuild)
        record_moves(self.catalog, planned.moved)
        record_times(self.catalog, planned.touched_mtimes)
        # the first files are decoded while torch loads, on another core (where torch is loaded
        # already, as in a server or a notebook, there is nothing to overlap)
        overlap = engine == "local" and (os.cpu_count() or 1) > 1 and "torch" not in sys.modules
        with DecodeAhead(planned.todo if overlap else [], self.settings.audio) as ahead:
            # generations a reader held off pruning last time (see generations.reading) go now
            prune_generations(self.settings.index_dir, keep=self.catalog.index_state().generation)
            if on_total:
                on_total(len(files))
            if progress and planned.unchanged + len(planned.moved):
                progress(planned.unchanged + len(planned.moved))
            counts = RunCounts()
            gone = gone_under(self.catalog, roots, files)
            if gone and prune:
                self._prune(index, list(gone))
            elif gone:  # kept, found by queries at a path that is no more: said, not silent
                log.warning(
                    "%d tracks under the paths named have no file any more (%s%s): run with "
                    "--prune to drop them, or put the files back",
                    len(gone),
                    next(iter(gone.values())),
                    ", ..." if len(gone) > 1 else "",
                )
            if workers is None:
                workers = default_workers(len(planned.todo))
            results = analyse_all(
                planned.todo,
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
                    self.commits.batch(
                        index,
                        first,
                        results,
                        meta.model_hash,
                        counts,
                        progress,
                        tracks=self.batch_tracks,
                        seconds=self.batch_seconds,
                    )
        self._tell_pending()
        return IndexSummary(
            indexed=counts.indexed,
            unchanged=planned.unchanged,
            moved=len(planned.moved),
            failed=counts.failed,
            changing=counts.changing,
            removed=len(gone) if prune else 0,
            missing=0 if prune else len(gone),
            duplicates=counts.duplicates,
            seconds=time.perf_counter() - started,
            audio_hours=counts.audio_s / 3600.0,
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
        self.commits.at = state.generation
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
                    with self.commits.generation(index, meta.model_hash):
                        pass  # no catalog row changes: the index is saved as the next generation
                return index
        if state.generation:  # tracks to embed again: a model that cannot load changes nothing
            from mirsearch.checkpoints import load_checkpoint

            load_checkpoint(self.settings.model_path)
        index = VectorIndex.create(meta, self.settings.index)
        with self.commits.generation(index, meta.model_hash) as session:
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
        pending = self.catalog.counts().get("pending", 0)
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

    def _prune(self, index: VectorIndex, gone: list[int]) -> None:
        """Drop the tracks `gone` from the catalog and the index, and from the evidence of the
        tracks flagged as their duplicates."""
        with self.commits.generation(index, index.meta.model_hash) as session:
            index.remove(gone)
            session.execute(delete(Track).where(Track.id.in_(gone)))
            forget_duplicates_of(session, set(gone))


@contextmanager
def _checkpointed(catalog: Catalog) -> Iterator[None]:
    """The catalog's file holding all that was committed when the run ends, however it ends."""
    try:
        yield
    finally:
        catalog.checkpoint()
