"""What a saved vector index says of itself (IndexMeta, its generations' meta files), checked.

An index is only used with the model, features and window hop that made it: a generation whose
meta differs from what the current model expects, or that was written for another catalog
database, is refused with a message saying how to rebuild it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirsearch.config import EmbeddingConfig
from mirsearch.errors import IndexMismatchError
from mirsearch.generations import none_of, saved_record, write_record
from mirsearch.model_card import ModelCard

FORMAT_VERSION = 3  # bump when the files change meaning; older indexes are then rebuilt
REBUILD = "Run `mirsearch index` on all the catalog's folders to rebuild it."
# What to do when none of a generation's files is in the index folder, where `index` refuses to
# make a new index (Indexer._require_files_of): the folder is another home's, or the index lost.
LOST = (
    "point MIRSEARCH_HOME at the home that indexes this catalog; if its index is lost, "
    "`mirsearch index --rebuild` (on all the catalog's folders) analyses every track again"
)


def repair(directory: Path, generation: int) -> str:
    """What to do about generation `generation` of `directory` when files of it are missing:
    index again (a generation a crash or a hand left with some of its files is rebuilt), or,
    with none of them there, LOST's advice."""
    return f"{LOST[0].upper()}{LOST[1:]}." if none_of(directory, generation) else REBUILD


@dataclass(frozen=True)
class IndexMeta:
    """What the vectors in an index mean; an index is only used with the model that made it."""

    dim: int  # embedding dimensions
    model_hash: str  # the checkpoint's hash
    feature_config: dict = field(default_factory=dict)  # the mel front end's settings
    hop_s: float = 1.5  # seconds between the starts of a track's windows
    metric: str = "ip"  # inner product of unit vectors (cosine)
    kind: str = "flat"  # the windows index's kind when it was saved
    format_version: int = FORMAT_VERSION
    match_threshold: float | None = None  # near-duplicate decision threshold (not checked on load)

    @classmethod
    def for_model(
        cls,
        *,
        dim: int,
        model_hash: str,
        feature_config: Any,
        hop_s: float,
        match_threshold: float | None = None,
    ) -> IndexMeta:
        """The meta an index built now must have (feature_config: a dict or a dataclass)."""
        return cls(
            dim=int(dim),
            model_hash=model_hash,
            feature_config=_plain(feature_config),
            hop_s=float(hop_s),
            match_threshold=match_threshold,
        )

    @classmethod
    def for_card(
        cls, card: ModelCard, embedding: EmbeddingConfig, *, match_threshold: float | None = None
    ) -> IndexMeta:
        """The meta an index of `card`'s model must have, with these embedding settings (a model
        trained on other windows is refused)."""
        card.check_window(embedding.window_s)
        return cls.for_model(
            dim=card.dim,
            model_hash=card.sha256,
            feature_config=card.feature_config,
            hop_s=embedding.hop_s,
            match_threshold=match_threshold,
        )

    def differences(self, other: IndexMeta) -> list[str]:
        """What makes an index with meta `self` unusable where `other` is expected."""
        checks = ["format_version", "dim", "metric", "model_hash", "feature_config", "hop_s"]
        return [
            _difference(name, getattr(self, name), getattr(other, name))
            for name in checks
            if _plain(getattr(self, name)) != _plain(getattr(other, name))
        ]


def _difference(name: str, found, expected) -> str:
    if name == "model_hash":
        return (
            f"it was built by another model ({str(found)[:12]}; this one is {str(expected)[:12]}: "
            "another version of mirsearch, or MIRSEARCH_MODEL naming another checkpoint), so its "
            "vectors, genres and tags are not this model's"
        )
    return f"{name} is {found!r}, expected {expected!r}"


META_FIELDS = [f.name for f in dataclasses.fields(IndexMeta)]


def write_meta(
    directory: Path,
    generation: int,
    meta: IndexMeta,
    *,
    n_tracks: int,
    ntotal_windows: int,
    catalog_id: str | None,
) -> None:
    """Write generation `generation`'s meta file, the last of its files: `meta`, the vector
    counts, when it was saved and for which catalog."""
    record = {
        **dataclasses.asdict(meta),
        "generation": generation,
        "n_tracks": n_tracks,
        "ntotal_windows": ntotal_windows,
        "saved_at": datetime.now(UTC).isoformat(),
        "catalog_id": catalog_id,
    }
    write_record(directory, generation, record)


def described(directory: Path, generation: int) -> str:
    """How messages name generation `generation` of the vector index in `directory`."""
    return f"the vector index in {directory} (generation {generation})"


def read_meta(
    directory: Path, generation: int, *, expect: IndexMeta, catalog_id: str | None
) -> IndexMeta:
    """The meta of generation `generation` of `directory`; IndexMismatchError unless it matches
    `expect` and was written for the catalog `catalog_id` (a generation saved before catalogs
    had ids says none, and passes)."""
    where = described(directory, generation)
    record = saved_record(directory, generation)
    meta = IndexMeta(**{key: record[key] for key in META_FIELDS if key in record})
    written_for = record.get("catalog_id")
    if catalog_id and written_for and written_for != catalog_id:
        raise IndexMismatchError(
            f"{where} was written for another catalog database, or for this one before a "
            f"`db downgrade` below 0005 took its id: {LOST}"
        )
    problems = meta.differences(expect)
    if problems:
        raise IndexMismatchError(f"{where} does not match: {'; '.join(problems)}. {REBUILD}")
    return meta


def _plain(value: Any) -> Any:
    """A JSON round trip of `value` (dataclasses as dicts), so saved and fresh values compare."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, sort_keys=True))
