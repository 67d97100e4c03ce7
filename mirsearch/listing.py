"""The catalog's listings: a page of its tracks found by words, genre and status, its genres
with their track counts, and the tracks filed under genres."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

import sqlalchemy as sa
from sqlalchemy import func, select

from mirsearch.config import MAX_PAGE
from mirsearch.errors import InvalidParameterError
from mirsearch.schema import GenreCount, Track
from mirsearch.track_filters import (
    TEXT_INDEX,
    check_text,
    check_words,
    genre_matches,
    text_matches,
    text_rank,
)


class Listing:
    """The listing queries of Catalog, which mixes this in before CatalogDatabase: they run in
    its session(), and the text index is looked up on its engine once it is migrated."""

    def list_tracks(
        self,
        *,
        q: str | None = None,
        genre: str | None = None,
        status: str | None = "indexed",
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[list[Track], int]:
        """One page of tracks, and the number of tracks matching the filters; ordered by id,
        or for a text `q` those its words find in the title and artist first (text_rank).

        `q`: words each held by the title, artist or path (track_filters.text_matches); `genre`
        matches the predicted or the tagged genre (case-insensitive); `status=None` lists every
        status.
        """
        if not (1 <= page <= MAX_PAGE and 1 <= per_page <= MAX_PAGE):
            raise InvalidParameterError(
                f"page and per_page must be 1 to {MAX_PAGE:,}, got {page} and {per_page}"
            )
        check_text("q", q)
        check_words(q)
        query = select(Track)
        if status is not None:
            query = query.where(Track.status == status)
        order = [Track.id]
        if q:
            query = query.where(text_matches(q, trigrams=self._text_index))
            order.insert(0, text_rank(q))
        if genre:
            query = query.where(genre_matches([genre]))
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(
                query.order_by(*order).offset((page - 1) * per_page).limit(per_page)
            )
            return list(rows), int(total or 0)

    @cached_property
    def _text_index(self) -> bool:
        """Whether SQLite's text index (migration 0011) is there to name a text search's
        candidates: not where that SQLite lacks FTS5's trigram tokenizer, nor on PostgreSQL,
        whose trigram indexes serve the search's own predicate."""
        if self.engine.dialect.name != "sqlite":
            return False
        self.migrate()
        with self.engine.connect() as connection:
            return sa.inspect(connection).has_table(TEXT_INDEX.name)

    def downgrade(self, revision: str = "base") -> None:
        """Undo the Alembic migrations down to `revision` ("base" drops every table)."""
        super().downgrade(revision)
        self.__dict__.pop("_text_index", None)  # to be read again once migrated

    def genres(self) -> list[tuple[str, int]]:
        """Genres of indexed tracks (predicted and tagged, as schema.genre_name files them) with
        track counts: a track counts once per distinct genre, so one whose tag agrees with the
        model counts once, and one whose tag holds several genres ("Rock; Pop") counts in each.
        Sorted by count, most common first, then by name. Read from the counts kept per genre
        (migration 0012)."""
        query = select(GenreCount.genre, GenreCount.tracks).where(GenreCount.tracks > 0)
        with self.session() as session:
            counts = [(name, int(n)) for name, n in session.execute(query)]
        return sorted(counts, key=lambda pair: (-pair[1], pair[0]))

    def track_ids_for_genres(self, genres: Iterable[str]) -> set[int]:
        """Ids of indexed tracks whose predicted or tagged genre is any of `genres`."""
        wanted = [g for g in genres if g and g.strip()]
        if not wanted:
            return set()
        query = select(Track.id).where(Track.status == "indexed", genre_matches(wanted))
        with self.session() as session:
            return set(session.scalars(query))
