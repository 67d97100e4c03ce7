"""The vector index of the catalog: window and track embeddings, saved and loaded by generation
(the files of a generation, and how readers and pruning share them: generations.py; what its
meta file says: index_meta.py).

Window ids are `(track_id << 20) | window_no` and a window starts at `window_no * hop_s`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mirsearch.config import IndexConfig
from mirsearch.errors import IndexMismatchError, InvalidParameterError
from mirsearch.generations import missing_files, path_of, write_atomically
from mirsearch.index_kinds import EXACT_KINDS, IVF_MIN_TRAIN, normalise, tracks_kind, window_kind
from mirsearch.index_meta import REBUILD, IndexMeta, described, read_meta, repair, write_meta
from mirsearch.neighbours import IdIndex

log = logging.getLogger(__name__)

WINDOW_BITS = 20  # a track holds at most 2**20 windows (12 days at a 1 s hop)


def window_ids(track_id: int, n_windows: int) -> np.ndarray:
    return (np.int64(track_id) << WINDOW_BITS) | np.arange(n_windows, dtype=np.int64)


def split_window_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(track_ids, window_nos) of window ids; -1 stays -1 in both."""
    ids = np.asarray(ids, dtype=np.int64)
    valid = ids >= 0
    return np.where(valid, ids >> WINDOW_BITS, -1), np.where(
        valid, ids & ((1 << WINDOW_BITS) - 1), -1
    )


