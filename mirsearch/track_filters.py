"""What a listing or a search keeps of the catalog's tracks: a text its title, artist or path
holds (looked up by trigram, migration 0011) and the genres it is filed under (migration 0010),
as SQL conditions on the tracks table; the order a text search lists them in; and the checks of
those parameters."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from functools import partial, reduce

import sqlalchemy as sa
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from mirsearch.errors import InvalidParameterError
from mirsearch.schema import Track, TrackGenre, genre_name

TEXT_INDEX = sa.table("track_text", sa.column("rowid"))  # SQLite's trigrams (migration 0011)
TRIGRAM = 3  # characters of a trigram: a text search's shortest form the text index serves
MAX_WORDS = 12  # distinct words of a text search: each is checked on every candidate row (91
# words a 100,000-track catalog's every path held took one request 24 s on SQLite, 12 of them
# 3.0 s, 0.77 since SQLite checks them in one call a row)
MAX_TEXT = 1_000  # characters of a text search or a genre: SQLite refuses longer patterns (tags
# are kept to as many, containers.TAG_CHARS)


def _forms(text: str) -> set[str]:
    """`text` composed and decomposed (é as one character, or as e and its accent): a file's
    path stays as its system wrote it, decomposed where copied from a Mac, as do the tags of a
    catalog indexed before they were composed (containers.TAG_KEYS)."""
    return {unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)}


def text_matches(q: str, *, trigrams: bool) -> sa.ColumnElement[bool]:
    """Each word of `q` (split at white space) is held by the track's title, artist or path, as
    typed (% and _ are no wildcards), composed or decomposed, case aside: "beyoncé halo" finds
    Halo by Beyoncé, and "orchestral airship" the Airship Song Orchestral Mix (the whole text
    as one substring had found neither). A word of 3 characters or more is found anywhere
    ("yoncé" finds Beyoncé); a shorter one only whole, with no letter or digit beside it
    ("part 2" finds Part 2, not every track whose folder or number holds a 2). Both sides are
    lower-cased by the database's lower() (Python's on SQLite), as a word typed as it is stored
    is found whatever the two make of it (PostgreSQL's folds İ to i, Python's to i and a dot;
    in its C locale ASCII alone). With `trigrams` (SQLite's text index) among the candidates
    the index names, each checked by that predicate; a text of only short words, which have
    no trigram, reads every row."""
    words = _words(q)
    matches = _held(words, (Track.title, Track.artist, Track.path))
    indexed = [{form.lower() for form in forms} for forms, short in words if not short]
    if not trigrams or not indexed:
        return matches
    return and_(Track.id.in_(text_candidates(indexed)), matches)


def text_rank(q: str) -> sa.ColumnElement[int]:
    """0 for a track whose title and artist hold every word of `q` between them (as
    text_matches finds words), 1 for one found by its path too: a search lists what its tags
    name before what only a file's name or folder does."""
    return sa.case((_held(_words(q), (Track.title, Track.artist)), 0), else_=1)


def _words(q: str) -> list[tuple[set[str], bool]]:
    """Each distinct word of `q`: its forms (composed and decomposed), and whether it is short
    (under 3 characters lower-cased, as Python's lower is SQLite's: no trigram)."""
    words = []
    for word in dict.fromkeys(q.split()):
        forms = _forms(word)
        words.append((forms, min(len(form.lower()) for form in forms) < TRIGRAM))
    return words


def _held(words: list[tuple[set[str], bool]], columns: tuple) -> sa.ColumnElement[bool]:
    """Each of `words` is held by one of `columns`, as typed, case aside: a short one whole,
    another anywhere; no words, every track."""
    return _WordsHeld(columns, words) if words else sa.true()


class _WordsHeld(FunctionElement[bool]):
    """Each of `words` (forms, short) held by one of the `columns`, case aside, a short word
    with no letter or digit beside it where its own first or last character is one
    (_word_pattern). On SQLite one check a row (database.py's `mirsearch_holds_all`): the
    columns joined a line each and lower-cased once, each word a substring or a regular
    expression looked for in them, where a `LIKE` a word and column lower-cased the texts
    again for each (12 words every row held took 3.0 s at 100,000 tracks). On PostgreSQL a
    word of 3 characters or more is a `LIKE` a column, which its trigram indexes serve; a
    short one, which no trigram holds, a regular expression on the joined columns. Not
    cached: the patterns are made as the statement is compiled."""

    type = sa.Boolean()
    inherit_cache = False

    def __init__(self, columns: tuple, words: list[tuple[set[str], bool]]):
        self.words = words
        super().__init__(*columns)

    def joined(self) -> sa.ColumnElement[str]:
        lines = [func.coalesce(column, "") for column in self.clauses]
        return reduce(lambda text, line: text + "\n" + line, lines)


def _word_pattern(forms: list[str], escape: Callable[[str], str], letter_or_digit: str) -> str:
    """One of `forms`, each `escape`d, with no `letter_or_digit` before or after it on the sides
    where it begins or ends with a letter or digit. The form comes first, its character before
    looked behind at from its end: a pattern that begins with a lookbehind is tried at every
    character (Python: 100,000 rows in 257 ms, 80 so)."""

    def bounded(form: str) -> str:
        escaped = escape(form)
        before = f"(?<!{letter_or_digit}{escaped})" if form[:1].isalnum() else ""
        after = f"(?!{letter_or_digit})" if form[-1:].isalnum() else ""
        return escaped + before + after

    return "(?:" + "|".join(bounded(form) for form in forms) + ")"


@compiles(_WordsHeld, "sqlite")
def _words_held_sqlite(element: _WordsHeld, compiler, **kw) -> str:
    every = []
    for forms, short in element.words:
        lowered = sorted({form.lower() for form in forms})  # as SQLite's lower(), Python's
        if short:
            every.append({"regex": _word_pattern(lowered, re.escape, letter_or_digit=r"[^\W_]")})
        else:
            every.append({"any": lowered})
    spec = json.dumps(every, ensure_ascii=False)
    return compiler.process(func.mirsearch_holds_all(element.joined(), spec), **kw)


@compiles(_WordsHeld, "postgresql")
def _words_held_postgresql(element: _WordsHeld, compiler, **kw) -> str:
    escape = partial(re.sub, r"(\W|_)", r"\\\1")  # a \ before a non-alphanumeric: itself
    every = []
    for forms, short in element.words:
        if short:
            pattern = _word_pattern(sorted(forms), escape, letter_or_digit="[[:alnum:]]")
            every.append(func.lower(element.joined()).op("~")(func.lower(pattern)))
            continue
        likes = ["%" + re.sub(r"([/%_])", r"/\1", form) + "%" for form in sorted(forms)]
        columns = element.clauses
        every.append(
            or_(*(func.lower(c).like(func.lower(p), escape="/") for c in columns for p in likes))
        )
    return compiler.process(and_(*every), **kw)


def text_candidates(words: list[set[str]]) -> sa.Select:
    """Ids of the tracks whose lower-cased title, artist and path (the text index) hold, between
    them, every trigram of one of the forms of each word in `words` (each a set of lower-cased
    forms): FTS5's query of those trigrams, each a quoted string."""

    def trigrams(form: str) -> str:
        grams = sorted({form[i : i + TRIGRAM] for i in range(len(form) - TRIGRAM + 1)})
        return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)

    match = " AND ".join(
        "(" + " OR ".join(f"({trigrams(form)})" for form in sorted(forms)) + ")" for forms in words
    )
    return select(TEXT_INDEX.c.rowid).where(sa.literal_column(TEXT_INDEX.name).op("MATCH")(match))


