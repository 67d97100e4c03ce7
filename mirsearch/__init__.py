"""mirsearch: content-based music search, genre classification and near-duplicate detection.

The public Python API. One `Engine` (model, catalog and vector index loaded once) serves every call;
these functions use a default engine built from the environment (MIRSEARCH_HOME, ...).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mirsearch.api import Engine
    from mirsearch.indexer import IndexSummary
    from mirsearch.results import Classification, MatchResult, Result

__all__ = ["classify", "default_engine", "index_paths", "match", "search", "similar"]

# Idle OpenMP threads sleep instead of spinning. torch and faiss each bring an OpenMP runtime whose
# idle threads by default spin after every parallel region, on cores other work needs: a FAISS
# search in the indexer's main process against its two analysis workers, a query's FAISS threads
# against its convolutions. Passive waiting made indexing ../shared/audio ~3 % faster and cut
# `match`'s CPU time per query from 116 to 67 ms at the same wall time. A runtime reads the
# setting when it loads, so it is set before anything imports torch or faiss; a user's own is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Importing a submodule binds it to its name in this package: the Engine's first use of the
# module mirsearch.search would replace the function `search` below. Loaded first, it doesn't.
from mirsearch import search as _search_module  # noqa: E402, F401


@cache
def default_engine() -> Engine:
    """The Engine these functions share. It makes no catalog to answer a query: where
    MIRSEARCH_HOME (a typo?) holds none, a query says so; `index_paths` makes it."""
    from mirsearch.api import Engine

    return Engine(create=False)


def index_paths(paths: list[Path], **options) -> IndexSummary:
    """Index folders or files of audio (incremental); see `Indexer.run` for options."""
    return default_engine().index_paths(paths, **options)


def search(clip: Path, *, k: int = 10, genres: tuple[str, ...] = ()) -> list[Result]:
    """Catalog tracks that sound most like `clip`, best first, optionally within `genres`."""
    return default_engine().search(clip, k=k, genres=genres)


def similar(track_id: int, *, k: int = 10, genres: tuple[str, ...] = ()) -> list[Result]:
    """More like this: catalog tracks that sound like catalog track `track_id`."""
    return default_engine().similar(track_id, k=k, genres=genres)


def match(clip: Path) -> list[MatchResult]:
    """The catalog tracks that `clip` contains (near-duplicates), best first."""
    return default_engine().match(clip)


def classify(path: Path, *, similar_k: int = 5) -> Classification:
    """Genre probabilities of a file and its most similar catalog tracks."""
    return default_engine().classify(path, similar_k=similar_k)
