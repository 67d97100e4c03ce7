"""The `mirsearch` command (this package is the only place that parses arguments or prints):
the catalog commands here, the query ones in cli/queries.py, the model-building ones in
cli/training.py."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from mirsearch.cli.common import (
    MAX_WORKERS,
    PATHS,
    Whole,
    emit,
    genre_label,
    load_settings,
    open_engine,
    say,
)
from mirsearch.cli.queries import classify, match, search_cmd, similar
from mirsearch.cli.training import evaluate, train, train_default
from mirsearch.config import MAX_PAGE
from mirsearch.errors import MirsearchError

INTERRUPTED = "what was committed is kept; run the same command again to go on"  # Ctrl-C, TERM


class _Commands(click.Group):
    """The commands, each of whose MirsearchErrors (a bad file, catalog or parameter) and errors
    of the system (permissions, a path that is a file) is told as its one-line message with exit
    status 1, wherever it comes from: never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MirsearchError as exc:
            raise click.ClickException(str(exc)) from exc
        except BrokenPipeError:  # `mirsearch … | head`: see `run`
            raise
        except OSError as exc:  # a home that is a file, a folder without write permission...
            told = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else exc
            raise click.ClickException(str(told)) from exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """mirsearch: content-based music search, genre classification and near-duplicate detection."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # What the imports made (torch's ~200,000 objects) lives until exit: kept out of the garbage
    # collector's sweeps, so the command's own imports and work sweep far fewer (~0.08 s of a
    # command that does nothing; the exit's sweep is skipped by `run` anyway).
    gc.freeze()


for command in (search_cmd, similar, match, classify, train, train_default, evaluate):
    main.add_command(command)


def run() -> None:
    """The `mirsearch` console script: `main`, then out of the process without the interpreter's
    teardown, where torch deregisters the operators of its 144 Python-made libraries one kernel
    at a time (~0.4 s of every command). Output is flushed first; nothing else waits for exit:
    the catalog is committed and workers are joined before `main` returns."""
    try:
        main()
        status = 0
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else int(done.code is not None)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe (`mirsearch … | head`)
            stream.flush()
    os._exit(status)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=PATHS)
@click.option(
    "--workers",
    type=Whole(1, MAX_WORKERS),
    default=None,
    help="Processes decoding and embedding in parallel [default: one per core].",
)
@click.option(
    "--engine",
    "run_on",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where the workers run: local processes, or Ray actors (pip install -e '.[ray]').",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (e.g. auto, ray://head:10001); default: a local Ray.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Remove the catalog's tracks under PATHS whose files are gone (a PATH deleted whole too).",
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Every track under PATHS analysed again (what this version stores of a track, for "
    "those indexed by an older one), into the index as it is, searchable meanwhile; or into a "
    "new index where the index folder is lost.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def index(
    paths: tuple[Path, ...],
    workers: int | None,
    run_on: str,
    address: str | None,
    prune: bool,
    rebuild: bool,
    as_json: bool,
) -> None:
    """Index folders of audio into the catalog and the vector index (incremental)."""
    if address and run_on != "ray":
        raise click.UsageError("--address goes with --engine ray")
    from tqdm import tqdm

    bar = tqdm(unit="file", disable=None, file=sys.stderr)
    try:
        with _stopped_as_interrupted():  # a service stopped, a job cancelled: as Ctrl-C
            summary = open_engine(create=True).index_paths(
                paths,
                workers=workers,
                engine=run_on,
                address=address,
                prune=prune,
                rebuild=rebuild,
                progress=bar.update,
                on_total=lambda n: setattr(bar, "total", n) or bar.refresh(),
            )
    except KeyboardInterrupt:  # click says "Aborted!" after this
        bar.close()
        click.echo(f"interrupted: {INTERRUPTED}", err=True)
        raise
    finally:
        bar.close()
    data = summary.to_dict()
    if as_json:
        emit(data)
    else:
        summary_line = (
            "indexed {indexed}, unchanged {unchanged}, moved {moved}, failed {failed}, changing "
            "{changing}, removed {removed}, missing {missing}, duplicates {duplicates} in "
            "{seconds:.1f} s "
            "({audio_hours:.2f} h of audio)"
        )
        click.echo(summary_line.format(**data))
    if data["failed"] and not (data["indexed"] or data["unchanged"] or data["moved"]):
        sys.exit(1)


@contextlib.contextmanager
def _stopped_as_interrupted() -> Iterator[None]:
    """SIGTERM taken as Ctrl-C while the block runs, and the handler before restored after: a
    command run in a longer-lived process (a test's) had left it set."""
    before = signal.signal(signal.SIGTERM, functools.partial(_interrupt, os.getpid()))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupt(owner: int, signum: int, frame) -> None:
    """KeyboardInterrupt in the process `owner` that set this handler. A process forked from
    it (a worker) that is stopped before it sets its own handlers ends at once: raised there,
    the interrupt had unwound the child's copy of its parent's stack (under pytest it ran the
    session's teardown, which stopped the suite's PostgreSQL server mid-run)."""
    if os.getpid() != owner:
        os._exit(128 + signum)
    raise KeyboardInterrupt


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def dupes(as_json: bool) -> None:
    """Report every near-duplicate group in the catalog, with its evidence."""
    groups = open_engine().dupes()
    if as_json:
        emit({"groups": groups})
        return
    for n, group in enumerate(groups, 1):
        names = ", ".join(
            f"{t['track_id']}:{t['title'] or Path(t['path']).name} (speed {t['speed']:g})"
            for t in group["tracks"]
        )
        say(f"group {n}: {names}")
    click.echo(f"{len(groups)} near-duplicate groups")


@main.command()
@click.option(
    "--q",
    default=None,
    help="Words, each in the title, artist or path (case aside); a word of 1 or 2 characters "
    "only whole.",
)
@click.option("--genre", default=None, help="Only this genre.")
@click.option(
    "--status",
    default="indexed",
    show_default=True,
    type=click.Choice(["indexed", "failed", "pending", "all"]),
)
@click.option("--page", type=Whole(1, MAX_PAGE), default=1, show_default=True)
@click.option("--per-page", type=Whole(1, 10_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per track per line.")
def tracks(q, genre, status, page, per_page, as_json: bool) -> None:
    """List the catalog."""
    engine = open_engine()
    rows, total = engine.catalog.list_tracks(
        q=q, genre=genre, status=None if status == "all" else status, page=page, per_page=per_page
    )
    for row in rows:
        if as_json:  # `id` as it always was, `track_id` as search results and HTTP say it
            emit(row.to_dict() | {"track_id": row.id})
        else:
            extra = f"  error: {row.error.removeprefix(f'{row.path}: ')}" if row.error else ""
            label = genre_label(row.genre, row.tag_genre) or "-"
            say(
                f"{row.id:6d}  {row.status:8s} {row.duration_s or 0:7.1f}s  "
                f"{label:12s} {row.title or Path(row.path).name}{extra}"
            )
    if not as_json:
        click.echo(f"{len(rows)} of {total} tracks{'' if total else _genre_hint(engine, genre)}")


def _genre_hint(engine, genre: str | None) -> str:
    """Why a listing by `genre` is empty, when the genre is none of the catalog's (a typo)."""
    try:
        engine.allowed_tracks([genre] if genre else [])
    except MirsearchError as exc:
        return f" ({exc})"
    return ""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per genre per line.")
def genres(as_json: bool) -> None:
    """List the genres in the catalog (predicted and from tags) with track counts."""
    for genre, count in open_engine().catalog.genres():
        if as_json:
            emit({"genre": genre, "count": count})
        else:
            say(f"{count:6d}  {genre}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def stats(as_json: bool) -> None:
    """Summarise the catalog: tracks by status, hours of audio, genres, index generation, kind
    and window vectors."""
    data = open_engine().stats()
    if as_json:
        emit(data)
        return
    for key, value in data.items():
        say(f"{key}: {value}")


@main.group()
def db() -> None:
    """Database schema migrations (applied automatically on first use)."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration."""
    from mirsearch.catalog import Catalog

    Catalog(load_settings().db_url).upgrade()
    click.echo("database is at the newest schema")


@db.command()
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do it without asking (what a downgrade drops is lost).")
def downgrade(revision: str, yes: bool) -> None:
    """Revert migrations down to REVISION ("base": an empty database). The tables and columns
    a migration added go with their data (prints, tags): a later upgrade does not bring it back,
    re-indexing does (with a new model or a fresh catalog)."""
    from alembic.util import CommandError

    from mirsearch.catalog import Catalog
    from mirsearch.migrations import SCHEMA_REVISION, known_revision

    if not revision.strip():
        raise click.BadParameter("name a revision (as in migrations/versions) or base")
    steps_back = re.fullmatch(r"-\d+", revision)  # Alembic's relative revisions: -1, -2...
    if revision != "base" and not steps_back and not known_revision(revision):
        raise click.ClickException(  # before asking: a typo had been asked about, then refused
            f"no revision {revision!r}: name one of migrations/versions by the number its file "
            f"name begins with (0001 to {SCHEMA_REVISION}), or base"
        )
    catalog = Catalog(load_settings().db_url)
    before = catalog.revision()
    if not yes:
        click.confirm(
            f"Downgrade the catalog to {revision}, dropping what later ones added?", abort=True
        )
    try:
        catalog.downgrade(revision)
    except CommandError as exc:
        raise click.ClickException(f"{exc} (the revisions are in migrations/versions)") from exc
    after = catalog.revision()
    if after == before:  # `head`, or a revision it is at or under: Alembic does nothing
        click.echo(f"database is at {before or 'base'} already: nothing downgraded")
    else:
        click.echo(f"database downgraded to {after or 'base'}")


@main.command()
@click.argument("directory", type=PATHS)
@click.option("--tracks", "n_tracks", type=Whole(1, 100), default=8, show_default=True)
def demo(directory: Path, n_tracks: int) -> None:
    """Write a small demo catalog of synthetic music (used when ../shared/audio is absent)."""
    from mirsearch.demo import write_demo_catalog

    for path in write_demo_catalog(directory, n_tracks=n_tracks):
        click.echo(path)


@main.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=Whole(1, 65535), default=None, help="Port (default 8000).")
@click.option(
    "--workers",
    type=Whole(1, MAX_WORKERS),
    default=None,
    help="Server processes, each loading the model and the index [default: one per core].",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the web site and JSON API with gunicorn, a worker process per core."""
    from mirsearch.catalog import Catalog
    from mirsearch.model_card import read_card
    from web.server import serve as gunicorn_serve

    settings = load_settings()
    read_card(settings.model_path)  # a model, or a catalog, that cannot be used is told before
    catalog = Catalog(settings.db_url)  # any worker starts, in one line
    catalog.migrate()
    catalog.close()
    host = host or settings.server.host
    port = port or settings.server.port
    workers = workers or settings.server.workers or os.cpu_count() or 1
    gunicorn_serve(settings, host=host, port=port, workers=workers)
