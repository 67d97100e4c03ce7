"""Tests for the vector index: kinds converted, filters inside FAISS, updates, files."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import run_script

from mirsearch import neighbours
from mirsearch.config import FeatureConfig, IndexConfig
from mirsearch.errors import IndexMismatchError, InvalidParameterError
from mirsearch.generations import (
    READERS_LOCK,
    prune_generations,
    reading,
    write_atomically,
    write_record,
)
from mirsearch.index import WINDOW_BITS, VectorIndex, split_window_ids, window_ids
from mirsearch.index_kinds import normalise
from mirsearch.index_meta import IndexMeta
from mirsearch.neighbours import IdIndex

DIM = 32
META = IndexMeta.for_model(dim=DIM, model_hash="model-a", feature_config=FeatureConfig(), hop_s=1.5)
SMALL_IVF = {"ivf_nlist": 64, "pq_m": 8}


def test_auto_keeps_windows_in_8_bits_and_converts_an_older_float_index():
    index, axis = build_index(IndexConfig(kind="auto"), n_tracks=10)
    assert index.meta.kind == "sq8" and index._tracks.kind == "flat"
    older, _ = build_index(IndexConfig(kind="flat"), n_tracks=10)
    older.config = IndexConfig(kind="auto")
    assert older.convert_if_due() and older.meta.kind == "sq8"
    assert not older.convert_if_due()
    _, tracks, _ = older.search_windows(older.track_windows(7)[:2], 1)
    assert tracks[:, 0].tolist() == [7, 7]


def test_a_kind_the_user_names_is_honoured_and_auto_never_flips_back():
    """An IVF-PQ catalog opened with MIRSEARCH_INDEX_KIND=hnsw becomes HNSW (it used to stay
    IVF-PQ without a word); under "auto" an approximate index left below the exact limit by
    removals is kept, not rebuilt back and forth."""
    config = IndexConfig(kind="ivfpq", **SMALL_IVF)
    index, _ = build_index(config, n_tracks=260)
    assert index.meta.kind == "ivfpq"
    index.config = IndexConfig(kind="hnsw")
    assert index.convert_if_due() and index.meta.kind == index._tracks.kind == "hnsw"
    assert not index.convert_if_due()
    _, tracks, _ = index.search_windows(index.track_windows(7)[:2], 1)
    assert tracks[:, 0].tolist() == [7, 7]
    index.config = IndexConfig(kind="auto", exact_max_vectors=20_000)
    assert not index.convert_if_due() and index.meta.kind == "hnsw"


def build_index(config: IndexConfig, *, n_tracks: int = 120, n_windows: int = 40, seed: int = 1):
    """Tracks 1..n_tracks; odd tracks live near one direction, even tracks near the opposite."""
    rng = np.random.default_rng(seed)
    axis = normalise(rng.standard_normal((1, DIM)))[0]
    index = VectorIndex.create(META, config)
    for track_id in range(1, n_tracks + 1):
        sign = 1.0 if track_id % 2 else -1.0
        index.add(track_id, sign * axis + 0.3 * rng.standard_normal((n_windows, DIM)))
    return index, axis


@pytest.mark.parametrize("kind", ["flat", "sq8", "hnsw", "ivfpq"])
@pytest.mark.parametrize("exact_filter_max_vectors", [0, 50_000])
def test_filtered_search_returns_k_allowed_hits(kind, exact_filter_max_vectors):
    config = IndexConfig(kind=kind, exact_filter_max_vectors=exact_filter_max_vectors, **SMALL_IVF)
    index, axis = build_index(config, n_tracks=300)
    assert index.meta.kind == kind
    allowed = {2, 4, 6, 8, 10, 12, 14, 16}  # even: on the far side of the query
    _, unfiltered, _ = index.search_windows(axis[None], 10)
    assert not set(unfiltered[0]) & allowed
    scores, tracks, windows = index.search_windows(axis[None], 10, allowed_tracks=allowed)
    assert set(tracks[0]) <= allowed and (windows[0] >= 0).all() and np.isfinite(scores).all()
    scores, tracks = index.search_tracks(axis, 5, allowed_tracks=allowed | {9999})
    assert set(tracks) <= allowed and len(tracks) == 5
    scores, tracks = index.search_tracks(axis, 5, allowed_tracks={2, 4})
    assert tracks.tolist()[:2] in ([2, 4], [4, 2]) and tracks.tolist()[2:] == [-1, -1, -1]
    assert np.isneginf(scores[2:]).all()


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_a_small_allowed_set_is_ranked_by_score_then_by_the_lower_id(kind):
    """An approximate index searches a few allowed vectors exactly: best first, and vectors of
    one score (a track indexed twice, copies of one file) in the order of their ids, so that
    the same query always answers in the same order."""
    rng = np.random.default_rng(5)
    data = normalise(rng.standard_normal((600, DIM)))
    query = data[0]
    data[[7, 3, 5]] = query  # three copies of the query's vector
    data[11] = normalise(query + 0.5 * data[12])  # near it, below the copies
    index = IdIndex.build(kind, np.arange(600), data, IndexConfig(kind=kind, **SMALL_IVF))
    allowed = np.array([11, 7, 5, 3, 200])
    scores, ids = index.search(query[None], 4, allowed=allowed)
    assert ids[0].tolist() == [3, 5, 7, 11]
    assert scores[0, 0] == scores[0, 2] > scores[0, 3]
    copies = np.random.default_rng(6).permutation(np.arange(300, 340))  # 40 of one score
    data[copies] = query
    index = IdIndex.build(kind, np.arange(600), data, IndexConfig(kind=kind, **SMALL_IVF))
    _, ids = index.search(query[None], 30, allowed=np.concatenate([copies, [200]]))
    assert ids[0].tolist() == list(range(300, 330))


@pytest.mark.parametrize("kind", ["flat", "sq8", "hnsw", "ivfpq"])
def test_the_faiss_selector_itself_filters(kind, monkeypatch):
    config = IndexConfig(kind=kind, exact_filter_max_vectors=0, post_filter_max_k=0, **SMALL_IVF)
    index, axis = build_index(config, n_tracks=300)

    def no_exact_search(*args):
        raise AssertionError("the filtered FAISS search should have been enough")

    monkeypatch.setattr(IdIndex, "_search_exactly", no_exact_search)
    allowed = set(range(1, 301, 10))  # odd: near the query; 30 tracks, 1,200 windows
    _, tracks, _ = index.search_windows(axis[None], 20, allowed_tracks=allowed)
    assert set(tracks[0]) <= allowed and (tracks[0] >= 0).all()


@pytest.mark.parametrize("kind", ["flat", "sq8"])
def test_a_broad_filter_applied_to_the_hits_answers_as_the_filter_inside_faiss(kind):
    """A filter allowing many windows (a common genre) is applied to a wider unfiltered search's
    hits: on an exact index, the same hits as FAISS's own filter, for queries whose neighbourhood
    holds the allowed tracks and for those whose does not (searched again with the filter)."""
    inside = IndexConfig(kind=kind, exact_filter_max_vectors=0, post_filter_max_k=0)
    applied = dataclasses.replace(inside, post_filter_max_k=1_024)
    by_faiss, axis = build_index(inside, n_tracks=300)
    by_hits, _ = build_index(applied, n_tracks=300)
    rng = np.random.default_rng(3)
    queries = np.vstack([axis, -axis, normalise(rng.standard_normal((30, DIM)))])
    allowed = set(range(1, 301, 3))  # 100 tracks, a third of the windows, both sides
    for k in (1, 20, 50):
        expected = by_faiss.search_windows(queries, k, allowed_tracks=allowed)
        found = by_hits.search_windows(queries, k, allowed_tracks=allowed)
        for want, got in zip(expected, found, strict=True):
            np.testing.assert_array_equal(want, got)
    odd = set(range(1, 301, 2))  # half the windows, all on the far side of -axis
    expected = by_faiss.search_windows(-axis[None], 100, allowed_tracks=odd)
    found = by_hits.search_windows(-axis[None], 100, allowed_tracks=odd)
    assert by_hits._post_filter_k(100, 6_000) == 400  # fetched 400, none of them theirs
    assert (found[1] >= 0).all() and set(found[1][0]) <= odd
    np.testing.assert_array_equal(expected[1], found[1])


@pytest.mark.parametrize("kind", ["flat", "sq8", "hnsw", "ivfpq"])
def test_a_broad_filter_never_lists_its_windows_to_faiss(kind, monkeypatch):
    """A genre of 40,000 tracks had its ~4.8 M window ids listed, sorted and hashed for FAISS on
    every query (~1 s): a filter allowing most of the index needs none of that."""
    config = IndexConfig(kind=kind, exact_filter_max_vectors=0, **SMALL_IVF)
    index, axis = build_index(config, n_tracks=300)

    def listed(*args):
        raise AssertionError("the allowed windows were listed to FAISS")

    monkeypatch.setattr(VectorIndex, "_window_ids_of", listed)
    allowed = set(range(1, 301)) - {1, 3, 5}
    scores, tracks, _ = index.search_windows(axis[None], 20, allowed_tracks=allowed)
    assert set(tracks[0]) <= allowed and (tracks[0] >= 0).all()
    assert (np.diff(scores[0]) <= 1e-6).all()  # best first


@pytest.mark.parametrize("kind", ["flat", "sq8", "hnsw", "ivfpq"])
def test_excluded_tracks_are_left_out_inside_the_search(kind):
    """The k nearest of the other tracks, as if the excluded ones were not in the index, and
    with a track removed before (its tombstones) still left out."""
    config = IndexConfig(kind=kind, **SMALL_IVF)
    index, axis = build_index(config, n_tracks=300)
    index.remove([3])
    excluded = set(range(1, 301, 2)) - {201, 203}  # every odd track near the query but two
    scores, tracks, _ = index.search_windows(axis[None], 20, excluded_tracks=excluded)
    near = set(tracks[0][:8])  # the two odd tracks' 80 windows outrank every even one
    assert near <= {201, 203} and not set(tracks[0]) & (excluded | {3})
    assert (tracks[0] >= 0).all() and np.isfinite(scores).all()


@pytest.mark.parametrize("kind", ["flat", "sq8"])
def test_add_remove_re_add(kind):
    index, _ = build_index(IndexConfig(kind=kind), n_tracks=10)
    assert index.n_tracks == 10 and index.ntotal_windows == 400
    probe = index.track_windows(3)[5:8]
    _, tracks, windows = index.search_windows(probe, 1)
    assert tracks[:, 0].tolist() == [3, 3, 3] and windows[:, 0].tolist() == [5, 6, 7]
    index.remove([3, 4, 999])
    assert not index.contains(3) and index.ntotal_windows == 320
    assert index.track_windows(3).shape == (0, DIM)
    _, tracks, _ = index.search_windows(probe, 10)
    assert 3 not in tracks and 4 not in tracks
    index.add(3, probe)
    _, tracks, windows = index.search_windows(probe, 1)
    assert tracks[:, 0].tolist() == [3, 3, 3] and windows[:, 0].tolist() == [0, 1, 2]
    assert index.n_windows(3) == 3 and index.track_ids().tolist() == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    with pytest.raises(InvalidParameterError, match="already"):
        index.add(3, probe)
    with pytest.raises(InvalidParameterError):
        index.add(11, np.ones((4, DIM + 1)))


def test_an_ivf_index_is_retrained_with_more_cells_as_it_grows():
    index, _ = build_index(IndexConfig(kind="ivfpq", pq_m=8), n_tracks=250)
    assert index.meta.kind == "ivfpq" and index._windows.nlist == 256  # 10,000 / 39
    rng = np.random.default_rng(7)
    for track_id in range(251, 500):
        index.add(track_id, rng.standard_normal((40, DIM)))
    assert index._windows.nlist == 256  # 19,960 windows: 511 cells wanted, not yet twice
    index.add(500, index.track_windows(17)[::-1])
    assert index._windows.nlist == 512 and index.ntotal_windows == 20_000
    _, tracks, windows = index.search_windows(index.track_windows(17)[:1], 2)
    assert sorted(tracks[0].tolist()) == [17, 500] and sorted(windows[0].tolist()) == [0, 39]


def test_rebuilding_copies_every_vector_a_chunk_at_a_time(monkeypatch):
    monkeypatch.setattr(neighbours, "REBUILD_CHUNK", 97)  # 1,200 vectors: 13 chunks
    rng = np.random.default_rng(4)
    ids = rng.permutation(10_000)[:1200].astype(np.int64)
    sq8 = IdIndex.build("sq8", ids, rng.standard_normal((1200, DIM)), IndexConfig())
    flat = sq8.rebuilt("flat")
    assert flat.kind == "flat" and sorted(flat.live_ids()) == sorted(ids)
    np.testing.assert_allclose(flat.reconstruct(ids), normalise(sq8.reconstruct(ids)), atol=1e-6)


def test_hnsw_removal_uses_tombstones_then_compacts(monkeypatch):
    monkeypatch.setattr(neighbours, "REBUILD_CHUNK", 97)  # compacted a chunk at a time
    index, _ = build_index(IndexConfig(kind="hnsw"), n_tracks=20)
    probe = index.track_windows(5)
    index.remove([5])
    assert index._windows.n_removed == 40 and index.ntotal_windows == 760
    _, tracks, _ = index.search_windows(probe, 20)
    assert 5 not in tracks and (tracks >= 0).all()
    index.remove(range(6, 12))  # now more than a quarter are tombstones: compacted
    assert index._windows.n_removed == 0 and index.ntotal_windows == 520
    index.add(5, probe)
    _, tracks, windows = index.search_windows(probe[:3], 1)
    assert tracks[:, 0].tolist() == [5, 5, 5] and windows[:, 0].tolist() == [0, 1, 2]


def test_auto_switches_to_ivfpq_above_the_exact_limit():
    config = IndexConfig(kind="auto", exact_max_vectors=1000, **SMALL_IVF)
    index, axis = build_index(config, n_tracks=249)
    assert index.meta.kind == "sq8" and index.ntotal_windows == 9960  # too few to train IVF on
    index.add(250, index.track_windows(17)[::-1])
    assert index.meta.kind == "ivfpq" and index.ntotal_windows == 10_000
    _, tracks, windows = index.search_windows(index.track_windows(17)[:1], 2)
    assert sorted(tracks[0].tolist()) == [17, 250] and sorted(windows[0].tolist()) == [0, 39]


def test_ids_are_found_without_a_hash_map_and_older_files_still_read(tmp_path):
    """A new index is an IndexIDMap (FAISS's IndexIDMap2 keeps a hash map of every id, rebuilt
    on each load): `reconstruct` finds ids in the id map sorted, in order as built, after ids
    added out of order and after a removal, and refuses an id it does not hold; an IndexIDMap2
    file saved by an earlier version reads and answers the same."""
    rng = np.random.default_rng(3)
    data = normalise(rng.standard_normal((300, DIM)))
    ids = np.arange(300) * 5 + 7  # ids unrelated to positions
    in_order = IdIndex.build("sq8", ids, data, IndexConfig())
    assert type(in_order.faiss_index) is faiss.IndexIDMap
    np.testing.assert_allclose(in_order.reconstruct(ids[[299, 0, 7]]), data[[299, 0, 7]], atol=0.01)
    for kind in ("flat", "hnsw"):  # removal in place, and by tombstone
        index = IdIndex.build(kind, ids[100:], data[100:], IndexConfig())
        index.add(ids[:100], data[:100])
        np.testing.assert_allclose(
            index.reconstruct(ids[[150, 3, 299]]), data[[150, 3, 299]], atol=1e-6
        )
        index.remove(ids[[3]])
        with pytest.raises(KeyError, match="not in the index"):
            index.reconstruct(ids[[4, 3]])
        np.testing.assert_allclose(index.reconstruct(ids[[4, 150]]), data[[4, 150]], atol=1e-6)
    older = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    older.add_with_ids(data, ids)
    faiss.write_index(older, str(tmp_path / "older.faiss"))
    read = IdIndex.read(tmp_path / "older.faiss", IndexConfig())
    np.testing.assert_allclose(read.reconstruct(ids[[0, 299]]), data[[0, 299]], atol=1e-6)
    assert read.search(data[:5], 1)[1][:, 0].tolist() == ids[:5].tolist()


@pytest.mark.parametrize("kind", ["flat", "sq8", "hnsw", "ivfpq"])
def test_a_mapped_index_is_shared_from_its_file_and_read_only(tmp_path, clustered_vectors, kind):
    """Read mapped (as every process answering queries reads the catalog's index), an index
    answers exactly as one read into memory, its vectors stay in the file (mapped, not copied),
    it goes on answering once a prune has deleted the file, and it refuses to change rather than
    let FAISS abort the process."""
    if not Path("/proc/self/maps").is_file():
        pytest.skip("needs Linux's /proc/self/maps to see what a process maps")
    data, queries = clustered_vectors
    config = IndexConfig(ivf_nlist=128, ivf_nprobe=16, pq_m=8)
    path = tmp_path / f"{kind}.faiss"
    IdIndex.build(kind, np.arange(len(data)), data, config).write(path)
    in_memory = IdIndex.read(path, config)
    assert str(path) not in Path("/proc/self/maps").read_text()
    mapped = IdIndex.read(path, config, mapped=True)
    assert str(path) in Path("/proc/self/maps").read_text()
    expected = in_memory.search(queries, 10)
    for a, b in zip(expected, mapped.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    path.unlink()
    for a, b in zip(expected, mapped.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mapped.reconstruct([5, 9]), in_memory.reconstruct([5, 9]))
    with pytest.raises(ValueError, match="read-only"):
        mapped.add(np.array([len(data)]), data[:1])
    with pytest.raises(ValueError, match="read-only"):
        mapped.remove([3])
    assert mapped.ntotal == len(data)


def test_an_index_that_cannot_be_mapped_is_read_whole(tmp_path, monkeypatch, caplog):
    """A file system without mmap: the reader says so and reads the file whole; a file FAISS
    cannot read at all is still refused."""
    path = tmp_path / "flat.faiss"
    data = normalise(np.random.default_rng(5).standard_normal((50, DIM)))
    IdIndex.build("flat", np.arange(50), data, IndexConfig()).write(path)
    read_index = faiss.read_index

    def no_mmap(name, flags=0):
        if flags & faiss.IO_FLAG_MMAP_IFC:
            raise RuntimeError("Error: mmap failed: No such device")
        return read_index(name, flags)

    monkeypatch.setattr(faiss, "read_index", no_mmap)
    with caplog.at_level("WARNING"):
        index = IdIndex.read(path, IndexConfig(), mapped=True)
    assert not index.mapped and "reading it whole" in caplog.text
    assert index.search(data[:3], 1)[1][:, 0].tolist() == [0, 1, 2]
    index.add(np.array([50]), data[:1])  # read whole: it may change
    path.write_bytes(b"not an index")
    with pytest.raises(RuntimeError):
        IdIndex.read(path, IndexConfig(), mapped=True)


@pytest.mark.parametrize("kind", ["flat", "sq8", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    config = IndexConfig(kind=kind)
    index, axis = build_index(config, n_tracks=20)
    index.remove([2])
    index.save(tmp_path, 1)
    index.add(2, np.ones((3, DIM)))
    index.save(tmp_path, 2)
    queries = index.track_windows(7)[::5]
    loaded = VectorIndex.load(tmp_path, 2, expect=META, config=config)
    for a, b in zip(
        index.search_windows(queries, 8), loaded.search_windows(queries, 8), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert loaded.meta == index.meta and loaded.n_windows(2) == 3
    older = VectorIndex.load(tmp_path, 1, expect=META, config=config)  # still there: not pruned
    assert not older.contains(2) and older.n_tracks == 19
    assert json.loads((tmp_path / "meta-2.json").read_text())["ntotal_windows"] == 763
    (tmp_path / "windows-3.faiss.tmp").write_bytes(b"half written")
    assert prune_generations(tmp_path, keep=2) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "meta-2.json",
        READERS_LOCK,
        "tracks-2.faiss",
        "windows-2.faiss",
    ]


def test_pruning_gives_way_to_a_reader_loading_a_generation(tmp_path):
    """While a reader holds `reading` (it picked generation 1 and loads it), a prune deletes
    nothing; once it is done, the prune goes through. Readers do not block each other."""
    index, _ = build_index(IndexConfig(), n_tracks=3)
    index.save(tmp_path, 1)
    index.save(tmp_path, 2)
    with reading(tmp_path), reading(tmp_path):
        assert prune_generations(tmp_path, keep=2) == 0
        assert VectorIndex.load(tmp_path, 1, expect=META).n_tracks == 3
    assert prune_generations(tmp_path, keep=2) == 3
    assert not (tmp_path / "meta-1.json").exists()


def test_a_reader_makes_no_index_folder_where_there_is_none(tmp_path):
    """Nothing there to load or prune: a command that only reads had made the folder again, for
    its lock file, in a home whose index was gone."""
    with reading(tmp_path / "gone"):
        assert not (tmp_path / "gone").exists()
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize(
    "refusal",
    [
        PermissionError(errno.EACCES, "Permission denied"),  # a folder the reader cannot write
        OSError(errno.EROFS, "Read-only file system"),  # a read-only volume (it had failed)
    ],
)
def test_a_reader_of_a_read_only_folder_still_holds_off_pruning(tmp_path, monkeypatch, refusal):
    """A catalog served from a read-only volume (faked: tests may run as root): its readers
    take the shared lock on the lock file opened to read, or go without where there is none,
    as nothing can prune that folder either. The lock file had to be opened to write."""
    import builtins

    import mirsearch.generations as generations

    def read_only(path, mode="r", *args, **kwargs):
        if any(c in mode for c in "wa+"):
            raise type(refusal)(refusal.errno, refusal.strerror, str(path))
        return builtins.open(path, mode, *args, **kwargs)

    index, _ = build_index(IndexConfig(), n_tracks=3)
    index.save(tmp_path / "served", 1)
    assert prune_generations(tmp_path / "served", keep=1) == 0  # makes the lock file
    index.save(tmp_path / "served", 2)
    index.save(tmp_path / "bare", 1)
    monkeypatch.setattr(generations, "open", read_only, raising=False)
    with reading(tmp_path / "served"), reading(tmp_path / "bare"):
        monkeypatch.undo()
        assert prune_generations(tmp_path / "served", keep=2) == 0  # given way to the reader
        assert VectorIndex.load(tmp_path / "bare", 1, expect=META).n_tracks == 3
    assert not (tmp_path / "bare" / READERS_LOCK).exists()


def test_load_refuses_a_missing_generation_or_file(tmp_path):
    index, _ = build_index(IndexConfig(), n_tracks=3)
    index.save(tmp_path, 4)
    with pytest.raises(IndexMismatchError, match="generation 5 is incomplete"):
        VectorIndex.load(tmp_path, 5, expect=META)
    (tmp_path / "tracks-4.faiss").unlink()
    with pytest.raises(IndexMismatchError, match="missing tracks-4.faiss"):
        VectorIndex.load(tmp_path, 4, expect=META)


def test_window_ids_round_trip():
    ids = window_ids(12345, 3)
    assert ids.tolist() == [12345 << 20, (12345 << 20) | 1, (12345 << 20) | 2]
    tracks, windows = split_window_ids(np.append(ids, -1))
    assert tracks.tolist() == [12345] * 3 + [-1] and windows.tolist() == [0, 1, 2, -1]


def test_a_write_that_fails_says_which_file_and_why_and_leaves_no_temporary_file(tmp_path):
    """A full disk had reached the user as FAISS's RuntimeError, with its source file and line,
    in a traceback, and left the temporary file behind in the full folder."""

    def faiss_on_a_full_disk(temp: Path) -> None:
        temp.write_bytes(b"half a file")
        raise RuntimeError(
            "Error in void faiss::write_index(const Index*, IOWriter*, int) at "
            "index_write.cpp:867: "
            f"Error: 'ret == (size)' failed: write error in {temp}: 160 != 781 (No space left on "
            "device)"
        )

    target = tmp_path / "windows-2.faiss"
    with pytest.raises(
        OSError, match=r"^cannot write .*windows-2\.faiss: No space left on device$"
    ):
        write_atomically(target, faiss_on_a_full_disk)
    assert list(tmp_path.iterdir()) == []

    def no_inode(temp: Path) -> None:
        raise RuntimeError(
            "Error in faiss::FileIOWriter::FileIOWriter(const char*) at io.cpp:103: Error: 'f' "
            f"failed: could not open {temp} for writing: No space left on device"
        )

    with pytest.raises(OSError, match=r"windows-2\.faiss: could not open .*\.tmp for writing: No"):
        write_atomically(target, no_inode)

    def full(temp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(temp))

    room = rf"cannot write .*: No space left on device; [\d,]+ bytes free in {tmp_path}$"
    with pytest.raises(OSError, match=room) as raised:
        write_atomically(target, full)
    assert raised.value.errno == errno.ENOSPC  # kept, for the advice on what to do

    def interrupted(temp: Path) -> None:  # Ctrl-C halfway through a file of an index's size
        temp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert list(tmp_path.iterdir()) == []  # its temporary file gone with it


# saves generation 2 of the index folder argv[1] (a copy of its generation 1) allowed files of
# argv[2] bytes at most (RLIMIT_FSIZE: a disk full at that size, faked the same for FAISS's
# writes and Python's, as root too); prints what it raised
SHORT_OF_ROOM = r"""
import resource, signal, sys
from pathlib import Path
from mirsearch.config import FeatureConfig
from mirsearch.index import VectorIndex
from mirsearch.index_meta import IndexMeta

directory, limit = Path(sys.argv[1]), int(sys.argv[2])
meta = IndexMeta.for_model(dim=32, model_hash="model-a", feature_config=FeatureConfig(), hop_s=1.5)
index = VectorIndex.load(directory, 1, expect=meta)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    index.save(directory, 2)
except OSError as exc:
    sys.exit(str(exc))
"""


def test_an_index_file_cut_short_by_a_full_disk_is_refused_before_it_is_renamed(tmp_path):
    """FAISS's file writer only printed "close error" when the last bytes it had buffered did
    not fit and returned as if the file were whole: the cut file was renamed into place, its
    generation committed and the last good one pruned, and no search could read the index."""
    index, _ = build_index(IndexConfig(kind="flat"), n_tracks=3)
    index.save(tmp_path, 1)
    size = (tmp_path / "windows-1.faiss").stat().st_size
    assert size % 4096, "the file's last page must be a partial one, held in FAISS's buffer"
    done = run_script(SHORT_OF_ROOM, tmp_path, size // 4096 * 4096)
    assert done.returncode == 1, done.stdout + done.stderr
    needed = rf"cannot write {tmp_path}/windows-2\.faiss: File too large \(the file needs {size:,}"
    assert re.fullmatch(needed + r" bytes\)\n", done.stderr), done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "meta-1.json",
        "tracks-1.faiss",
        "windows-1.faiss",
    ]
    assert VectorIndex.load(tmp_path, 1, expect=META).n_tracks == 3


def test_a_tracks_file_holding_another_track_id_is_refused_on_load(tmp_path):
    """A damaged id (or another generation's tracks file) with the count unchanged had loaded:
    `search` and `similar` then died on a KeyError, and a rebuild wrote a generation that no
    reader could load."""
    config = IndexConfig(kind="flat")
    index, _ = build_index(config, n_tracks=3)
    index.save(tmp_path, 1)
    other = VectorIndex.create(META, config)
    for track_id in (1, 2, 77):
        other.add(track_id, index.track_windows(1))
    other.save(tmp_path / "other", 1)
    (tmp_path / "other" / "tracks-1.faiss").replace(tmp_path / "tracks-1.faiss")
    with pytest.raises(IndexMismatchError, match="windows and tracks files disagree"):
        VectorIndex.load(tmp_path, 1, expect=META, config=config)


def test_allowed_and_excluded_tracks_together_leave_the_excluded_out():
    """`similar` with a genre filter asks for the genre's tracks less the seed: a track both
    allowed and excluded (3, near the query) is not searched, the others all are."""
    index, axis = build_index(IndexConfig(kind="flat"), n_tracks=10)
    _, tracks, _ = index.search_windows(
        axis[None], 120, allowed_tracks=[1, 2, 3], excluded_tracks=[3]
    )
    assert set(tracks[0][tracks[0] >= 0]) == {1, 2}


def test_a_track_keeps_the_track_vector_it_is_given_and_needs_a_window():
    """The track vector ("sounds alike", from the tagging branch) is the one given, normalised,
    not the windows' mean; a track of no windows is refused, not added as nothing."""
    index = VectorIndex.create(META, IndexConfig(kind="flat"))
    rng = np.random.default_rng(0)
    windows, style = rng.standard_normal((5, DIM)), rng.standard_normal(DIM)
    index.add(7, windows, track_vector=3.0 * style)
    assert np.allclose(index.track_vector(7), normalise(style)[0], atol=1e-6)
    index.add(8, windows)
    assert np.allclose(
        index.track_vector(8), normalise(normalise(windows).mean(axis=0))[0], atol=1e-6
    )
    with pytest.raises(InvalidParameterError, match="expected 1 to .* windows"):
        index.add(9, np.zeros((0, DIM), np.float32))
    assert not index.contains(9)


@pytest.mark.parametrize("kind", ["flat", "sq8"])
def test_removing_two_tracks_keeps_the_track_between(kind):
    """Their windows' ids are not one block: removing them all as a range would have taken
    the windows of track 4 too."""
    index, _ = build_index(IndexConfig(kind=kind), n_tracks=6)
    index.remove([3, 5])
    assert index.track_ids().tolist() == [1, 2, 4, 6] and index.ntotal_windows == 160
    probe = index.track_windows(4)[:3]
    _, tracks, windows = index.search_windows(probe, 1)
    assert tracks[:, 0].tolist() == [4, 4, 4] and windows[:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("kind", ["flat", "sq8", "hnsw", "ivfpq"])
def test_excluding_a_track_keeps_the_next_tracks_first_window(kind):
    """A track's windows are the ids [t << WINDOW_BITS, (t + 1) << WINDOW_BITS): the range
    left out ends before the next track's window 0."""
    index, _ = build_index(IndexConfig(kind=kind, **SMALL_IVF), n_tracks=300)
    probe = index.track_windows(4)[:1]
    _, tracks, windows = index.search_windows(probe, 1, excluded_tracks=[3])
    assert (tracks[0, 0], windows[0, 0]) == (4, 0)


def test_an_id_past_every_stored_one_is_not_in_the_index():
    """KeyError, as for any id it does not hold (not an IndexError from the lookup)."""
    data = normalise(np.random.default_rng(0).standard_normal((5, DIM)))
    index = IdIndex.build("flat", np.array([2, 4, 6, 8, 10]), data, IndexConfig())
    assert np.allclose(index.reconstruct(np.array([10, 2])), data[[4, 0]], atol=1e-6)
    for missing in (11, 5, 0):
        with pytest.raises(KeyError, match=f"not in the index: \\[{missing}\\]"):
            index.reconstruct(np.array([missing]))


def test_a_file_is_on_disk_before_its_name_and_the_folder_after_the_generations_last(
    tmp_path, monkeypatch
):
    """Each file is fsynced under its temporary name before the rename puts it in place, and the
    folder once the meta file, a generation's last, is renamed: a power cut never leaves a
    generation's name pointing at bytes not yet written."""
    events = []
    fsync, replace = os.fsync, os.replace

    def synced(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        fsync(fd)

    def renamed(source, target):
        events.append(("rename", Path(source).name, Path(target).name))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", renamed)
    write_atomically(tmp_path / "windows-3.faiss", lambda temp: temp.write_bytes(b"vectors"))
    write_record(tmp_path, 3, {"kind": "flat"})
    assert events == [
        ("fsync", "windows-3.faiss.tmp"),
        ("rename", "windows-3.faiss.tmp", "windows-3.faiss"),
        ("fsync", "meta-3.json.tmp"),
        ("rename", "meta-3.json.tmp", "meta-3.json"),
        ("fsync", tmp_path.name),
    ]


def test_pruning_deletes_other_generations_files_and_temporary_files_only(tmp_path):
    """A file named like a generation's but longer (a user's backup) is not one of them; a
    newer generation's files (a batch whose commit failed on a full disk, after they were
    written) are, where they had stayed and taken the room the next run needed."""
    names = ["windows-1.faiss", "meta-1.json", "windows-1.faiss.bak", "meta-2.json", "x.tmp"]
    for name in names + ["tracks-1.faiss~", "notes.txt", "windows-3.faiss", "meta-3.json"]:
        (tmp_path / name).write_text("")
    assert prune_generations(tmp_path, keep=2) == 5
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        ["windows-1.faiss.bak", "meta-2.json", "tracks-1.faiss~", "notes.txt", READERS_LOCK]
    )


def test_a_track_id_or_a_window_count_past_the_id_layout_is_refused():
    """A window id is the track id shifted by WINDOW_BITS plus the window's number: a track id
    of 2**43 or more would overflow the sign, 2**20 windows run into the next track's ids."""
    meta = IndexMeta.for_model(dim=2, model_hash="m", feature_config=FeatureConfig(), hop_s=1.5)
    index = VectorIndex.create(meta)
    with pytest.raises(InvalidParameterError, match="out of range"):
        index.add(1 << (63 - WINDOW_BITS), np.ones((3, 2)))
    with pytest.raises(InvalidParameterError, match="out of range"):
        index.add(-1, np.ones((3, 2)))
    with pytest.raises(InvalidParameterError, match="expected 1 to 1048575 windows"):
        index.add(1, np.ones((1 << WINDOW_BITS, 2), dtype=np.float32))
    index.add((1 << (63 - WINDOW_BITS)) - 1, np.ones((3, 2)))
    assert index.track_ids().tolist() == [(1 << (63 - WINDOW_BITS)) - 1]


def test_a_small_catalog_rebuilt_as_ivf_pq_keeps_its_track_vectors_exact():
    """120 tracks are too few to train IVF-PQ on (it needs 256 vectors): their track vectors
    stay in an exact index while the 12,000 windows are IVF-PQ."""
    index, axis = build_index(IndexConfig(**SMALL_IVF), n_tracks=120, n_windows=100)
    index.rebuild("ivfpq")
    assert index.meta.kind == "ivfpq"
    scores, tracks = index.search_tracks(axis, 3)
    assert all(t % 2 for t in tracks) and np.all(np.diff(scores) <= 0)


def test_a_saved_index_whose_files_do_not_fit_its_meta_is_refused(tmp_path):
    """A windows file of other dimensions than the meta says (two generations' files mixed by
    hand), or a meta file missing a field, is said to be unreadable, not used."""
    index, _ = build_index(IndexConfig(), n_tracks=4)
    index.save(tmp_path, 1)
    meta = IndexMeta.for_model(dim=16, model_hash="x", feature_config=FeatureConfig(), hop_s=1.5)
    other = VectorIndex.create(meta)
    for track_id in (1, 2, 3, 4):
        other.add(track_id, np.ones((40, 16)))
    other.save(tmp_path, 2)
    (tmp_path / "windows-2.faiss").replace(tmp_path / "windows-1.faiss")
    with pytest.raises(IndexMismatchError, match="windows and tracks files disagree"):
        VectorIndex.load(tmp_path, 1, expect=META)
    index.save(tmp_path, 3)
    record = json.loads((tmp_path / "meta-3.json").read_text())
    del record["dim"]
    (tmp_path / "meta-3.json").write_text(json.dumps(record))
    with pytest.raises(IndexMismatchError, match="cannot be read"):
        VectorIndex.load(tmp_path, 3, expect=META)
