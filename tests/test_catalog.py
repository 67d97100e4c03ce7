"""The catalog's queries (catalog.py): listings, genres and their filings, the text search,
stats; the database and its migrations are test_database.py's, the flags read test_flags.py's.

Every test taking `catalog` runs twice: on SQLite and on a fresh PostgreSQL database.
"""

from __future__ import annotations

import random
import sqlite3
import unicodedata

import pytest
from conftest import add_tracks
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from mirsearch import track_filters
from mirsearch.catalog import Catalog
from mirsearch.errors import MirsearchError
from mirsearch.schema import IndexState, Track, TrackGenre


def test_stats_give_counts_and_the_generation_of_one_moment(catalog, monkeypatch):
    """Read one by one, an index run committing between them had paired one generation's
    track count with the next one's generation (7 readings in ~6,900 during indexing)."""
    from sqlalchemy.orm import Session

    from mirsearch.schema import IndexState

    add_tracks(catalog, a={"duration_s": 60.0})
    other = Catalog(catalog.url)
    read = Session.execute
    committed = []

    def execute(session, *args, **kwargs):  # an index run commits after each statement
        result = read(session, *args, **kwargs)
        if session.bind is not other.engine and not committed:
            committed.append(True)
            with other.session() as theirs, theirs.begin():
                theirs.add(Track(path="/music/b.flac", status="indexed", duration_s=60.0))
                theirs.merge(IndexState(id=1, generation=1, model_hash="m"))
        return result

    monkeypatch.setattr(Session, "execute", execute)
    stats = catalog.stats()
    other.close()
    assert (stats["indexed"], stats["index_generation"]) in ((1, 0), (2, 1)), stats


def test_rows_stay_readable_after_the_session_closes(catalog):
    ids = add_tracks(catalog, a={"title": "Song", "descriptors": {"tempo_bpm": 120.0}})
    row = catalog.get(ids["a"])
    assert row.title == "Song" and row.descriptors == {"tempo_bpm": 120.0}
    assert catalog.by_path("/music/a.flac").id == ids["a"]
    assert catalog.by_path("/music/none.flac") is None
    assert catalog.get(999) is None
    assert set(catalog.get_many([ids["a"], 999])) == {ids["a"]}
    data = row.to_dict()
    assert data["path"] == "/music/a.flac" and isinstance(data["updated_at"], str)


def test_list_tracks_filters_and_pages(catalog):
    add_tracks(
        catalog,
        one={"title": "Blue Moon", "artist": "Ella", "genre": "jazz"},
        two={"title": "Red Sky", "artist": "MOONLIGHT band", "genre": "rock"},
        three={"title": None, "genre": "rock", "tag_genre": "Jazz"},
        four={"title": "Broken", "status": "failed", "error": "bad file"},
        moon_file={"title": "x"},
    )
    rows, total = catalog.list_tracks(q="moon")
    assert total == 3 and {r.path for r in rows} == {
        "/music/one.flac",
        "/music/two.flac",
        "/music/moon_file.flac",
    }
    assert [r.path for r in catalog.list_tracks(q="n_f")[0]] == ["/music/moon_file.flac"]
    assert catalog.list_tracks(q="o_e")[1] == catalog.list_tracks(q="%")[1] == 0  # no wildcards
    rows, total = catalog.list_tracks(genre="JAZZ")
    assert total == 2 and {r.path for r in rows} == {"/music/one.flac", "/music/three.flac"}
    rows, total = catalog.list_tracks(status="failed")
    assert total == 1 and rows[0].error == "bad file"
    assert catalog.list_tracks(status=None)[1] == 5
    page1, total = catalog.list_tracks(per_page=2)
    page2, _ = catalog.list_tracks(page=2, per_page=2)
    page3, _ = catalog.list_tracks(page=3, per_page=2)
    assert total == 4 and [len(page1), len(page2), len(page3)] == [2, 2, 0]
    assert [r.id for r in page1 + page2] == sorted(r.id for r in page1 + page2)
    for nul in ({"q": "\x00"}, {"genre": "rock\x00"}):  # SQLite listed every track for q=%00
        with pytest.raises(MirsearchError, match="NUL"):
            catalog.list_tracks(**nul)
    for page, per_page in ((0, 2), (10**20, 2), (1, 10**20)):  # 10**20: past SQL's integers
        with pytest.raises(MirsearchError, match="must be 1 to 1,000,000,000"):
            catalog.list_tracks(page=page, per_page=per_page)


