"""Nearest-neighbour search over id-mapped unit vectors with FAISS: the building block of index.py.

An `IdIndex` is a FAISS `IndexIDMap` over an inner-product index of L2-normalised float32
vectors, of one of the kinds in index_kinds.py. Flat and sq8 indexes remove vectors in place;
HNSW and IVF-PQ cannot, so removal sets the id to -1 (a tombstone every search excludes with a
selector) and the index is compacted once a quarter of it is tombstones. A filter is applied
inside FAISS with an ID selector; an approximate index searches small allowed sets exactly, and
redoes exactly the rows where the selector starved its search, so a filtered search returns k
hits whenever the allowed set holds k. An index read `mapped` leaves its vectors in the file
(read-only), so processes serving one catalog share them through the page cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from mirsearch.config import IndexConfig
from mirsearch.errors import IndexMismatchError, InvalidParameterError
from mirsearch.index_kinds import (
    EXACT_KINDS,
    empty_index,
    ivf_lists,
    kind_of,
    normalise,
    training_rows,
)

log = logging.getLogger(__name__)

MAX_EF_SEARCH = 4096  # the widest HNSW search a selective filter may ask for
REBUILD_CHUNK = 1 << 20  # vectors copied at a time into a rebuilt index
COMPACT_FRACTION = 0.25  # rebuild an approximate index once this share of it is tombstones
ALL_IDS = faiss.IDSelectorRange(0, np.iinfo(np.int64).max)  # every id but the -1 tombstones


class IdIndex:
    """One FAISS IndexIDMap of unit vectors under int64 ids, searched by inner product.

    Not an IndexIDMap2: its hash map from id to position (~30 bytes a vector, rebuilt on every
    load: most of what a mapped index costs a process to open) is replaced by a sorted copy of
    the ids, made at the first `reconstruct` after a change (12 bytes a vector, none while the
    ids are in order). Indexes saved as IndexIDMap2 by earlier versions still read.
    """

    def __init__(self, index: faiss.IndexIDMap, config: IndexConfig, *, mapped: bool = False):
        self.faiss_index = index
        self.config = config
        self.mapped = mapped
        self.kind = kind_of(index)
        self.n_removed = int(np.count_nonzero(self._id_view() < 0))
        self._lookup: tuple[np.ndarray | None, np.ndarray] | None = None  # see _positions

    @classmethod
    def create(
        cls,
        dim: int,
        kind: str,
        config: IndexConfig,
        *,
        train: np.ndarray | None = None,
        n: int | None = None,
    ):
        """An empty index of `kind` (empty_index: "ivfpq" needs a `train` sample)."""
        return cls(faiss.IndexIDMap(empty_index(dim, kind, config, train=train, n=n)), config)

    @classmethod
    def build(cls, kind: str, ids: np.ndarray, vectors: np.ndarray, config: IndexConfig) -> IdIndex:
        """An index of `kind` holding `vectors` (n, D) under `ids` (n,)."""
        vectors = normalise(vectors)
        sample = vectors[training_rows(len(vectors), config)] if kind == "ivfpq" else None
        index = cls.create(vectors.shape[1], kind, config, train=sample, n=len(vectors))
        index.add(ids, vectors)
        return index

    @property
    def dim(self) -> int:
        return self.faiss_index.d

    @property
    def nlist(self) -> int:
        """IVF cells (0: not an IVF index)."""
        if self.kind != "ivfpq":
            return 0
        return faiss.extract_index_ivf(
            faiss.downcast_index(self.faiss_index.index).base_index
        ).nlist

    @property
    def outgrown(self) -> bool:
        """An IVF index holding so many more vectors than it was trained for that it should have
        twice the cells (cells grow as √n: it has quadrupled); it is then rebuilt."""
        return self.kind == "ivfpq" and ivf_lists(self.config, self.ntotal) >= 2 * self.nlist

    @property
    def ntotal(self) -> int:
        """Vectors searchable (tombstones not counted)."""
        return self.faiss_index.ntotal - self.n_removed

    def live_ids(self) -> np.ndarray:
        ids = self._id_view()
        return ids[ids >= 0].copy()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._check_writable()
        vectors = normalise(vectors)
        if vectors.shape[1] != self.dim:
            raise InvalidParameterError(
                f"vectors have {vectors.shape[1]} dimensions, the index {self.dim}"
            )
        self._lookup = None
        self.faiss_index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        """Remove `ids` (a contiguous block is removed with an IDSelectorRange)."""
        self._check_writable()
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if ids.size == 0:
            return
        self._lookup = None
        if self.kind in EXACT_KINDS:
            contiguous = ids[-1] - ids[0] + 1 == ids.size
            selector = (
                faiss.IDSelectorRange(int(ids[0]), int(ids[-1]) + 1)
                if contiguous
                else faiss.IDSelectorBatch(ids)
            )
            self.faiss_index.remove_ids(selector)
            return
        view = self._id_view()
        hit = np.isin(view, ids)
        view[hit] = -1
        self.n_removed += int(np.count_nonzero(hit))
        if self.n_removed > COMPACT_FRACTION * self.faiss_index.ntotal:
            self._compact()

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (n, D) float32 (8-bit precision for "sq8" and "ivfpq")."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.faiss_index.index.reconstruct_batch(self._positions(ids))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        excluded: Sequence[tuple[int, int]] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores (m, k) float32 and ids (m, k) int64 of each query's k best; -inf / -1 pad.

        `allowed` (ids present in the index) restricts the search to those ids; `excluded`
        ([low, high) ranges of ids) leaves those out, inside the search: the k best of the rest.
        """
        queries = normalise(queries)
        m = len(queries)
        if k < 1 or self.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            return _padded(m, max(k, 0))
        if allowed is not None:
            allowed = np.unique(np.asarray(allowed, dtype=np.int64))
            exact = self.kind in EXACT_KINDS
            if not exact and allowed.size <= self.config.exact_filter_max_vectors:
                return self._search_exactly(queries, k, allowed)
        scores, ids = self._search_faiss(queries, k, allowed, excluded)
        if allowed is not None and self.kind not in EXACT_KINDS:
            short = np.count_nonzero(ids >= 0, axis=1) < min(k, allowed.size)
            if short.any():
                log.debug("filtered %s search starved on %d queries: exact", self.kind, short.sum())
                scores[short], ids[short] = self._search_exactly(queries[short], k, allowed)
        scores[ids < 0] = -np.inf
        return scores, ids

    def write(self, path: Path) -> None:
        """Write the index to the file at `path`; OSError if any of it cannot be written.

        Written by Python, FAISS handing it the bytes a chunk at a time (no second copy of
        the index in memory, as faiss.serialize_index would make): FAISS's own file writer
        only printed "close error" when the last bytes it buffered did not fit (a full disk)
        and returned as if the file were whole, which was then committed as the index.
        """
        with open(path, "wb", buffering=0) as file:
            sink = _Sink(file)
            faiss.write_index(self.faiss_index, faiss.PyCallbackIOWriter(sink.write))
            sink.finish()

    @classmethod
    def read(cls, path: Path, config: IndexConfig, *, mapped: bool = False) -> IdIndex:
        """The index in the file at `path`; IndexMismatchError unless it is one of ours (an
        IndexIDMap, or the IndexIDMap2 earlier versions saved).

        `mapped`: the stored vectors (8-bit codes, or float32 for "flat"; an IVF-PQ index's
        re-ranking codes, most of its bytes) are mapped from the file rather than read into this
        process (FAISS's IO_FLAG_MMAP_IFC), so every process reading one file shares one copy and
        a reader starts without copying them; such an index is read-only. The files a catalog
        saves are never rewritten (index.py), and a mapped file that is pruned stays readable.
        Where the file cannot be mapped (a file system without mmap), it is read whole.
        """
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0)
        except RuntimeError as exc:
            if not mapped:
                raise
            log.warning("%s cannot be mapped (%s): reading it whole", path, str(exc)[-200:])
            index, mapped = faiss.read_index(str(path)), False
        if not isinstance(index, faiss.IndexIDMap):
            raise IndexMismatchError(f"{path} holds a {type(index).__name__}, not an IndexIDMap")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexMismatchError(f"{path} does not use the inner-product metric")
        return cls(index, config, mapped=mapped)

    def rebuilt(self, kind: str) -> IdIndex:
        """A copy of this index's live vectors as an index of `kind`, copied a chunk at a time
        (12 M vectors whole would be 6 GB of float32)."""
        ids = self.live_ids()
        sample = None
        if kind == "ivfpq":
            sample = self.reconstruct(ids[np.sort(training_rows(len(ids), self.config))])
        index = IdIndex.create(self.dim, kind, self.config, train=sample, n=len(ids))
        for start in range(0, len(ids), REBUILD_CHUNK):
            chunk = ids[start : start + REBUILD_CHUNK]
            index.add(chunk, self.reconstruct(chunk))
        return index

    def _search_faiss(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        excluded: Sequence[tuple[int, int]] = (),
    ):
        selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
        if selector is None and (self.n_removed or excluded):
            selector = ALL_IDS
        kept = [selector]  # FAISS holds the selectors it combines by reference: kept alive here
        for low, high in excluded:
            kept += [faiss.IDSelectorRange(low, high)]
            kept += [faiss.IDSelectorNot(kept[-1])]
            kept += [faiss.IDSelectorAnd(selector, kept[-1])]
            selector = kept[-1]
        # a selective filter leaves fewer hits per visited vector: widen the search to match
        widen = 1.0 if allowed is None else self.faiss_index.ntotal / max(len(allowed), 1)
        config = self.config
        if self.kind in EXACT_KINDS:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        elif self.kind == "hnsw":
            ef_search = min(MAX_EF_SEARCH, max(config.hnsw_ef_search, int(2 * k * widen)))
            params = faiss.SearchParametersHNSW(efSearch=ef_search)
            if selector is not None:
                params.sel = selector
        else:  # IndexRefine ignores a top-level selector: hand the IVF one translated to positions
            ivf = faiss.SearchParametersIVF(nprobe=int(min(self.nlist, config.ivf_nprobe * widen)))
            if selector is not None:
                translated = faiss.IDSelectorTranslated(self.faiss_index.id_map, selector)
                ivf.sel = translated
            params = faiss.IndexRefineSearchParameters(
                k_factor=config.ivf_refine_k_factor, base_index_params=ivf
            )
        return self.faiss_index.search(queries, k, params=params)

    def _search_exactly(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        """Brute force over the allowed vectors only; ties go to the lower id."""
        similarity = queries @ self.reconstruct(allowed).T
        n = min(k, len(allowed))
        top = np.argpartition(-similarity, n - 1, axis=1)[:, :n]
        top_scores = np.take_along_axis(similarity, top, axis=1)
        order = np.lexsort((allowed[top], -top_scores), axis=1)
        scores, ids = _padded(len(queries), k)
        scores[:, :n] = np.take_along_axis(top_scores, order, axis=1)
        ids[:, :n] = np.take_along_axis(allowed[top], order, axis=1)
        return scores, ids

    def _compact(self) -> None:
        ids = self.live_ids()
        fresh = faiss.clone_index(self.faiss_index)  # keeps the IVF-PQ training
        fresh.reset()
        for start in range(0, len(ids), REBUILD_CHUNK):
            chunk = ids[start : start + REBUILD_CHUNK]
            fresh.add_with_ids(self.reconstruct(chunk), chunk)
        log.info("compacted the %s index: %d tombstones dropped", self.kind, self.n_removed)
        self.faiss_index, self.n_removed, self._lookup = fresh, 0, None

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Where each of `ids` is stored in the wrapped index; KeyError for an id not in it.

        Looked up in the id map sorted (`_lookup`: the order that sorts it, None when it is
        sorted already, and the sorted ids), made once per change and set in one assignment,
        so threads searching one index never see half of it.
        """
        if self._lookup is None:
            view = self._id_view()
            if view.size < 2 or np.all(view[1:] > view[:-1]):  # ascending, no tombstones
                self._lookup = (None, view)
            else:
                order = np.argsort(view, kind="stable")
                self._lookup = (order.astype(np.min_scalar_type(view.size)), view[order])
        order, ordered = self._lookup
        at = np.minimum(np.searchsorted(ordered, ids), ordered.size - 1)
        missing = ordered[at] != ids if ordered.size else np.ones(ids.size, bool)
        if missing.any():
            raise KeyError(f"ids not in the index: {ids[missing][:5].tolist()}")
        return at if order is None else order[at].astype(np.int64)

    def _check_writable(self) -> None:
        if self.mapped:  # FAISS would abort the process, not raise
            raise ValueError(
                "this index is mapped read-only from its file: read it unmapped to change it"
            )

    def _id_view(self) -> np.ndarray:
        """The id map itself (writable; -1 marks a tombstone); valid until the next add."""
        id_map = self.faiss_index.id_map
        return (
            faiss.rev_swig_ptr(id_map.data(), id_map.size())
            if id_map.size()
            else np.zeros(0, np.int64)
        )


class _Sink:
    """Writes to an unbuffered file that, once one fails, only count the bytes the rest would
    have written, so that the failure, raised by `finish`, can say how large the whole file is."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.size = 0  # bytes handed to `write`
        self.error: OSError | None = None  # the first write that failed

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.error is not None:
            return
        view = memoryview(data)
        try:
            while view:  # a write may take part of it (the last bytes that fit)
                view = view[self.file.write(view) :]
        except OSError as exc:
            self.error = exc

    def finish(self) -> None:
        """Raise the first write's failure as OSError(errno, its words and the size the file
        needs, the file's name)."""
        exc = self.error
        if exc is not None:
            needed = f"{exc.strerror or exc} (the file needs {self.size:,} bytes)"
            raise OSError(exc.errno, needed, self.file.name) from exc


def _padded(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((m, k), -np.inf, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)