def check_text(name: str, text: str | None) -> None:
    """InvalidParameterError if `text`, the parameter `name` a query matches against, holds a
    NUL, which ends SQLite's pattern (`genre=%00` had matched every track with a tag genre) and
    PostgreSQL refuses, or is over MAX_TEXT characters (SQLite: "pattern too complex")."""
    if "\x00" in (text or ""):
        raise InvalidParameterError(f"{name} cannot hold a NUL character")
    if len(text or "") > MAX_TEXT:
        raise InvalidParameterError(f"{name} is at most {MAX_TEXT:,} characters")


def check_words(q: str | None) -> None:
    """InvalidParameterError if the text search `q` holds over MAX_WORDS distinct words."""
    words = len(set((q or "").split()))
    if words > MAX_WORDS:
        raise InvalidParameterError(
            f"q holds {words} words: a text search takes at most {MAX_WORDS}"
        )


def genre_matches(genres: list[str]) -> sa.ColumnElement[bool]:
    """The track is filed under one of `genres` (schema.filed_genres: the predicted genre, or any
    of the tag's), each as typed (% and _ are no wildcards) and named as the catalog files it;
    InvalidParameterError for a genre that check_text refuses (every genre filter, the
    listing's and the searches', comes here)."""
    for genre in genres:
        check_text("genre", genre)
    names = sorted({genre_name(g) for g in genres})
    return Track.id.in_(select(TrackGenre.track_id).where(TrackGenre.genre.in_(names)))