def test_tracks_asked_for_by_many_ids_are_read_a_query_at_a_time(catalog, monkeypatch):
    monkeypatch.setattr("mirsearch.catalog.IDS_PER_QUERY", 3)
    ids = add_tracks(catalog, **{f"t{i}": {} for i in range(8)})
    asked = [*ids.values(), 10_000]
    assert sorted(catalog.get_many(asked)) == sorted(ids.values())


def test_genres_count_each_track_once_per_distinct_genre(catalog):
    ids = add_tracks(
        catalog,
        a={"genre": "rock", "tag_genre": "Rock"},  # agrees with the model: counts once
        b={"genre": "rock", "tag_genre": "Punk "},
        c={"genre": "jazz"},
        d={"genre": "pop", "status": "failed"},  # not indexed: not counted
        e={"tag_genre": "  "},  # blank tag: ignored
    )
    assert catalog.genres() == [("rock", 2), ("jazz", 1), ("punk", 1)]
    assert catalog.track_ids_for_genres(["PUNK"]) == {ids["b"]}
    assert catalog.track_ids_for_genres(["rock", "jazz"]) == {ids["a"], ids["b"], ids["c"]}
    assert catalog.track_ids_for_genres(["pop"]) == set()
    assert catalog.track_ids_for_genres([]) == set()
    with pytest.raises(MirsearchError, match="genre cannot hold a NUL"):  # SQLite: "%;\x00;%"
        catalog.track_ids_for_genres(["\x00"])  # had been every track with a tag genre
    with pytest.raises(MirsearchError, match="genre is at most 1,000 characters"):
        catalog.track_ids_for_genres(["g" * 1_001])  # as the listing: searches had taken it


def test_a_tag_of_several_genres_counts_and_filters_as_each(catalog):
    """FFmpeg gives a file's two GENRE tags as "Rock;Pop": it had been one genre, "rock;pop",
    that neither filter found."""
    ids = add_tracks(
        catalog,
        a={"genre": "rock", "tag_genre": "Rock; Pop"},  # the model's among them: counts once
        b={"genre": "jazz", "tag_genre": "Punk;Ska"},  # as a catalog indexed before kept it
        c={"genre": "pop", "tag_genre": "Synth-pop"},
        d={"tag_genre": "100%; x_y"},  # % and _ are no wildcards
        e={"tag_genre": "xay; 1000"},  # ... in the genre asked for either
    )
    assert catalog.genres() == [
        ("pop", 2),
        ("100%", 1),
        ("1000", 1),
        ("jazz", 1),
        ("punk", 1),
        ("rock", 1),
        ("ska", 1),
        ("synth-pop", 1),
        ("x_y", 1),
        ("xay", 1),
    ]
    assert catalog.track_ids_for_genres(["pop"]) == {ids["a"], ids["c"]}
    assert catalog.track_ids_for_genres([" SKA "]) == {ids["b"]}
    assert catalog.track_ids_for_genres(["x_y"]) == {ids["d"]}
    assert catalog.track_ids_for_genres(["100%"]) == {ids["d"]}
    assert catalog.track_ids_for_genres(["x"]) == catalog.track_ids_for_genres(["xby"]) == set()
    assert catalog.track_ids_for_genres(["xay"]) == {ids["e"]}
    assert [r.id for r in catalog.list_tracks(genre="punk")[0]] == [ids["b"]]


def test_genres_and_titles_fold_every_script_on_both_backends(catalog):
    """SQLite's lower() had folded ASCII only: a tagged genre "Électro" matched no spelling
    there, nor "ärtist" its "Ärtist", where PostgreSQL found them."""
    ids = add_tracks(catalog, a={"genre": "rock", "tag_genre": "Électro", "artist": "Ärtist"})
    assert ("électro", 1) in catalog.genres()
    assert catalog.track_ids_for_genres(["ÉLECTRO"]) == {ids["a"]}
    assert [r.id for r in catalog.list_tracks(genre="électro")[0]] == [ids["a"]]
    assert [r.id for r in catalog.list_tracks(q="ärtist")[0]] == [ids["a"]]


