"""Tests for an index's meta: the file each generation ends with, and what it refuses on load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mirsearch.config import FeatureConfig
from mirsearch.errors import IndexMismatchError
from mirsearch.index import VectorIndex
from mirsearch.index_meta import FORMAT_VERSION, IndexMeta

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
        IndexMismatchError, match="built by another model \\(model-a, this one is model-b"
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
