"""What every `mirsearch` command module shares: path options, settings, JSON output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from mirsearch.config import Settings
from mirsearch.errors import InvalidParameterError

SURROGATES = re.compile("[\ud800-\udfff]")


class Given(click.Path):
    """click.Path refusing an empty one: Path("") is the current folder, and `index "$MUSIC"`
    with the variable unset had indexed (and with --prune pruned) whatever tree it ran in."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("an empty path names no file or folder (a variable left unset?)", param, ctx)
        return super().convert(value, param, ctx)


PATHS = Given(exists=False, readable=False, path_type=Path)  # each file's problem its own


MAX_WORKERS = 64  # the most worker processes a command takes (`--workers`)


class Whole(click.IntRange):
    """click.IntRange, a value that is no integer told as such ("'1.5' is not a valid
    integer"; click's own says "integer range", as if the range were the problem)."""

    name = "integer"


class Number(click.FloatRange):
    """click.FloatRange, a value that is no number told as such (click's: "float range")."""

    name = "number"


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except InvalidParameterError as exc:  # a bad MIRSEARCH_* variable
        raise click.UsageError(str(exc)) from exc


def open_engine(*, create: bool = False):
    """The Engine of the settings; its catalog made where there is none only with `create`
    (by `index`: a command that only reads says there is no catalog instead)."""
    from mirsearch.api import Engine

    return Engine(load_settings(), create=create)


def say(line: str) -> None:
    """A line of plain output, its control characters (a tag's newline, a terminal's escape
    sequence) shown escaped: one line, and nothing a terminal would act on."""
    click.echo("".join(c if c.isprintable() else repr(c)[1:-1] for c in line))


def genre_label(genre: str | None, tag_genre: str | None) -> str:
    """A track's genre as the site labels it: the model's, and the file's tag beside it where it
    files the track under another ('electronic · tagged jazz'; `search --genre jazz` had listed
    its hits as electronic alone)."""
    from mirsearch.schema import tag_beside

    tagged = tag_beside(genre, tag_genre)
    if tagged is None:
        return genre or ""
    return f"{genre} · tagged {tagged}" if genre else f"tagged {tagged}"


def emit(obj: dict) -> None:
    """One JSON object on a line of UTF-8, whatever it holds: the bytes of a file name that is
    not UTF-8, which Python keeps as lone surrogates, are written as JSON's escapes of them (a
    raw byte made the line, and a client's whole decoded output, invalid); JSON reads them back
    as the same text, which `os.fsencode` turns into the name's bytes."""
    line = json.dumps(obj, ensure_ascii=False)
    click.echo(SURROGATES.sub(lambda m: f"\\u{ord(m.group()):04x}", line))