def test_a_decomposed_name_or_genre_is_found_by_the_composed_one_and_back(catalog):
    """A file named on a Mac writes é as e and an accent: `--q "Beyoncé"` typed the usual way
    had found it by no spelling, nor its decomposed genre tag the composed `--genre`."""
    decomposed = unicodedata.normalize("NFD", "Beyoncé")
    with catalog.session() as session, session.begin():
        track = Track(path=f"/music/{decomposed}.flac", status="indexed", tag_genre="E\u0301lectro")
        session.add(track)
    assert decomposed != "Beyoncé"
    for q in ("Beyoncé", decomposed):
        assert [r.id for r in catalog.list_tracks(q=q)[0]] == [track.id]
    assert [r.id for r in catalog.list_tracks(genre="électro")[0]] == [track.id]
    assert catalog.track_ids_for_genres(["Électro"]) == {track.id}


def _filed(db: Catalog) -> dict[int, set[str]]:
    """track id → the genres the track_genres table files it under."""
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT track_id, genre FROM track_genres")).all()
    filed: dict[int, set[str]] = {}
    for track_id, genre in rows:
        filed.setdefault(track_id, set()).add(genre)
    return filed


def test_a_track_is_refiled_when_its_genres_change_and_unfiled_when_it_goes(catalog):
    """Re-analysis sets genre and tag_genre on the row it loads (records.py): the genre kept
    keeps its row (deleted and added in one flush, it had clashed on the primary key)."""
    ids = add_tracks(catalog, a={"genre": "rock", "tag_genre": "Rock; Pop"}, b={"genre": "jazz"})
    assert _filed(catalog) == {ids["a"]: {"rock", "pop"}, ids["b"]: {"jazz"}}
    with catalog.session() as session, session.begin():
        row = session.get(Track, ids["a"])
        row.tag_genre = "Punk"
        row.genre = "rock"
    assert _filed(catalog) == {ids["a"]: {"rock", "punk"}, ids["b"]: {"jazz"}}
    assert catalog.track_ids_for_genres(["pop"]) == set()
    assert catalog.track_ids_for_genres(["punk"]) == {ids["a"]}
    with catalog.session() as session, session.begin():
        session.execute(delete(Track).where(Track.id == ids["b"]))  # as pruning deletes
    assert _filed(catalog) == {ids["a"]: {"rock", "punk"}}
    assert catalog.genres() == [("punk", 1), ("rock", 1)]


def test_upgrading_files_the_genres_of_the_tracks_a_catalog_holds(catalog):
    """Migration 0010 fills track_genres from the rows of a catalog made before it."""
    catalog.upgrade()
    catalog.downgrade("0009")
    tracks = [
        (1, "rock", "Rock; Pop", "indexed"),
        (2, "jazz", None, "indexed"),
        (3, None, " E\u0301lectro ", "indexed"),  # decomposed, as a Mac wrote it before 0004
        (4, "pop", "  ", "failed"),
    ]
    with catalog.engine.begin() as connection:
        for track_id, genre, tag_genre, status in tracks:
            connection.execute(
                text(
                    "INSERT INTO tracks (id, path, genre, tag_genre, status, n_windows, updated_at)"
                    " VALUES (:id, :path, :genre, :tag, :status, 0, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": track_id,
                    "path": f"/m/{track_id}",
                    "genre": genre,
                    "tag": tag_genre,
                    "status": status,
                },
            )
    reopened = Catalog(catalog.url)
    reopened.migrate()
    assert _filed(reopened) == {1: {"rock", "pop"}, 2: {"jazz"}, 3: {"électro"}, 4: {"pop"}}
    assert reopened.genres() == [("jazz", 1), ("pop", 1), ("rock", 1), ("électro", 1)]
    assert reopened.track_ids_for_genres(["Électro", "POP"]) == {1, 3}
    reopened.close()


def _counted(db: Catalog) -> dict[str, int]:
    """The counts kept per genre (migration 0012), those at 0 left out."""
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT genre, tracks FROM genre_counts")).all()
    return {genre: n for genre, n in rows if n}


def _counted_by_reading(db: Catalog) -> dict[str, int]:
    """What the counts should be: the indexed tracks' filings, counted."""
    query = (
        "SELECT track_genres.genre, count(*) FROM track_genres JOIN tracks"
        " ON tracks.id = track_genres.track_id WHERE status = 'indexed' GROUP BY track_genres.genre"
    )
    with db.engine.connect() as connection:
        return dict(connection.execute(text(query)).all())


