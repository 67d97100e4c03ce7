"""The `mirsearch` command (this package is the only place that parses arguments or prints):
the catalog and query commands here, the model-building ones in cli/training.py."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import click

from mirsearch.cli.common import PATHS, _emit, _engine, _settings
from mirsearch.cli.training import evaluate, train, train_default
from mirsearch.errors import MirsearchError
from mirsearch.workers import default_workers, ordered_map

log = logging.getLogger(__name__)


def _per_query(
    queries: Sequence,
    run: Callable,
    show: Callable,
    *,
    as_json: bool,
    key: str,
    workers: int | None = 1,
) -> None:
    """`run(engine, query)` for each query on `workers` processes (None: one per core), each with
    its own Engine; one line (or block) per query, in order; a failure doesn't stop the rest."""
    from mirsearch.api import Engine

    settings = _settings()
    workers = default_workers(len(queries)) if workers is None else min(workers, len(queries))
    if workers > 1:  # the catalog migrated once, here, not raced by the workers
        _migrate(settings)
    load = partial(Engine, settings, threads=1 if workers > 1 else None)
    outcomes = ordered_map(load, partial(_attempt, run), queries, workers=workers)
    ok = failed = 0
    for query, outcome in zip(queries, outcomes, strict=True):
        if isinstance(outcome, MirsearchError):
            failed += 1
            if as_json:
                _emit({key: str(query), "error": str(outcome)})
            else:
                click.echo(f"{query}: error: {outcome}", err=True)
            continue
        ok += 1
        if as_json:
            _emit({key: str(query), **outcome})
        else:
            show(query, outcome)
    if ok == 0 and failed:
        sys.exit(1)


def _attempt(run: Callable, engine, query):
    """`run(engine, query)`, or the MirsearchError it raised, handed back as a value."""
    try:
        return run(engine, query)
    except MirsearchError as exc:
        return exc


def _migrate(settings) -> None:
    from mirsearch.catalog import Catalog

    catalog = Catalog(settings.db_url)
    catalog.migrate()
    catalog.close()


def _clips(paths: Iterable[Path]) -> list[Path]:
    """The clips named: files as given, folders expanded into the audio files under them."""
    from mirsearch.indexer import discover

    clips: list[Path] = []
    for path in paths:
        if not path.is_dir():
            clips.append(path)
        elif found := discover([path]):
            clips.extend(found)
        else:
            raise click.ClickException(f"{path}: no audio files in this folder")
    return clips


def _workers_option(f):
    return click.option(
        "--workers",
        type=click.IntRange(1, 64),
        default=None,
        help="Processes answering in parallel [default: one per core, at most one per clip].",
    )(f)


def _show_results(query, payload: dict) -> None:
    click.echo(f"{query}")
    results = payload.get("results") or payload.get("similar") or []
    for rank, r in enumerate(results, 1):
        name = r["title"] or Path(r["path"]).name
        genre = f"  [{r['genre']}]" if r.get("genre") else ""
        click.echo(f"  {rank:2d}. {r['score']:.3f}  {name} @ {r['offset_s']:.1f}s{genre}")
    if not results:
        click.echo("  (no results)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """mirsearch: content-based music search, genre classification and near-duplicate detection."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # What the imports made (torch's ~200,000 objects) lives until exit: kept out of the garbage
    # collector's sweeps, so the command's own imports and work sweep far fewer (~0.08 s of a
    # command that does nothing; the exit's sweep is skipped by `run` anyway).
    gc.freeze()


for command in (train, train_default, evaluate):
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
    type=click.IntRange(1, 64),
    default=None,
    help="Processes decoding and embedding in parallel [default: one per core].",
)
@click.option(
    "--engine",
    "run_on",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where the workers run: local processes, or Ray tasks (pip install 'mirsearch[ray]').",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (e.g. auto, ray://head:10001); default: a local Ray.",
)
@click.option("--prune", is_flag=True, help="Remove catalog rows whose files are gone.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def index(
    paths: tuple[Path, ...],
    workers: int | None,
    run_on: str,
    address: str | None,
    prune: bool,
    as_json: bool,
) -> None:
    """Index folders of audio into the catalog and the vector index (incremental)."""
    if address and run_on != "ray":
        raise click.UsageError("--address goes with --engine ray")
    from tqdm import tqdm

    engine = _engine()
    bar = tqdm(unit="file", disable=None, file=sys.stderr)
    try:
        summary = engine.index_paths(
            paths,
            workers=workers,
            engine=run_on,
            address=address,
            prune=prune,
            progress=bar.update,
            on_total=lambda n: setattr(bar, "total", n) or bar.refresh(),
        )
    except MirsearchError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        bar.close()
    data = summary.to_dict()
    if as_json:
        _emit(data)
    else:
        click.echo(
            "indexed {indexed}, unchanged {unchanged}, failed {failed}, removed {removed}, "
            "duplicates {duplicates} in {seconds:.1f} s ({audio_hours:.2f} h of audio)".format(
                **data
            )
        )
    if data["failed"] and not (data["indexed"] or data["unchanged"]):
        sys.exit(1)