class VectorIndex:
    """Every indexed track's window vectors and track vector, searchable with genre filters."""

    def __init__(self, meta: IndexMeta, config: IndexConfig, windows: IdIndex, tracks: IdIndex):
        self._meta, self.config = meta, config
        self._windows, self._tracks = windows, tracks
        ids, counts = np.unique(windows.live_ids() >> WINDOW_BITS, return_counts=True)
        self._n_windows: dict[int, int] = dict(zip(ids.tolist(), counts.tolist(), strict=True))

    @classmethod
    def create(cls, meta: IndexMeta, config: IndexConfig | None = None) -> VectorIndex:
        config = config or IndexConfig()
        windows = IdIndex.create(meta.dim, window_kind(config, 0), config)
        return cls(meta, config, windows, IdIndex.create(meta.dim, tracks_kind(config, 0), config))

    @property
    def meta(self) -> IndexMeta:
        return dataclasses.replace(self._meta, kind=self._windows.kind)

    def recalibrate(self, match_threshold: float | None) -> None:
        """Take a near-duplicate threshold calibrated after this index was built."""
        self._meta = dataclasses.replace(self._meta, match_threshold=match_threshold)

    @property
    def ntotal_windows(self) -> int:
        return self._windows.ntotal

    @property
    def n_tracks(self) -> int:
        return len(self._n_windows)

    def track_ids(self) -> np.ndarray:
        return np.array(sorted(self._n_windows), dtype=np.int64)

    def contains(self, track_id: int) -> bool:
        return int(track_id) in self._n_windows

    def n_windows(self, track_id: int) -> int:
        return self._n_windows.get(int(track_id), 0)

    def add(
        self, track_id: int, window_vectors: np.ndarray, track_vector: np.ndarray | None = None
    ):
        """Add a track: its window vectors (n, D) in time order, and its track vector (D,).

        The track vector defaults to the normalised mean of the windows.
        """
        track_id, windows = int(track_id), normalise(window_vectors)
        if self.contains(track_id):
            raise InvalidParameterError(
                f"track {track_id} is already in the index; remove it first"
            )
        if not 0 <= track_id < 1 << (63 - WINDOW_BITS):
            raise InvalidParameterError(f"track id {track_id} is out of range")
        if not 0 < len(windows) < 1 << WINDOW_BITS or windows.shape[1] != self._meta.dim:
            raise InvalidParameterError(
                f"track {track_id}: expected 1 to {(1 << WINDOW_BITS) - 1} windows of "
                f"{self._meta.dim} dimensions, got an array of shape {windows.shape}"
            )
        vector = normalise(windows.mean(axis=0) if track_vector is None else track_vector)
        if vector.shape != (1, self._meta.dim):
            raise InvalidParameterError(
                f"track {track_id}: the track vector has shape {vector.shape}"
            )
        self._windows.add(window_ids(track_id, len(windows)), windows)
        self._tracks.add(np.array([track_id]), vector)
        self._n_windows[track_id] = len(windows)
        self.convert_if_due()

    def remove(self, track_ids: Iterable[int]) -> None:
        """Remove tracks (ids not in the index are ignored)."""
        present = [t for t in map(int, track_ids) if t in self._n_windows]
        if not present:
            return
        self._windows.remove(self._window_ids_of(present))
        self._tracks.remove(np.array(present, dtype=np.int64))
        for track_id in present:
            del self._n_windows[track_id]

    def search_windows(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed_tracks: Iterable[int] | None = None,
        excluded_tracks: Iterable[int] = (),
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k nearest catalog windows of each query window (m, D).

        Returns scores (m, k) float32 (cosine, -inf padding), track_ids and window_nos (m, k)
        int64 (-1 padding). `allowed_tracks` restricts the search to those tracks and
        `excluded_tracks` leaves those out, inside FAISS: a track's own windows, searched with
        it left out, had crowded the others out of its k nearest.
        """
        excluded = sorted(set(map(int, excluded_tracks)))
        if allowed_tracks is not None:
            kept = self._present(set(map(int, allowed_tracks)) - set(excluded))
            n_allowed = sum(self._n_windows[t] for t in kept)
            wide_k = self._post_filter_k(k, n_allowed)
            if wide_k:
                return self._post_filtered(queries, k, wide_k, kept, n_allowed)
            allowed, ranges = self._window_ids_of(kept), ()
        else:
            allowed = None
            ranges = [(t << WINDOW_BITS, (t + 1) << WINDOW_BITS) for t in excluded]
        scores, ids = self._windows.search(queries, k, allowed=allowed, excluded=ranges)
        return (scores, *split_window_ids(ids))

    def _post_filter_k(self, k: int, n_allowed: int) -> int | None:
        """How many hits an unfiltered search must fetch for `k` of `n_allowed` windows to be
        among them (twice as many as their share says), where the filter is applied to its hits
        (IndexConfig.post_filter_max_k); None where FAISS is handed the allowed ids."""
        config = self.config
        if n_allowed <= config.exact_filter_max_vectors:
            return None
        wide_k = int(np.ceil(2 * k * self._windows.ntotal / n_allowed))
        return wide_k if wide_k <= config.post_filter_max_k else None

    def _post_filtered(
        self, queries: np.ndarray, k: int, wide_k: int, kept: list[int], n_allowed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """search_windows of the `n_allowed` windows of the tracks `kept` (ids in the index): the
        first k of each query's `wide_k` nearest that are theirs, in rank order. A query that
        finds fewer there (its neighbourhood all other tracks) is searched again with the filter
        in FAISS, so each still gets k hits whenever the tracks hold k windows."""
        scores, ids = self._windows.search(queries, wide_k)
        theirs = np.isin(np.where(ids >= 0, ids >> WINDOW_BITS, -1), np.asarray(kept))
        rank = np.cumsum(theirs, axis=1) - 1
        rows, cols = np.nonzero(theirs & (rank < k))
        top_scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
        top_ids = np.full((len(ids), k), -1, dtype=np.int64)
        top_scores[rows, rank[rows, cols]] = scores[rows, cols]
        top_ids[rows, rank[rows, cols]] = ids[rows, cols]
        short = np.count_nonzero(top_ids >= 0, axis=1) < min(k, n_allowed)
        if short.any():
            allowed = self._window_ids_of(kept)
            top_scores[short], top_ids[short] = self._windows.search(
                queries[short], k, allowed=allowed
            )
        return (top_scores, *split_window_ids(top_ids))

    def search_tracks(
        self, query: np.ndarray, k: int, *, allowed_tracks: Iterable[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest track vectors of a query vector (D,): scores and track ids, (k,) each."""
        allowed = None if allowed_tracks is None else np.array(self._present(allowed_tracks))
        scores, ids = self._tracks.search(query, k, allowed=allowed)
        return scores[0], ids[0]

    def track_windows(self, track_id: int) -> np.ndarray:
        """A track's window vectors (n, D) float32 in time order; (0, D) if it is not indexed."""
        return self._windows.reconstruct(window_ids(track_id, self.n_windows(track_id)))

    def track_vector(self, track_id: int) -> np.ndarray:
        if not self.contains(track_id):
            raise InvalidParameterError(f"track {track_id} is not in the index")
        return self._tracks.reconstruct(np.array([track_id]))[0]

    def rebuild(self, kind: str) -> None:
        """Convert both indexes to `kind`: "flat", "hnsw" or "ivfpq".

        The tracks index stays exact while it holds fewer than IVF_MIN_TRAIN tracks.
        """
        log.info("rebuilding the index as %s (%d windows)", kind, self.ntotal_windows)
        self._windows = self._windows.rebuilt(kind)
        self._tracks = self._tracks.rebuilt(kind if self.n_tracks >= IVF_MIN_TRAIN else "flat")

    def save(self, directory: Path, generation: int, *, catalog_id: str | None = None) -> None:
        """Write generation `generation` atomically, for the catalog `catalog_id` (see `load`);
        the caller then prunes older ones."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(path_of(directory, "windows", generation), self._windows.write)
        write_atomically(path_of(directory, "tracks", generation), self._tracks.write)
        write_meta(
            directory,
            generation,
            self.meta,
            n_tracks=self.n_tracks,
            ntotal_windows=self.ntotal_windows,
            catalog_id=catalog_id,
        )

    @classmethod
    def load(
        cls,
        directory: Path,
        generation: int,
        *,
        expect: IndexMeta,
        config: IndexConfig | None = None,
        mapped: bool = False,
        catalog_id: str | None = None,
    ) -> VectorIndex:
        """Generation `generation` of `directory`; IndexMismatchError unless it matches `expect`
        and was written for the catalog `catalog_id` (a generation saved before catalogs had
        ids says none, and loads). `mapped`: read-only, its vectors mapped from the files
        (IdIndex.read), for a reader."""
        config = config or IndexConfig()
        directory = Path(directory)
        missing = missing_files(directory, generation)
        if missing:
            raise IndexMismatchError(
                f"the vector index generation {generation} is incomplete in {directory} "
                f"(missing {', '.join(missing)}). {repair(directory, generation)}"
            )
        where = described(directory, generation)
        try:
            meta = read_meta(directory, generation, expect=expect, catalog_id=catalog_id)
            windows, tracks = (
                IdIndex.read(path_of(directory, name, generation), config, mapped=mapped)
                for name in ("windows", "tracks")
            )
        except (ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: FAISS can't read it
            raise IndexMismatchError(f"{where} cannot be read ({exc}). {REBUILD}") from exc
        index = cls(meta, config, windows, tracks)
        same_tracks = np.array_equal(np.sort(tracks.live_ids()), index.track_ids())
        if windows.dim != meta.dim or not same_tracks:  # a damaged id too, not only a count
            raise IndexMismatchError(f"{where}: its windows and tracks files disagree. {REBUILD}")
        return index

    def _present(self, track_ids: Iterable[int]) -> list[int]:
        return sorted({int(t) for t in track_ids} & self._n_windows.keys())

    def _window_ids_of(self, track_ids: list[int]) -> np.ndarray:
        if not track_ids:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([window_ids(t, self._n_windows[t]) for t in track_ids])

    def convert_if_due(self) -> bool:
        """Convert an index that is not the kind the config now calls for, and retrain an IVF
        index that has outgrown its cells; True if it did either.

        Under "auto" only an exact index is converted (it outgrew exact search, or an older
        version saved float32 windows that are now "sq8"): one that shrinks below the limit
        again keeps its approximate index rather than flip between kinds. A kind the user
        names (MIRSEARCH_INDEX_KIND) is always honoured.
        """
        changed, named = False, self.config.kind != "auto"
        for name, n, target_of in (
            ("_windows", self.ntotal_windows, window_kind),
            ("_tracks", self.n_tracks, tracks_kind),
        ):
            current: IdIndex = getattr(self, name)
            target = target_of(self.config, n)
            if target != current.kind and (named or current.kind in EXACT_KINDS):
                log.info("%s index of %d vectors: converting it to %s", name[1:], n, target)
                setattr(self, name, current.rebuilt(target))
                changed = True
            elif current.outgrown:
                log.info("%s index of %d vectors: retraining its IVF cells", name[1:], n)
                setattr(self, name, current.rebuilt(current.kind))
                changed = True
        return changed