def _filed_under(session, genre: str) -> list[int]:
    return list(session.scalars(select(TrackGenre.track_id).where(TrackGenre.genre == genre)))


def test_the_genre_counts_follow_every_change_to_tracks_and_their_genres(catalog):
    """Triggers keep them (migration 0012) through whatever writes tracks: the ORM adding,
    refiling, indexing and deleting tracks (the cascade of their filings included), a Core
    update of many statuses at once, a genre renamed where it is filed, tracks and filings
    inserted by Core as bench/scale.py does."""
    catalog.migrate()
    rng = random.Random(7)
    genres, tags = ["rock", "pop", "jazz", None], [None, "Rock; Pop", "Jazz", " É\u0301lectro "]
    statuses = ["indexed", "indexed", "failed", "pending"]
    ids: list[int] = []
    changes = ["add", "refile", "status", "both", "delete", "bulk", "rename"]
    moved = set()  # the changes that moved a count
    for step in range(80):
        change = rng.choice(changes) if ids else "add"
        before = _counted(catalog)
        with catalog.session() as session, session.begin():
            track = session.get(Track, rng.choice(ids)) if ids else None
            if change == "add":
                track = Track(path=f"/m/{step}.flac", status=rng.choice(statuses))
                track.genre, track.tag_genre = rng.choice(genres), rng.choice(tags)
                session.add(track)
                session.flush()
                ids.append(track.id)
            if change in ("refile", "both"):
                track.genre, track.tag_genre = rng.choice(genres), rng.choice(tags)
            if change in ("status", "both"):
                track.status = rng.choice(statuses)
            if change == "delete":
                session.execute(delete(Track).where(Track.id == track.id))  # as pruning deletes
                ids.remove(track.id)
            if change == "bulk":
                wanted = rng.choice(statuses)
                session.execute(update(Track).where(Track.id.in_(ids[::2])).values(status=wanted))
            if change == "rename":  # a genre renamed where it is filed
                old, new = rng.sample(["rock", "pop", "jazz", "bebop"], 2)
                filed = update(TrackGenre).where(TrackGenre.genre == old).values(genre=new)
                session.execute(filed.where(~TrackGenre.track_id.in_(_filed_under(session, new))))
        assert _counted(catalog) == _counted_by_reading(catalog), (step, change)
        moved |= {change} if _counted(catalog) != before else set()
    assert moved == set(changes)
    with catalog.session() as session, session.begin():
        rows = [{"id": 1000 + i, "path": f"/core/{i}", "status": "indexed"} for i in range(3)]
        session.execute(insert(Track), rows)
        session.execute(insert(TrackGenre), [{"track_id": r["id"], "genre": "jazz"} for r in rows])
    assert _counted(catalog) == _counted_by_reading(catalog)
    assert catalog.genres() == sorted(_counted(catalog).items(), key=lambda p: (-p[1], p[0]))


def test_upgrading_counts_the_genres_of_the_tracks_a_catalog_holds(catalog):
    """Migration 0012 counts the indexed tracks' filings of a catalog made before it."""
    ids = add_tracks(
        catalog,
        a={"genre": "rock", "tag_genre": "Rock; Pop"},
        b={"genre": "rock"},
        c={"genre": "jazz", "status": "failed"},
    )
    catalog.downgrade("0011")
    reopened = Catalog(catalog.url)
    assert reopened.genres() == [("rock", 2), ("pop", 1)]
    with reopened.session() as session, session.begin():
        session.get(Track, ids["c"]).status = "indexed"
    assert reopened.genres() == [("rock", 2), ("jazz", 1), ("pop", 1)]
    reopened.close()


def _sqlite_plan(connection, query) -> str:
    """SQLite's plan of `query`, its steps in a line."""
    compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
    steps = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")  # no :name read
    return " ".join(row[-1] for row in steps)