def _genre_option(f):
    return click.option(
        "--genre", "genres", multiple=True, help="Only tracks of this genre (repeatable)."
    )(f)


def _k_option(f):
    return click.option("--k", type=int, default=10, show_default=True, help="How many results.")(f)


@main.command("search")
@click.argument("clips", nargs=-1, required=True, type=PATHS)
@_k_option
@_genre_option
@_workers_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per clip per line.")
def search_cmd(clips, k: int, genres: tuple[str, ...], workers: int | None, as_json: bool) -> None:
    """Find the catalog songs that sound most like each clip (or each audio file in a folder)."""
    run = partial(_search, k=k, genres=genres)
    _per_query(_clips(clips), run, _show_results, as_json=as_json, key="query", workers=workers)


def _search(engine, clip: Path, *, k: int, genres: tuple[str, ...]) -> dict:
    return {"results": [r.to_dict() for r in engine.search(clip, k=k, genres=genres)]}


@main.command()
@click.argument("track_id", type=int)
@_k_option
@_genre_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def similar(track_id: int, k: int, genres: tuple[str, ...], as_json: bool) -> None:
    """More like this: catalog songs that sound like a catalog track."""
    run = partial(_similar, k=k, genres=genres)
    _per_query([track_id], run, _show_results, as_json=as_json, key="track_id")


def _similar(engine, track_id: int, *, k: int, genres: tuple[str, ...]) -> dict:
    return {"results": [r.to_dict() for r in engine.similar(track_id, k=k, genres=genres)]}


@main.command()
@click.argument("clips", nargs=-1, required=True, type=PATHS)
@_workers_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per clip per line.")
def match(clips, workers: int | None, as_json: bool) -> None:
    """Which catalog tracks each upload contains (near-duplicates: re-encodes, crops, edits);
    a folder stands for the audio files under it."""

    def show(clip, payload):
        click.echo(f"{clip}")
        for m in payload["matches"]:
            click.echo(
                f"  DUPLICATE of {m['title'] or Path(m['path']).name} (track {m['track_id']}): "
                f"score {m['score']:.2f}, upload {m['query_offset_s']:.1f}s = track "
                f"{m['track_offset_s']:.1f}s for {m['duration_s']:.1f}s, speed {m['speed']:.3f}"
            )
        if not payload["matches"]:
            click.echo("  no catalog track found in it")

    _per_query(_clips(clips), _match, show, as_json=as_json, key="query", workers=workers)


def _match(engine, clip: Path) -> dict:
    return {"matches": [m.to_dict() for m in engine.match(clip)]}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def dupes(as_json: bool) -> None:
    """Report every near-duplicate group in the catalog, with its evidence."""
    try:
        groups = _engine().dupes()
    except MirsearchError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        _emit({"groups": groups})
        return
    for n, group in enumerate(groups, 1):
        names = ", ".join(
            f"{t['track_id']}:{t['title'] or Path(t['path']).name} (speed {t['speed']:g})"
            for t in group["tracks"]
        )
        click.echo(f"group {n}: {names}")
    click.echo(f"{len(groups)} near-duplicate groups")


