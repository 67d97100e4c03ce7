"""Tests for an index's meta: the file each generation ends with, and what it refuses on load."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from mirsearch.config import EmbeddingConfig, FeatureConfig
from mirsearch.errors import IndexMismatchError, ModelError
from mirsearch.index import VectorIndex
from mirsearch.index_meta import FORMAT_VERSION, REBUILD, IndexMeta, repair
from mirsearch.model_card import read_card

DIM = 32
META = IndexMeta.for_model(dim=DIM, model_hash="model-a", feature_config=FeatureConfig(), hop_s=1.5)


def three_tracks() -> VectorIndex:
    """An index of tracks 1, 2 and 3, 40 random windows each."""
    rng = np.random.default_rng(1)
    index = VectorIndex.create(META)
    for track_id in (1, 2, 3):
        index.add(track_id, rng.standard_normal((40, DIM)))
    return index


def test_the_meta_file_says_what_the_vectors_mean(tmp_path):
    three_tracks().save(tmp_path, 7, catalog_id="catalog-a")
    record = json.loads((tmp_path / "meta-7.json").read_text())
    assert list(record) == [
        "dim",
        "model_hash",
        "feature_config",
        "hop_s",
        "metric",
        "kind",
        "format_version",
        "match_threshold",
        "generation",
        "n_tracks",
        "ntotal_windows",
        "saved_at",
        "catalog_id",
    ]
    assert record["format_version"] == FORMAT_VERSION and record["kind"] == "sq8"
    assert (record["generation"], record["n_tracks"], record["ntotal_windows"]) == (7, 3, 120)
    assert record["catalog_id"] == "catalog-a" and record["feature_config"] == META.feature_config


def test_load_refuses_an_index_of_another_model_or_front_end(tmp_path):
    three_tracks().save(tmp_path, 4)
    other_model = IndexMeta.for_model(
        dim=DIM, model_hash="model-b", feature_config=FeatureConfig(), hop_s=1.5
    )
    with pytest.raises(
        IndexMismatchError, match="built by another model \\(model-a; this one is model-b"
    ):
        VectorIndex.load(tmp_path, 4, expect=other_model)
    other_dim = IndexMeta.for_model(
        dim=64, model_hash="model-a", feature_config=FeatureConfig(), hop_s=1.5
    )
    with pytest.raises(IndexMismatchError, match="dim is 32, expected 64"):
        VectorIndex.load(tmp_path, 4, expect=other_dim)
    other_features = IndexMeta.for_model(
        dim=DIM, model_hash="model-a", feature_config=FeatureConfig(n_mels=96), hop_s=1.5
    )
    with pytest.raises(IndexMismatchError, match="feature_config"):
        VectorIndex.load(tmp_path, 4, expect=other_features)


def test_load_refuses_a_generation_written_for_another_catalog(tmp_path):
    """Two catalog databases sharing one home's index folder had read each other's vectors
    under their own track ids."""
    index = three_tracks()
    index.save(tmp_path, 1, catalog_id="catalog-a")
    assert VectorIndex.load(tmp_path, 1, expect=META, catalog_id="catalog-a").n_tracks == 3
    with pytest.raises(IndexMismatchError, match="written for another catalog database"):
        VectorIndex.load(tmp_path, 1, expect=META, catalog_id="catalog-b")
    index.save(tmp_path, 2)  # as a version before catalog ids wrote it: it names none
    assert VectorIndex.load(tmp_path, 2, expect=META, catalog_id="catalog-b").n_tracks == 3


def test_load_refuses_another_window_hop_metric_or_format(tmp_path):
    """Vectors a window hop apart other than the one the catalog's offsets assume, of another
    metric, or in files of another format version, each said by name."""
    three_tracks().save(tmp_path, 4)
    other_hop = dataclasses.replace(META, hop_s=3.0)
    with pytest.raises(IndexMismatchError, match="hop_s is 1.5, expected 3.0"):
        VectorIndex.load(tmp_path, 4, expect=other_hop)
    meta_file = tmp_path / "meta-4.json"
    saved = json.loads(meta_file.read_text())
    for key, value, said in (
        ("metric", "l2", "metric is 'l2', expected 'ip'"),
        ("format_version", FORMAT_VERSION - 1, f"format_version is {FORMAT_VERSION - 1}"),
    ):
        meta_file.write_text(json.dumps(saved | {key: value}))
        with pytest.raises(IndexMismatchError, match=re.escape(said)):
            VectorIndex.load(tmp_path, 4, expect=META)
    meta_file.write_text(json.dumps(saved))
    assert VectorIndex.load(tmp_path, 4, expect=META).n_tracks == 3


def test_the_threshold_the_index_was_built_with_is_read_back(tmp_path):
    """The check on ingest reads it from the index (not compared on load: a recalibration
    keeps the vectors)."""
    index = VectorIndex.create(dataclasses.replace(META, match_threshold=0.69))
    index.add(1, np.random.default_rng(2).standard_normal((4, DIM)))
    index.save(tmp_path, 1)
    loaded = VectorIndex.load(tmp_path, 1, expect=META)
    assert loaded.meta.match_threshold == 0.69


def test_a_catalog_without_an_id_reads_a_generation_written_for_one(tmp_path):
    """A catalog between a `db downgrade` below 0005 and the next upgrade has no id to
    compare; its own generations must still load."""
    three_tracks().save(tmp_path, 1, catalog_id="catalog-a")
    assert VectorIndex.load(tmp_path, 1, expect=META, catalog_id=None).n_tracks == 3


def test_the_repair_advice_tells_a_lost_index_from_a_damaged_one(tmp_path):
    """None of a generation's files there (another home, an index lost): point the home or
    rebuild from scratch; some of them: index again."""
    assert repair(tmp_path, 5).startswith("Point MIRSEARCH_HOME at the home")
    three_tracks().save(tmp_path, 5)
    (tmp_path / "windows-5.faiss").unlink()
    assert repair(tmp_path, 5) == REBUILD


def test_an_index_for_a_model_of_other_windows_is_refused_before_it_is_made():
    card = read_card()
    assert IndexMeta.for_card(card, EmbeddingConfig()).model_hash == card.sha256
    with pytest.raises(ModelError, match="trained on 3.0 s windows"):
        IndexMeta.for_card(card, EmbeddingConfig(window_s=5.0))