def test_a_genre_filter_looks_the_genre_up_by_index_on_both_backends(catalog):
    """A filter had matched every row's genre and split every tag's: work in proportion to the
    catalog (~170 ms at 100,000 tracks). SQLite's plan searches the genres' index; PostgreSQL's
    reads the indexed tracks' ids from an index too (migration 0013: its index on status alone
    had it read every track's row, 93 ms for a genre of 40,445 tracks, 38 since)."""
    add_tracks(catalog, a={"genre": "rock"}, b={"genre": "jazz", "status": "failed"})
    matches = track_filters.genre_matches(["rock"])
    query = select(Track.id).where(Track.status == "indexed", matches)
    with catalog.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = _sqlite_plan(connection, query)
            assert "USING COVERING INDEX ix_track_genres_genre_track_id (genre=?)" in plan, plan
            assert "SCAN track_genres" not in plan and "SCAN tracks" not in plan, plan
            return
        connection.commit()
        vacuum = connection.execution_options(isolation_level="AUTOCOMMIT")
        vacuum.execute(text("VACUUM ANALYZE tracks, track_genres"))  # as autovacuum keeps them
        connection.execute(text("SET enable_seqscan = off"))  # as at a catalog's size
        compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
        plan = " ".join(row[0] for row in connection.execute(text(f"EXPLAIN {compiled}")))
    assert "Index Only Scan using ix_tracks_status_id on tracks" in plan, plan
    assert "Index Only Scan using ix_track_genres_genre_track_id" in plan, plan


# Texts a search must tell apart as the row scan does: FTS5's own syntax, LIKE's wildcards, a
# quote, scripts whose case SQLite's FTS5 folds otherwise than Python (Cherokee, Turkish İ), a
# decomposed name, trigrams split between a track's title and artist, and words of under 3
# characters, found only whole (beside no letter or digit).
TEXTS = {
    "a": {"title": "Électro Night", "artist": "AND OR NOT", "path": '/x/"quoted" NEAR(x).wav'},
    "b": {"title": "Northern Lights", "artist": "İstanbul", "path": "/m/100%_done.ogg"},
    "c": {"title": "ᎠᎡᎢ dance", "artist": "abc", "path": unicodedata.normalize("NFD", "/m/é.flac")},
    "d": {"title": "xabc", "artist": "bcdx", "path": "/m/*^-:.mp3"},
    "e": {"title": "Symphony No. 5 Part 2", "artist": "", "path": "/m/2025/x_1(é)-v.ogg"},
}
SEARCHES = (
    *("électro", "ÉLECTRO", "northern lig", "ern", "ꭰꭱꭲ", "Ꭰ", "ᎠᎡᎢ", "istanbul", "i̇stan"),
    *("İstanbul", "100%", "0%_", "%_d", "and or", "near(", '"quoted"', '"', "*^-:", "é.f"),
    *("e\u0301.f", "abcd", "abc", "bcdx", "ab", "x", "no such text"),
    *("lights northern", "night électro", "dance abc", "électro ᎠᎡᎢ", "x abc", "   "),
    *(
        "part 2",
        "2",
        "1",
        "no. 5",
        "é",
        "e\u0301",
        "(é)",
        "v",
        "x",
        "(x",
        "x)",
        "_",
        "\\",
        "[",
        "?",
    ),
)


def test_a_text_search_finds_what_reading_every_row_finds_on_both_backends(catalog):
    """SQLite's text index names candidates by trigram (migration 0011) and PostgreSQL's serve
    the match itself: neither may find a track the row scan does not, nor miss one."""
    ids = add_tracks(catalog, **TEXTS)

    def scanned(q: str) -> list[int]:
        matches = track_filters.text_matches(q, trigrams=False)
        with catalog.session() as session:
            return list(session.scalars(select(Track.id).where(matches).order_by(Track.id)))

    found = {q: [track.id for track in catalog.list_tracks(q=q)[0]] for q in SEARCHES}
    assert found == {q: scanned(q) for q in SEARCHES}
    missed = {q for q, tracks in found.items() if not tracks}  # which of the İ ones, by backend
    assert {"abcd", "no such text", "électro ᎠᎡᎢ", "ab", "Ꭰ", "x abc", "\\", "[", "?"} <= missed
    assert len(missed) <= 13
    assert found["ꭰꭱꭲ"] == found["é.f"] == [ids["c"]] and found["near("] == [ids["a"]]
    assert found["abcd"] == []  # "abc" in one text, "bcd" in another
    assert found["İstanbul"] == [ids["b"]]  # as stored, whatever the backend's lower makes of İ
    # each word anywhere in the texts, in any order; a blank text keeps every track
    assert found["lights northern"] == [ids["b"]] and found["dance abc"] == [ids["c"]]
    assert found["   "] == sorted(ids.values())
    # a word of under 3 characters only whole: not the 2 of 2025, the 1 of 100%, x of xabc
    assert found["part 2"] == found["2"] == found["1"] == found["no. 5"] == [ids["e"]]
    assert found["x"] == [ids["a"], ids["e"]] and found["(x"] == found["x)"] == [ids["a"]]
    assert found["é"] == found["e\u0301"] == [ids["c"], ids["e"]] and found["v"] == [ids["e"]]
    assert found["_"] == [ids["b"], ids["e"]]  # no letter or digit in it: anywhere


