"""The Engine's shared resources: the model and index loaded once, mapped or read whole, on the
threads a worker is given, and the index reloaded while `mirsearch index` commits."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from mirsearch.api import Engine
from mirsearch.checkpoints import build, save_checkpoint
from mirsearch.config import FeatureConfig
from mirsearch.demo import write_demo_catalog
from mirsearch.errors import ModelError
from mirsearch.generations import GENERATION_FILE, path_of
from mirsearch.index import VectorIndex
from mirsearch.indexer import Indexer
from mirsearch.model_card import default_checkpoint_path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=3)


def generations_on_disk(settings) -> set[int]:
    return {
        int(m.group(2))
        for p in settings.index_dir.iterdir()
        if (m := GENERATION_FILE.match(p.name))
    }


def test_a_reload_while_a_commit_prunes_still_loads_a_complete_generation(
    settings, demo, tmp_path, monkeypatch
):
    """A server picks generation g and starts loading it; meanwhile `mirsearch index` commits
    g + 1 and prunes. The server gets g whole, then moves to g + 1 by itself; g's files go at
    the next run."""
    music = tmp_path / "music"
    music.mkdir()
    for path in demo[:2]:
        shutil.copy(path, music)
    Engine(settings).index_paths([music])
    before = Engine(settings).catalog.index_state().generation
    server = Engine(settings)  # a fresh process: its first query loads the index
    server.embedder  # noqa: B018 (the model is loaded before the race, as a running server's is)
    loading, go_on = threading.Event(), threading.Event()
    original = VectorIndex.load.__func__

    def paused_load(cls, directory, generation, **options):
        if threading.current_thread().name == "server":
            loading.set()
            assert go_on.wait(120)
        return original(cls, directory, generation, **options)

    monkeypatch.setattr(VectorIndex, "load", classmethod(paused_load))
    answer: dict = {}

    def query():
        try:
            answer["index"] = server.index()
        except Exception as exc:  # what a request would have turned into a 503
            answer["error"] = exc

    reader = threading.Thread(target=query, name="server")
    reader.start()
    try:
        assert loading.wait(120)
        shutil.copy(demo[2], music)
        summary = Indexer(settings).run([music])  # commits while the server is mid-load
    finally:
        go_on.set()
        reader.join(120)
    assert summary.indexed == 1
    assert "error" not in answer, answer.get("error")
    assert answer["index"].n_tracks == 2  # generation `before`, complete
    after = server.catalog.index_state().generation
    assert after > before and before in generations_on_disk(settings)
    assert server.index().n_tracks == 3  # the next query moves on, no restart
    Indexer(settings).run([music])  # nothing to do, and the older files go
    assert generations_on_disk(settings) == {after}


def test_load_reads_the_model_and_the_index_before_the_first_query(settings, demo, monkeypatch):
    """What a server's worker does before it answers: the first search then reads nothing."""
    Engine(settings).index_paths([demo[0].parent])
    engine = Engine(settings)
    engine.load()

    def not_again(*args, **kwargs):
        raise AssertionError("loaded by the query, not by Engine.load")

    monkeypatch.setattr("mirsearch.embeddings.Embedder.__init__", not_again)
    monkeypatch.setattr("mirsearch.resources.VectorIndex.load", not_again)
    assert Path(engine.search(demo[0], k=1)[0].path) == demo[0].resolve()


def test_query_engines_map_the_index_files_unless_told_not_to(settings, demo):
    """By default an Engine leaves the index's vectors in its files, shared by every process that
    serves the catalog; IndexConfig.mapped = False (MIRSEARCH_INDEX_MAPPED=0) reads them whole."""
    if not Path("/proc/self/maps").is_file():
        pytest.skip("needs Linux's /proc/self/maps to see what a process maps")
    Engine(settings).index_paths([demo[0].parent])
    whole = dataclasses.replace(settings, index=dataclasses.replace(settings.index, mapped=False))
    engine = Engine(whole)
    generation = engine.catalog.index_state().generation
    windows = str(path_of(settings.index_dir, "windows", generation).resolve())
    engine.load()
    assert windows not in Path("/proc/self/maps").read_text()
    mapped = Engine(settings)
    mapped.load()
    assert windows in Path("/proc/self/maps").read_text()
    clip = demo[0]
    assert [r.track_id for r in mapped.search(clip, k=2)] == [
        r.track_id for r in engine.search(clip, k=2)
    ]


def test_a_pool_worker_s_engine_runs_numpy_and_faiss_on_one_thread(settings):
    """Two `match` workers on two cores: each one's FAISS searches take one OpenMP thread and its
    matrix products one BLAS thread, not one a core to wake on the other's."""
    import faiss

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    with threadpool_limits(limits=2):  # as on a 2-core machine; as they were afterwards
        Engine(settings)
        assert faiss.omp_get_max_threads() == 2 and blas() == {2}
        Engine(settings, threads=1)
        assert faiss.omp_get_max_threads() == 1 and blas() == {1}


def test_a_model_file_replaced_after_its_card_was_read_is_refused(settings, tmp_path):
    """The index is checked against the model's card, read first; the network is loaded when a
    query first needs it. A model copied over the old one in between (while `serve` runs) would
    have read uploads with a network other than the one the index holds: start again, it says."""
    model = shutil.copy(default_checkpoint_path(), tmp_path / "model.pt")
    engine = Engine(dataclasses.replace(settings, model_path=model))
    assert engine.card.arch == "student"
    feature_config = dataclasses.asdict(FeatureConfig())
    save_checkpoint(
        model,
        model=build("cnn", n_classes=2, feature_config=feature_config),
        arch="cnn",
        arch_args={"n_classes": 2, "feature_config": feature_config},
        labels=["a", "b"],
        window_s=3.0,
    )
    with pytest.raises(ModelError, match="changed since this process read it: start again"):
        engine.load()
