"""The Engine and the public Python API: what they answer, on an empty catalog too, and reloading
the index while `mirsearch index` commits."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.demo import write_demo_catalog
from mirsearch.encoding import write
from mirsearch.errors import IndexMismatchError, NotFoundError
from mirsearch.generations import GENERATION_FILE, path_of
from mirsearch.index import VectorIndex
from mirsearch.indexer import Indexer


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


def test_search_match_and_classify_on_an_empty_catalog(settings, demo):
    engine = Engine(settings)
    with pytest.raises(NotFoundError, match="catalog is empty"):
        engine.search(demo[0])
    with pytest.raises(NotFoundError, match="catalog is empty"):
        engine.match(demo[0])
    classified = engine.classify(demo[0])
    assert classified.similar == [] and classified.genre in engine.embedder.labels
    assert engine.dupes() == []


def test_classify_without_similar_tracks_never_reads_the_index(settings, demo, monkeypatch):
    """Genres and tags of a file need no catalog: an index this model cannot read (another
    model's, say) does not stop them."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])

    def unreadable():
        raise IndexMismatchError("the vector index was built by another model")

    monkeypatch.setattr(engine, "index", unreadable)
    classified = engine.classify(demo[0], similar_k=0)
    assert classified.similar == [] and classified.genre in engine.embedder.labels
    with pytest.raises(IndexMismatchError):
        engine.classify(demo[0], similar_k=1)


def test_load_reads_the_model_and_the_index_before_the_first_query(settings, demo, monkeypatch):
    """What a server's worker does before it answers: the first search then reads nothing."""
    Engine(settings).index_paths([demo[0].parent])
    engine = Engine(settings)
    engine.load()

    def not_again(*args, **kwargs):
        raise AssertionError("loaded by the query, not by Engine.load")

    monkeypatch.setattr("mirsearch.embeddings.Embedder.__init__", not_again)
    monkeypatch.setattr("mirsearch.api.VectorIndex.load", not_again)
    assert Path(engine.search(demo[0], k=1)[0].path) == demo[0].resolve()


def test_the_duplicate_groups_are_worked_out_once_per_index_generation(
    settings, demo, tmp_path, monkeypatch
):
    """The site's duplicates page asks on every visit; the answer moves with the index only."""
    import mirsearch.api

    folder = tmp_path / "music"
    folder.mkdir()
    shutil.copy(demo[0], folder / "a.ogg")
    shutil.copy(demo[0], folder / "a-copy.ogg")
    engine = Engine(settings)
    engine.index_paths([folder])
    calls = []
    found = mirsearch.api.find_groups
    monkeypatch.setattr(
        mirsearch.api, "find_groups", lambda *a, **k: calls.append(1) or found(*a, **k)
    )
    first = engine.dupes()
    assert [len(g["tracks"]) for g in first] == [2] and engine.dupes() == first and len(calls) == 1
    shutil.copy(demo[1], folder / "b.ogg")
    shutil.copy(demo[1], folder / "b-copy.ogg")
    engine.index_paths([folder])
    assert [len(g["tracks"]) for g in engine.dupes()] == [2, 2] and len(calls) == 2


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


def test_search_and_similar_rank_with_the_configured_search_settings(settings, demo):
    """The blend of "sounds alike" vectors and windows is the user's setting, not a default:
    all style and no style order the other tracks by different evidence."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    track_id = engine.catalog.list_tracks(per_page=10)[0][0].id
    scores = {}
    for weight in (0.0, 1.0):
        search = dataclasses.replace(settings.search, style_weight=weight)
        engine.settings = dataclasses.replace(settings, search=search)
        scores[weight] = (
            [round(r.score, 4) for r in engine.similar(track_id, k=2)],
            [round(r.score, 4) for r in engine.search(demo[0], k=3)][1:],
        )
    assert scores[0.0][0] != scores[1.0][0] and scores[0.0][1] != scores[1.0][1]


def test_the_public_functions_use_the_home_of_the_environment(tmp_path, demo, monkeypatch):
    import mirsearch

    home = tmp_path / "home"
    monkeypatch.setenv("MIRSEARCH_HOME", str(home))
    for name in [n for n in os.environ if n.startswith("MIRSEARCH_") and n != "MIRSEARCH_HOME"]:
        monkeypatch.delenv(name)
    mirsearch.default_engine.cache_clear()
    try:
        summary = mirsearch.index_paths([demo[0].parent])
        assert summary.indexed == 3 and (home / "catalog.db").is_file()
        clip = write(tmp_path / "clip.wav", load(demo[1]).samples[5 * 16_000 : 15 * 16_000], 16_000)
        found = mirsearch.search(clip, k=2)
        assert len(found) == 2 and found[0].path == str(demo[1].resolve())
        matches = mirsearch.match(clip)
        assert matches and matches[0].path == str(demo[1].resolve())
        assert matches[0].track_offset_s == pytest.approx(5.0, abs=1.6)
        classified = mirsearch.classify(clip, similar_k=1)
        labels = mirsearch.default_engine().embedder.labels
        assert classified.genre in labels and set(classified.probabilities) == set(labels)
        assert [r.path for r in classified.similar] == [str(demo[1].resolve())]
        assert mirsearch.similar(found[0].track_id, k=1)[0].track_id != found[0].track_id
    finally:
        mirsearch.default_engine().catalog.close()
        mirsearch.default_engine.cache_clear()


# What answers without the network: a process that runs only these never imports torch.
WITHOUT_THE_NETWORK = """
import sys
from pathlib import Path

from mirsearch.api import Engine
from mirsearch.config import Settings

engine = Engine(Settings.from_env({}, home=Path(sys.argv[1])))
again = engine.index_paths([sys.argv[2]])
track_id = engine.catalog.list_tracks(per_page=1)[0][0].id
print(again.indexed, again.unchanged, len(engine.similar(track_id, k=2)), len(engine.dupes()))
print("torch loaded:", "torch" in sys.modules)
"""


def test_an_index_run_with_nothing_to_do_similar_and_dupes_never_load_torch(
    settings, demo, tmp_path
):
    music = tmp_path / "music"
    music.mkdir()
    for path in demo:
        shutil.copy(path, music)
    shutil.copy(demo[0], music / "the-same-again.ogg")
    Engine(settings).index_paths([music])
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_NETWORK, settings.home, music],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0 4 2 1", "torch loaded: False"]


def test_one_folder_or_one_genre_given_as_a_string_is_that_one(settings, demo):
    """Not the letters of its name: index_paths("music") had looked for m, u, s, i and c."""
    engine = Engine(settings)
    assert engine.index_paths(str(demo[0].parent)).indexed == len(demo)
    genre = engine.catalog.genres()[0][0]
    assert engine.allowed_tracks(genre) == engine.allowed_tracks([genre]) != set()


def test_a_clip_with_a_silent_lead_in_finds_its_track_as_the_music_alone_does(
    settings, demo, tmp_path
):
    """The lead-in's windows are left out of the ranking (they had matched nothing and lowered
    the clip's own track to ~0.8) and the hit's offset still counts from the clip's start."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    music = load(demo[1]).samples[10 * 16_000 : 20 * 16_000]
    plain = write(tmp_path / "plain.wav", music, 16_000)
    led = write(
        tmp_path / "led.wav", np.concatenate([np.zeros(4 * 16_000, np.float32), music]), 16_000
    )
    alone, after_silence = engine.search(plain, k=1)[0], engine.search(led, k=1)[0]
    assert alone.path == after_silence.path == str(demo[1].resolve())
    assert after_silence.score >= alone.score - 0.03
    assert after_silence.offset_s == pytest.approx(alone.offset_s - 4.0, abs=0.5)