def test_a_text_search_lists_what_the_tags_name_before_what_only_a_path_does(catalog):
    """By id alone, an untagged bootleg whose file name held the words came before the
    recording whose title and artist are them, and at a catalog's size pages before it."""
    ids = add_tracks(
        catalog,
        bootleg={"path": "/dl/Halo (Beyonce) 2 live bootleg.mp3"},
        in_folder={"title": "Intro", "path": "/music/Halo 2/01.flac"},
        halo={"title": "Halo", "artist": "Beyonce", "path": "/music/b/01.flac"},
        halo_2={"title": "Halo 2", "artist": "Remixer", "path": "/music/halo 2.flac"},
    )

    def listed(q: str, **page) -> list[int]:
        return [track.id for track in catalog.list_tracks(q=q, **page)[0]]

    assert listed("halo") == [ids["halo"], ids["halo_2"], ids["bootleg"], ids["in_folder"]]
    assert listed("beyonce HALO") == [ids["halo"], ids["bootleg"]]
    assert listed("halo 2") == [ids["halo_2"], ids["bootleg"], ids["in_folder"]]
    assert listed("halo", page=2, per_page=2) == [ids["bootleg"], ids["in_folder"]]
    assert listed("") == sorted(ids.values())  # no text: by id


def test_a_text_search_is_served_by_an_index_on_both_backends(catalog):
    """It had lower-cased and matched every row (~290 ms at 100,000 tracks on SQLite)."""
    add_tracks(catalog, **TEXTS)
    matches = track_filters.text_matches("northern", trigrams=catalog._text_index)
    query = select(Track.id).where(Track.status == "indexed", matches)
    with catalog.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = _sqlite_plan(connection, query)
            assert "SCAN track_text VIRTUAL TABLE INDEX" in plan, plan
            assert "SEARCH tracks USING INDEX ix_tracks_status (status=? AND rowid=?)" in plan
        else:  # the index chosen as at a catalog's size, over the status index and a scan
            connection.execute(text("SET enable_seqscan = off"))
            compiled = select(Track.id).where(matches).compile(connection)
            steps = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
            plan = " ".join(row[0] for row in steps)
            for column in ("title", "artist", "path"):
                assert f"Bitmap Index Scan on ix_tracks_{column}_trigrams" in plan, plan
            # a word under 3 characters, which no trigram holds, is checked on the rows read
            short = select(Track.id).where(track_filters.text_matches("2", trigrams=False))
            compiled = short.compile(connection)
            steps = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
            assert "trigrams" not in " ".join(row[0] for row in steps)


def _text_candidates(db: Catalog, q: str) -> set[int]:
    """The tracks SQLite's text index names for `q` (lower-cased)."""
    with db.engine.connect() as connection:
        return set(connection.scalars(track_filters.text_candidates([{q}])))


def test_the_text_index_follows_a_track_renamed_and_removed(sqlite_catalog):
    ids = add_tracks(
        sqlite_catalog, a={"title": "Old Name", "artist": "Band"}, b={"title": "Other"}
    )
    assert _text_candidates(sqlite_catalog, "old name") == {ids["a"]}
    with sqlite_catalog.session() as session, session.begin():
        session.get(Track, ids["a"]).title = "New Name"
        session.get(Track, ids["b"]).path = "/moved/b.flac"  # as a file moved is followed
    assert _text_candidates(sqlite_catalog, "old name") == set()
    assert _text_candidates(sqlite_catalog, "/moved/") == {ids["b"]}
    assert _text_candidates(sqlite_catalog, "/music/") == {ids["a"]}
    assert _text_candidates(sqlite_catalog, "new name") == {ids["a"]}
    assert _text_candidates(sqlite_catalog, "band") == {ids["a"]}
    with sqlite_catalog.session() as session, session.begin():
        session.execute(delete(Track).where(Track.id == ids["a"]))  # as pruning deletes
    assert _text_candidates(sqlite_catalog, "new name") == set()
    assert _text_candidates(sqlite_catalog, "other") == {ids["b"]}


