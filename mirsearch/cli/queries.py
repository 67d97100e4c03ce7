"""The query commands of `mirsearch`: search, similar, match and classify, one line per clip,
answered on a pool of workers each holding its own Engine (workers.py)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import click

from mirsearch.cli.common import MAX_WORKERS, Given, Whole, emit, genre_label, load_settings, say
from mirsearch.config import MAX_SIMILAR, SearchConfig
from mirsearch.errors import AudioError, MirsearchError, NotFoundError
from mirsearch.workers import default_workers, ordered_map

# The clips as given: a line names its clip by the text its caller passed (`./a.mp3`, not the
# `a.mp3` a Path makes of it); each clip's problem is its own line
CLIPS = Given(exists=False, readable=False)


def _per_query(
    queries: Sequence,
    run: Callable,
    show: Callable,
    *,
    as_json: bool,
    key: str,
    workers: int | None = 1,
    torch: bool = True,
) -> None:
    """`run(engine, query)` for each query on `workers` processes (None: one per core), each with
    its own Engine; one line (or block) per query, in order; a failure doesn't stop the rest.
    `torch`: whether `run` needs torch, then imported once before the workers fork (`match`
    reads uploads without it, matcher.py, unless the model's matching branch is not a CNN)."""
    workers = default_workers(len(queries)) if workers is None else min(workers, len(queries))
    outcomes = iter(_outcomes(run, queries, workers=workers, torch=torch))
    ok = failed = 0
    lost = None  # the pool's end (a worker killed): the answer of every query still unanswered
    for query in queries:
        try:
            outcome = lost or next(outcomes)
        except MirsearchError as exc:
            outcome = lost = exc
        if isinstance(outcome, MirsearchError):
            failed += 1
            if as_json:
                emit({key: query, "error": str(outcome)})
            else:
                click.echo(f"{query}: error: {_unnamed(str(outcome), query)}", err=True)
            continue
        ok += 1
        if as_json:
            emit({key: query, **outcome})
        else:
            show(query, outcome)
    if ok == 0 and failed:
        sys.exit(1)


def _outcomes(run: Callable, queries: Sequence, *, workers: int, torch: bool) -> Iterable:
    """Each query's answer, or the MirsearchError it met, in order."""
    from mirsearch.api import Engine

    settings = load_settings()
    if workers > 1:
        try:
            _migrate(settings)  # the catalog migrated once, here, not raced by the workers
        except MirsearchError as exc:  # what every query would meet: each one's line says it
            return [exc] * len(queries)
        if torch:
            import mirsearch.embeddings  # noqa: F401 torch imported once, here; the forks share it
    elif not torch:
        from threadpoolctl import threadpool_limits

        # NumPy's matcher multiplies small matrices: a BLAS thread a core beside it took 1.8x
        # the CPU for no speed (60 clips, a 3 min upload of other music); FAISS keeps its own
        threadpool_limits(1, user_api="blas")
    load = partial(Engine, settings, threads=1 if workers > 1 else None, create=False)
    return ordered_map(load, partial(_attempt, run), queries, workers=workers)


def _unnamed(message: str, query: str | int) -> str:
    """An error's message without the clip's name it begins with, as given or as a Path makes
    it (`./a.mp3: ...` says it once, first)."""
    names = [str(query), str(Path(query))] if isinstance(query, str) else [str(query)]
    for name in names:
        message = message.removeprefix(f"{name}: ")
    return message


def _attempt(run: Callable, engine, query: str | int):
    """`run(engine, query)` (a path given as text run on its Path), or the MirsearchError it
    raised, handed back as a value."""
    try:
        if isinstance(query, str):
            query = Path(query)
            if query.is_dir():  # one `_clips` found no audio in
                raise AudioError(f"{query}: no audio files in this folder")
        return run(engine, query)
    except MirsearchError as exc:
        return exc


def _migrate(settings) -> None:
    from mirsearch.catalog import Catalog

    catalog = Catalog(settings.db_url, create=False)
    with contextlib.suppress(NotFoundError):  # none: each query says so (classify needs none)
        catalog.migrate()
    catalog.close()


def _clips(given: Iterable[str]) -> list[str]:
    """The clips named, as their lines name them: files as given (`./a.mp3` stays so, for the
    script that looks its lines up by what it passed), folders expanded into the audio files
    under them."""
    from mirsearch.files import discover

    clips: list[str] = []
    for name in given:
        if not Path(name).is_dir():
            clips.append(name)
        else:  # a folder without audio files stays, to be answered by an error line
            clips.extend([str(p) for p in discover([Path(name)], unstorable=True)] or [name])
    return clips


def _workers_option(f):
    return click.option(
        "--workers",
        type=Whole(1, MAX_WORKERS),
        default=None,
        help="Processes answering in parallel [default: one per core, at most one per clip].",
    )(f)


def _show_results(query, payload: dict) -> None:
    say(f"{query}")
    results = payload["results"]
    for rank, r in enumerate(results, 1):
        name = r["title"] or Path(r["path"]).name
        label = genre_label(r.get("genre"), r.get("tag_genre"))
        genre = f"  [{label}]" if label else ""
        upload = f" (query {r['query_offset_s']:.1f}s)" if r["query_offset_s"] > 0 else ""
        say(f"  {rank:2d}. {r['score']:.3f}  {name} @ {r['track_offset_s']:.1f}s{upload}{genre}")
    if not results:
        click.echo("  (no results)")


def _genre_option(f):
    return click.option(
        "--genre", "genres", multiple=True, help="Only tracks of this genre (repeatable)."
    )(f)


def _k_option(f):
    return click.option(
        "--k",
        type=Whole(1, SearchConfig.max_k),
        default=SearchConfig.k,
        show_default=True,
        help="How many results.",
    )(f)


@click.command("search")
@click.argument("clips", nargs=-1, required=True, type=CLIPS)
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


@click.command()
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


@click.command()
@click.argument("clips", nargs=-1, required=True, type=CLIPS)
@_workers_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per clip per line.")
def match(clips, workers: int | None, as_json: bool) -> None:
    """Which catalog tracks each upload contains (near-duplicates: re-encodes, crops, edits);
    a folder stands for the audio files under it."""

    def show(clip, payload):
        say(f"{clip}")
        for m in payload["matches"]:
            say(
                f"  DUPLICATE of {m['title'] or Path(m['path']).name} (track {m['track_id']}): "
                f"score {m['score']:.2f}, upload {m['query_offset_s']:.1f}s = track "
                f"{m['track_offset_s']:.1f}s for {m['duration_s']:.1f}s, speed {m['speed']:.3f}"
            )
        if not payload["matches"]:
            click.echo("  no catalog track found in it")

    _per_query(
        _clips(clips), _match, show, as_json=as_json, key="query", workers=workers, torch=False
    )


def _match(engine, clip: Path) -> dict:
    return {"matches": [m.to_dict() for m in engine.match(clip)]}


@click.command()
@click.argument("files", nargs=-1, required=True, type=CLIPS)
@click.option("--timeline", is_flag=True, help="Also the genre of every window.")
@click.option(
    "--similar",
    "similar_k",
    type=Whole(0, MAX_SIMILAR),
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
        say(f"{path}: {payload['genre']}  (" + ", ".join(f"{g} {p:.2f}" for g, p in top) + ")")
        if payload["tags"]:
            say("  tags: " + ", ".join(f"{t['tag']} {t['score']:.2f}" for t in payload["tags"]))
        for w in payload.get("timeline", []):
            say(f"  {w['offset_s']:7.1f}s {w['genre']} {w['probability']:.2f}")
        for r in payload["similar"]:
            say(f"  similar: {r['score']:.3f} {r['title'] or Path(r['path']).name}")

    run = partial(_classify, similar_k=similar_k, timeline=timeline)
    _per_query(_clips(files), run, show, as_json=as_json, key="query", workers=workers)


def _classify(engine, path: Path, *, similar_k: int, timeline: bool) -> dict:
    return engine.classify(path, similar_k=similar_k, timeline=timeline).to_dict()
