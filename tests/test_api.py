"""The Engine and the public Python API: what they answer, on an empty catalog too."""

from __future__ import annotations

import os

import pytest

from mirsearch.api import Engine
from mirsearch.audio import load, write
from mirsearch.demo import write_demo_catalog
from mirsearch.errors import NotFoundError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=3)


def test_search_match_and_classify_on_an_empty_catalog(settings, demo):
    engine = Engine(settings)
    with pytest.raises(NotFoundError, match="catalog is empty"):
        engine.search(demo[0])
    with pytest.raises(NotFoundError, match="catalog is empty"):
        engine.match(demo[0])
    classified = engine.classify(demo[0])
    assert classified.similar == [] and classified.genre in engine.embedder.labels
    assert engine.dupes() == []


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