def test_a_connection_of_another_program_is_refused_a_change_to_a_track_s_texts(sqlite_catalog):
    """The text index's triggers fold as Python does, under a name only mirsearch gives its
    connections: the sqlite3 shell's lower() folds ASCII only, and would have put the index out
    of step with the texts."""
    ids = add_tracks(sqlite_catalog, a={"title": "Électro"})
    other = sqlite3.connect(sqlite_catalog.file)
    with other:
        other.execute("UPDATE tracks SET status = 'failed' WHERE id = ?", (ids["a"],))
        with pytest.raises(sqlite3.OperationalError, match="no such function: mirsearch_lower"):
            other.execute("UPDATE tracks SET title = 'ÉLECTRO' WHERE id = ?", (ids["a"],))
    other.close()
    assert sqlite_catalog.get(ids["a"]).status == "failed"
    assert sqlite_catalog.get(ids["a"]).title == "Électro"
    assert _text_candidates(sqlite_catalog, "électro") == {ids["a"]}


def test_a_catalog_without_the_text_index_reads_every_row(sqlite_catalog):
    """Migration 0011 makes none where SQLite lacks FTS5's trigram tokenizer (before 3.34)."""
    ids = add_tracks(sqlite_catalog, **TEXTS)
    with sqlite_catalog.engine.begin() as connection:
        for trigger in ("insert", "update", "delete"):
            connection.execute(text(f"DROP TRIGGER track_text_{trigger}"))
        connection.execute(text("DROP TABLE track_text"))
    opened = Catalog(sqlite_catalog.url)
    assert not opened._text_index
    assert [track.id for track in opened.list_tracks(q="NORTHERN")[0]] == [ids["b"]]
    add_tracks(opened, e={"title": "Northern Skies"})  # no trigger left to ask for the index
    assert len(opened.list_tracks(q="northern")[0]) == 2
    opened.close()


def test_upgrading_indexes_the_texts_of_the_tracks_a_catalog_holds(catalog):
    """Migration 0011 indexes the texts of the rows of a catalog made before it."""
    catalog.upgrade()
    catalog.downgrade("0010")
    with catalog.engine.begin() as connection:
        for track_id, title in ((1, "Électro Night"), (2, None), (3, "Northern Lights")):
            connection.execute(
                text(
                    "INSERT INTO tracks (id, path, title, status, n_windows, updated_at)"
                    " VALUES (:id, :path, :title, 'indexed', 0, CURRENT_TIMESTAMP)"
                ),
                {"id": track_id, "path": f"/m/{track_id}.flac", "title": title},
            )
    reopened = Catalog(catalog.url)
    assert [track.id for track in reopened.list_tracks(q="ÉLECTRO")[0]] == [1]
    assert [track.id for track in reopened.list_tracks(q=".flac")[0]] == [1, 2, 3]
    if reopened.file is not None:
        assert _text_candidates(reopened, "northern") == {3}
    reopened.close()


def test_stats_and_index_state(catalog):
    add_tracks(
        catalog,
        a={"genre": "rock", "duration_s": 1800.0},
        b={"genre": "jazz", "duration_s": 1800.0},
        c={"status": "failed"},
        d={"status": "pending", "duration_s": 99.0},
    )
    with catalog.session() as session, session.begin():
        session.add(IndexState(id=1, generation=7, model_hash="abc"))
    with catalog.session() as session, session.begin(), pytest.raises(IntegrityError):
        session.add(IndexState(id=2, generation=1))
        session.flush()
    stats = catalog.stats()
    assert stats["tracks"] == 4
    assert (stats["indexed"], stats["failed"], stats["pending"]) == (2, 1, 1)
    assert stats["audio_hours"] == pytest.approx(1.0)
    assert stats["genres"] == {"jazz": 1, "rock": 1}
    assert stats["index_generation"] == 7 and stats["model_hash"] == "abc"
    state = catalog.index_state()
    assert (state.generation, state.model_hash) == (7, "abc")
