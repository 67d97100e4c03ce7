"""Tests for the index kinds: approximate recall against exact, 8-bit codes, the kind a size calls
for, and each kind made empty and recognised."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from mirsearch.config import IndexConfig
from mirsearch.errors import IndexMismatchError, InvalidParameterError
from mirsearch.index_kinds import (
    IVF_MIN_TRAIN,
    KINDS,
    PQ_TRAIN_MIN,
    empty_index,
    kind_of,
    normalise,
    tracks_kind,
    training_rows,
    window_kind,
)
from mirsearch.neighbours import IdIndex


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_recall_against_exact(clustered_vectors, kind):
    data, queries = clustered_vectors
    ids = np.arange(len(data), dtype=np.int64) * 7 + 3  # ids unrelated to positions
    config = IndexConfig(ivf_nlist=128, ivf_nprobe=16, pq_m=8)
    _, truth = IdIndex.build("flat", ids, data, config).search(queries, 10)
    approximate = IdIndex.build(kind, ids, data, config)
    scores, found = approximate.search(queries, 10)
    assert approximate.kind == kind and approximate.ntotal == len(data)
    assert recall_at(found, truth) >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_sq8_is_exact_search_within_a_cosine_step(clustered_vectors):
    """8-bit codes over [-1, 1]: scores within 0.01 of float32, so only near-ties (clustered
    data has many) change places: every hit found is as close as the 10th true one, nearly."""
    data, queries = clustered_vectors
    ids = np.arange(len(data), dtype=np.int64)
    exact_scores, truth = IdIndex.build("flat", ids, data, IndexConfig()).search(queries, 10)
    sq8 = IdIndex.build("sq8", ids, data, IndexConfig())
    scores, found = sq8.search(queries, 10)
    assert sq8.kind == "sq8" and recall_at(found, truth) >= 0.9
    assert np.abs(scores - exact_scores).max() < 0.01
    true_cosines = np.einsum("qd,qkd->qk", queries, data[found])
    assert (true_cosines >= exact_scores[:, -1:] - 0.01).all()
    assert np.abs(sq8.reconstruct(ids[:50]) - data[:50]).max() <= 1 / 255 + 1e-6


def test_the_kind_follows_the_size_and_the_config():
    """ "auto": windows in 8 bits while exact search is fast enough (and IVF has too few to train
    on), then IVF-PQ; track vectors in float32 while exact. A named kind is kept, but "ivfpq"
    stays flat until it can be trained."""
    auto = IndexConfig(kind="auto", exact_max_vectors=250_000)
    assert [window_kind(auto, n) for n in (0, 250_000, 250_001)] == ["sq8", "sq8", "ivfpq"]
    assert [tracks_kind(auto, n) for n in (0, 250_001)] == ["flat", "ivfpq"]
    small = IndexConfig(kind="auto", exact_max_vectors=1000)
    assert [window_kind(small, n) for n in (IVF_MIN_TRAIN - 1, IVF_MIN_TRAIN)] == ["sq8", "ivfpq"]
    ivfpq = IndexConfig(kind="ivfpq")
    assert [window_kind(ivfpq, n) for n in (IVF_MIN_TRAIN - 1, IVF_MIN_TRAIN)] == ["flat", "ivfpq"]
    hnsw = IndexConfig(kind="hnsw")
    assert window_kind(hnsw, 0) == tracks_kind(hnsw, 10**6) == "hnsw"
    assert tracks_kind(IndexConfig(kind="sq8"), 5) == "flat"


def test_each_kind_is_made_empty_and_recognised():
    config = IndexConfig(ivf_nlist=16, pq_m=8)
    train = np.random.default_rng(2).standard_normal((1000, 32))
    for kind in KINDS:
        index = empty_index(32, kind, config, train=train)
        assert index.ntotal == 0 and index.is_trained
        assert kind_of(faiss.IndexIDMap(index)) == kind
    with pytest.raises(InvalidParameterError, match="unknown index kind"):
        empty_index(32, "lsh", config)
    with pytest.raises(InvalidParameterError, match="at least 256 training vectors"):
        empty_index(32, "ivfpq", config, train=train[:255])
    with pytest.raises(IndexMismatchError, match="unsupported FAISS index type IndexLSH"):
        kind_of(faiss.IndexIDMap(faiss.IndexLSH(32, 64)))


def test_an_all_zero_vector_stays_zero_and_the_others_become_unit():
    vectors = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0]])


def test_ivf_pq_fits_its_cells_and_sub_quantisers_to_what_it_has():
    """No more IVF cells than the training sample fills with 39 vectors each, whatever size it
    is made for; as many PQ sub-quantisers as asked or the most below that divide the
    dimensions; a training sample of enough vectors for every PQ centroid."""
    train = np.random.default_rng(3).standard_normal((390, 100))
    index = empty_index(100, "ivfpq", IndexConfig(ivf_nlist=4096, pq_m=16), train=train, n=10**7)
    refine = faiss.downcast_index(index)
    assert faiss.extract_index_ivf(refine.base_index).nlist == 10  # 390 // 39
    assert faiss.downcast_index(refine.base_index).pq.M == 10  # of 100 dimensions, not 16
    config = IndexConfig(ivf_nlist=64)
    assert len(training_rows(10**6, config)) == PQ_TRAIN_MIN > 64 * 64
    assert len(set(training_rows(10**6, config))) == PQ_TRAIN_MIN  # rows without repeats


def test_an_index_quantised_to_other_than_8_bits_is_none_of_ours():
    four_bits = faiss.IndexScalarQuantizer(32, faiss.ScalarQuantizer.QT_4bit)
    with pytest.raises(IndexMismatchError, match="unsupported FAISS index type"):
        kind_of(faiss.IndexIDMap(four_bits))
