"""The kinds of FAISS index unit vectors are kept in: which one a size calls for, each made empty.

Every kind searches L2-normalised float32 vectors by inner product: "flat" (exact), "sq8"
(exact search over 8-bit scalar-quantised vectors, a quarter of flat's bytes), "hnsw", and
"ivfpq" (IVF-PQ whose candidates are re-ranked with 8-bit scalar-quantised copies, which also
serve `reconstruct`). Under "auto" a catalog's window vectors are "sq8" while exact search is
fast enough, then "ivfpq"; its track vectors (one a track) stay float32 while exact.
"""

from __future__ import annotations

import faiss
import numpy as np

from mirsearch.config import IndexConfig
from mirsearch.errors import IndexMismatchError, InvalidParameterError

KINDS = ("flat", "sq8", "hnsw", "ivfpq")
EXACT_KINDS = ("flat", "sq8")  # every vector compared with the query; removal in place
IVF_MIN_TRAIN = 10_000  # an "ivfpq" index stays flat until it holds this many vectors
IVF_TRAIN_PER_LIST = 64  # IVF training vectors per cell (FAISS wants 39 to 256)
PQ_TRAIN_MIN = 16_384  # at least this many, so each PQ sub-quantiser's 256 centroids train well


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as contiguous float32 (an all-zero row stays zero)."""
    vectors = np.array(vectors, dtype=np.float32, ndmin=2, copy=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12))


def window_kind(config: IndexConfig, n: int) -> str:
    """The kind an index of `n` window vectors should be under `config`."""
    if config.kind == "auto":
        return "sq8" if n <= config.exact_max_vectors or n < IVF_MIN_TRAIN else "ivfpq"
    if config.kind == "ivfpq":
        return "ivfpq" if n >= IVF_MIN_TRAIN else "flat"
    return config.kind


def tracks_kind(config: IndexConfig, n: int) -> str:
    """The kind of the track vectors' index (one vector a track: kept in float32 while exact)."""
    target = window_kind(config, n)
    return "flat" if target == "sq8" else target


def empty_index(
    dim: int,
    kind: str,
    config: IndexConfig,
    *,
    train: np.ndarray | None = None,
    n: int | None = None,
) -> faiss.Index:
    """An empty index of `kind` over `dim` dimensions; "ivfpq" needs `train`, a sample of
    vectors like those it will hold, and is given cells for `n` vectors (default: as many as
    the sample)."""
    if kind not in KINDS:
        raise InvalidParameterError(f"unknown index kind {kind!r}; use one of {KINDS}")
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "sq8":
        inner = _unit_range_sq8(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, config.hnsw_m, ip)
    else:
        if train is None or len(train) < 256:
            raise InvalidParameterError("an IVF-PQ index needs at least 256 training vectors")
        nlist = min(ivf_lists(config, n or len(train)), len(train) // 39)
        pq = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, _pq_m(dim, config.pq_m), 8, ip)
        inner = faiss.IndexRefine(
            pq, faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip)
        )
        inner.train(normalise(train))
    return inner


def kind_of(index: faiss.IndexIDMap) -> str:
    """The kind of the index an id map wraps; IndexMismatchError if it is none of ours."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexRefine):
        return "ivfpq"
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    if (
        isinstance(inner, faiss.IndexScalarQuantizer)
        and inner.sq.qtype == faiss.ScalarQuantizer.QT_8bit
    ):
        return "sq8"
    raise IndexMismatchError(f"unsupported FAISS index type {type(inner).__name__}")


def ivf_lists(config: IndexConfig, n: int) -> int:
    """IVF cells for an index of n vectors: 4 √n (FAISS's guide: 4 to 16 √n), at most
    `config.ivf_nlist`, and no more than n / 39 (FAISS wants 39 training vectors a cell)."""
    return max(1, min(config.ivf_nlist, int(4 * np.sqrt(n)), n // 39))


def training_rows(n: int, config: IndexConfig) -> np.ndarray:
    """Which of n vectors an IVF-PQ index of n trains on: a seeded sample of enough per cell."""
    size = min(n, max(IVF_TRAIN_PER_LIST * ivf_lists(config, n), PQ_TRAIN_MIN))
    return np.random.default_rng(0).choice(n, size, replace=False)


def _unit_range_sq8(dim: int) -> faiss.IndexScalarQuantizer:
    """An 8-bit scalar quantiser over [-1, 1] in every dimension: the whole range of a unit
    vector's components, so nothing is clipped and no training sample is needed (the step,
    2/255, moves a cosine by at most about 0.004)."""
    index = faiss.IndexScalarQuantizer(
        dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.train(np.stack([-np.ones(dim), np.ones(dim)]).astype(np.float32))
    return index


def _pq_m(dim: int, wanted: int) -> int:
    """The largest number of PQ sub-quantisers not above `wanted` that divides `dim`."""
    return max(m for m in range(1, min(wanted, dim) + 1) if dim % m == 0)