@main.command()
@click.argument("files", nargs=-1, required=True, type=PATHS)
@click.option("--timeline", is_flag=True, help="Also the genre of every window.")
@click.option(
    "--similar",
    "similar_k",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    help="How many similar catalog tracks to list (0: none).",
)
@_workers_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line.")
def classify(files, timeline: bool, similar_k: int, workers: int | None, as_json: bool) -> None:
    """Genre probabilities and tags of each file (or each audio file in a folder), and the most
    similar catalog tracks."""

    def show(path, payload):
        top = sorted(payload["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        click.echo(
            f"{path}: {payload['genre']}  (" + ", ".join(f"{g} {p:.2f}" for g, p in top) + ")"
        )
        if payload["tags"]:
            click.echo(
                "  tags: " + ", ".join(f"{t['tag']} {t['score']:.2f}" for t in payload["tags"])
            )
        for w in payload.get("timeline", []):
            click.echo(f"  {w['offset_s']:7.1f}s {w['genre']} {w['probability']:.2f}")
        for r in payload["similar"]:
            click.echo(f"  similar: {r['score']:.3f} {r['title'] or Path(r['path']).name}")

    run = partial(_classify, similar_k=similar_k, timeline=timeline)
    _per_query(_clips(files), run, show, as_json=as_json, key="query", workers=workers)


def _classify(engine, path: Path, *, similar_k: int, timeline: bool) -> dict:
    return engine.classify(path, similar_k=similar_k, timeline=timeline).to_dict()


@main.command()
@click.option("--q", default=None, help="Text in title, artist or path.")
@click.option("--genre", default=None, help="Only this genre.")
@click.option(
    "--status",
    default="indexed",
    show_default=True,
    type=click.Choice(["indexed", "failed", "pending", "all"]),
)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--per-page", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per track per line.")
def tracks(q, genre, status, page, per_page, as_json: bool) -> None:
    """List the catalog."""
    engine = _engine()
    rows, total = engine.catalog.list_tracks(
        q=q, genre=genre, status=None if status == "all" else status, page=page, per_page=per_page
    )
    for row in rows:
        if as_json:
            _emit(row.to_dict())
        else:
            extra = f"  error: {row.error}" if row.error else ""
            click.echo(
                f"{row.id:6d}  {row.status:8s} {row.duration_s or 0:7.1f}s  "
                f"{(row.genre or '-'):12s} {row.title or Path(row.path).name}{extra}"
            )
    if not as_json:
        click.echo(f"{len(rows)} of {total} tracks")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per genre per line.")
def genres(as_json: bool) -> None:
    """List the genres in the catalog (predicted and from tags) with track counts."""
    for genre, count in _engine().catalog.genres():
        if as_json:
            _emit({"genre": genre, "count": count})
        else:
            click.echo(f"{count:6d}  {genre}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def stats(as_json: bool) -> None:
    """Summarise the catalog: tracks by status, hours of audio, genres, index generation."""
    data = _engine().catalog.stats()
    if as_json:
        _emit(data)
        return
    for key, value in data.items():
        click.echo(f"{key}: {value}")


@main.group()
def db() -> None:
    """Database schema migrations (applied automatically on first use)."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration."""
    from mirsearch.catalog import Catalog

    Catalog(_settings().db_url).upgrade()
    click.echo("database is at the newest schema")


@db.command()
@click.argument("revision", default="base")
def downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (default: an empty database)."""
    from mirsearch.catalog import Catalog

    Catalog(_settings().db_url).downgrade(revision)
    click.echo(f"database downgraded to {revision}")


@main.command()
@click.argument("directory", type=PATHS)
@click.option("--tracks", "n_tracks", type=click.IntRange(1, 100), default=8, show_default=True)
def demo(directory: Path, n_tracks: int) -> None:
    """Write a small demo catalog of synthetic music (used when ../shared/audio is absent)."""
    from mirsearch.demo import write_demo_catalog

    for path in write_demo_catalog(directory, n_tracks=n_tracks):
        click.echo(path)


@main.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the web site and JSON API with waitress."""
    from waitress import serve as waitress_serve

    from web import create_app

    settings = _settings()
    host = host or settings.server.host
    port = port or settings.server.port
    click.echo(f"serving on http://{host}:{port}", err=True)
    waitress_serve(create_app(), host=host, port=port, threads=settings.server.threads)
