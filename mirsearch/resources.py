"""The model, catalog and vector index an Engine loads once and shares between threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from threadpoolctl import threadpool_limits

from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.errors import IndexMismatchError, ModelError, NotFoundError
from mirsearch.generations import missing_files, reading, saved_record
from mirsearch.index import VectorIndex
from mirsearch.index_meta import IndexMeta, read_meta, repair
from mirsearch.matcher import Matcher
from mirsearch.model_card import ModelCard, read_card
from mirsearch.scoring import calibrated_threshold

if TYPE_CHECKING:  # imported where used: catalog, `similar` and `dupes` never load torch
    from mirsearch.embeddings import Embedder
    from mirsearch.indexer import IndexSummary


class Resources:
    """Model, catalog and vector index, loaded once and shared safely between threads.

    `threads` caps the network's, numpy's and FAISS's threads (a worker of a pool runs one;
    see workers.py).
    """

    def __init__(
        self, settings: Settings | None = None, *, threads: int | None = None, create: bool = True
    ):
        if threads:  # numpy's BLAS and FAISS's OpenMP here; torch's in the Embedder
            threadpool_limits(threads)
        self.settings = settings or Settings.from_env()
        self.threads = threads
        self.catalog = Catalog(self.settings.db_url, create=create)
        self._lock = threading.RLock()
        self._embedder: Embedder | None = None
        self._reader: Matcher | Embedder | None = None
        self._index: VectorIndex | None = None
        self._generation = 0

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from mirsearch.embeddings import Embedder

                self._embedder = self._unchanged(
                    Embedder(
                        self.settings.model_path,
                        config=self.settings.embedding,
                        threads=self.threads,
                        silence_dbfs=self.settings.audio.silence_dbfs,
                    )
                )
            return self._embedder

    @property
    def reader(self) -> Matcher | Embedder:
        """What reads an upload for `match`: the model's matching branch run in numpy
        (matcher.Matcher: no torch to import) where it is a CNN, as the shipped one is; the
        network itself otherwise (a CRNN trained by `mirsearch train`)."""
        with self._lock:
            if self._reader is None:
                if not Matcher.runs(self.card):
                    return self.embedder
                self._reader = self._unchanged(
                    Matcher(self.settings.model_path, config=self.settings.embedding)
                )
            return self._reader

    def _unchanged(self, loaded: Matcher | Embedder) -> Matcher | Embedder:
        """`loaded`, if it read the model file whose card the index was checked against."""
        if loaded.card.sha256 != self.card.sha256:
            raise ModelError(
                f"{self.settings.model_path or 'the shipped model'} changed since this process "
                "read it: start again"
            )
        return loaded

    @cached_property
    def card(self) -> ModelCard:
        """What the model is, read without torch: all `similar` and `dupes` need of it."""
        return read_card(self.settings.model_path)

    def load(self) -> None:
        """The model, and the index once the catalog has one, loaded now rather than by the first
        request that needs them (each worker of `mirsearch serve` does this before it answers)."""
        _ = self.embedder, self.reader
        self.index()

    def stats(self) -> dict:
        """The catalog's summary (Catalog.stats) and its vector index's: the window index's kind
        and how many window vectors it holds, read off the current generation's meta file, or
        `index_problem` when that file cannot be read."""
        self.catalog.require()
        with reading(self.settings.index_dir):
            data = self.catalog.stats()
            generation = data["index_generation"]
            if generation:
                try:
                    saved = saved_record(self.settings.index_dir, generation)
                    data |= {"index_kind": saved["kind"], "index_windows": saved["ntotal_windows"]}
                except (OSError, ValueError, KeyError) as exc:
                    data["index_problem"] = (
                        f"generation {generation}'s meta file in {self.settings.index_dir} "
                        f"cannot be read ({exc}). {repair(self.settings.index_dir, generation)}"
                    )
                missing = missing_files(self.settings.index_dir, generation)
                if missing and "index_problem" not in data:  # what a query would refuse
                    data["index_problem"] = (
                        f"generation {generation} in {self.settings.index_dir} lacks "
                        f"{', '.join(missing)}. {repair(self.settings.index_dir, generation)}"
                    )
                if "index_problem" not in data:
                    data |= self._mismatch(generation)
        return data

    def _mismatch(self, generation: int) -> dict:
        """{"index_problem": why} when a query would refuse the generation's meta (built by
        another model, written for another catalog), else {}; the model read without torch."""
        try:
            expect = IndexMeta.for_card(self.card, self.settings.embedding)
            read_meta(
                self.settings.index_dir,
                generation,
                expect=expect,
                catalog_id=self.catalog.index_state().catalog_id,
            )
        except (IndexMismatchError, ModelError) as exc:
            return {"index_problem": str(exc)}
        return {}

    def index(self) -> VectorIndex | None:
        """The vector index at the catalog's current generation (reloaded when it moves on).

        A reload reads the generation's number again and loads it while holding off pruning
        (`reading`): `mirsearch index` may commit newer generations meanwhile, but cannot delete
        this one, complete since the catalog named it, before it is in memory.
        """
        if not self.catalog.exists() and not self.catalog.opened:  # nothing indexed yet, where
            return None  # reading may not make one (one moved away since is told by the session)
        state = self.catalog.index_state()
        with self._lock:
            if state.generation == 0:
                return None
            if self._index is not None and state.generation == self._generation:
                return self._index
            expect = IndexMeta.for_card(self.card, self.settings.embedding)
            with reading(self.settings.index_dir):
                state = self.catalog.index_state()
                self._index = VectorIndex.load(
                    self.settings.index_dir,
                    state.generation,
                    expect=expect,
                    config=self.settings.index,
                    mapped=self.settings.index.mapped,
                    catalog_id=state.catalog_id,
                )
                self._generation = state.generation
            return self._index

    @cached_property
    def match_threshold(self) -> float:
        """The near-duplicate threshold calibrated for this code's scoring and this model (the
        one an index records can be older: `mirsearch index` takes the new one into it); read
        once, not on every request."""
        return calibrated_threshold(self.card.matching_hash, config=self.settings.duplicates)

    def _require_index(self) -> VectorIndex:
        self.catalog.require()
        index = self.index()
        if index is None or index.n_tracks == 0:
            raise NotFoundError("the catalog is empty: run `mirsearch index PATH` first")
        return index

    def index_paths(self, paths: Iterable[Path] | Path | str, **options) -> IndexSummary:
        from mirsearch.indexer import Indexer

        if isinstance(paths, str | os.PathLike):  # one folder, not the letters of its name
            paths = [paths]

        self.catalog.make()
        summary = Indexer(self.settings, catalog=self.catalog).run(paths, **options)
        with self._lock:
            self._index = None
        return summary
