"""What indexing learns about each file, computed where the work runs: in this process, a local
process pool (workers.py), or Ray tasks on a cluster (`--engine ray`); the indexer commits the
results.

Importing this module does not import torch (`analyse_all` does, when there is something to
analyse): an indexing run starts decoding its first files (`prefetch.DecodeAhead`) before torch
loads, and one with nothing to do never loads it.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import pickle
import signal
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from mirsearch import audio, containers
from mirsearch.config import Settings
from mirsearch.containers import AudioInfo
from mirsearch.errors import MirsearchError
from mirsearch.prefetch import DecodeAhead, identity
from mirsearch.vocabulary import top_tags
from mirsearch.workers import ordered_map

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
RAY_CONNECT_S = 5.0  # how long a Ray cluster named by --address has to answer
# Ray 2.60 asks a token of a run joining a cluster at an address it is given, and sends one only
# with RAY_AUTH_MODE=token (InvalidAuthToken in its own lines); "auto" finds it by itself
RAY_TOKEN = (
    "a cluster asking a token, as `ray start` makes it, is joined at its address with "
    "RAY_AUTH_MODE=token and the token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN"
)


@dataclass(frozen=True)
class FileAnalysis:
    """What a worker learns about one file: all the catalog and the index need, or an error."""

    path: str
    sha256: str
    size_bytes: int
    mtime: float
    error: str | None = None
    info: AudioInfo | None = None
    descriptors: dict | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    tags: list[dict] = field(default_factory=list)  # best tags first: {"tag", "score", "kind"}
    vectors: np.ndarray | None = None
    track_vector: np.ndarray | None = None
    fingerprint: np.ndarray | None = None  # the verification print (see fingerprint.py)
    waveform: bytes | None = None  # features.peak_envelope: the track page's waveform
    sounding: np.ndarray | None = None  # (n,) bool: the windows of `vectors` with sound
    changing: bool = False  # changed while read: `error` says so, nothing is to be recorded


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# glibc's mallopt parameters. By default glibc hands every block over 128 kB (a decoded track, a
# spectrogram, a layer's activations) back to the kernel when freed and takes it again, zeroed, a
# page fault at a time, for the next file. Keeping blocks up to 32 MB in the heap, and the heap
# untrimmed below 1 GB, cut the kernel time of indexing ../shared/audio (47 files, 2 workers)
# from 2.9 to 2.0 s and the run by ~3 %; its peak memory grew ~5 %.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
    """Let this process reuse the large blocks it frees (glibc; elsewhere nothing changes)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's ceiling for this parameter
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)


class Analyser:
    """Decode → descriptors → embeddings for one file at a time; holds the model. Files in
    `ahead` (path → a file `DecodeAhead` wrote) are read decoded, once."""

    def __init__(
        self,
        settings: Settings,
        *,
        threads: int | None = None,
        ahead: Mapping[str, Path] | None = None,
    ):
        from mirsearch.embeddings import Embedder
        from mirsearch.features import describe, peak_envelope

        keep_freed_memory()
        self.settings = settings
        self.embedder = Embedder(
            settings.model_path,
            config=settings.embedding,
            threads=threads,
            silence_dbfs=settings.audio.silence_dbfs,
        )
        self.describe, self.envelope = describe, peak_envelope
        self.ahead = dict(ahead or {})

    def __call__(self, path: Path) -> FileAnalysis:
        """What `path` holds, or its error; nothing to record (`changing`) where the file
        changed while it was read (see `_unless_changed`)."""
        path = Path(path)
        try:
            stat = path.stat()
        except OSError as exc:
            return _unreadable(path, exc)
        return _unless_changed(self._analysed(path, stat), path, stat)

    def _analysed(self, path: Path, stat: os.stat_result) -> FileAnalysis:
        """`path`, as `stat` found it, hashed, decoded and analysed."""
        base = {"path": str(path), "size_bytes": stat.st_size, "mtime": stat.st_mtime}
        try:
            open(path, "rb").close()  # one that cannot be read is an OSError, not "not audio"
            containers.probe(path, config=self.settings.audio)  # before reading it all to hash
            sha = file_sha256(path)
        except MirsearchError as exc:  # not audio (a 10 GB one had been hashed first), too long
            return FileAnalysis(sha256="", error=str(exc), **base)
        except OSError as exc:  # unreadable: recorded, tried next run; or gone since the walk
            return _unreadable(path, exc)
        try:
            decoded = self._decoded(path, stat)
            analysis = self.embedder.analyse(decoded.samples, hop_s=self.settings.embedding.hop_s)
            descriptors = self.describe(
                decoded.samples, decoded.sample_rate, mel_db=analysis.mel_db
            )
        except MirsearchError as exc:
            return FileAnalysis(sha256=sha, error=str(exc), **base)
        except Exception as exc:  # a file must never stop the run: record it and go on
            log.exception("unexpected failure on %s", path)
            message = f"{path}: could not be analysed ({type(exc).__name__}: {exc})"
            return FileAnalysis(sha256=sha, error=message, **base)
        probabilities = dict(
            zip(self.embedder.labels, map(float, analysis.probabilities), strict=True)
        )
        return FileAnalysis(
            sha256=sha,
            info=decoded.info,
            descriptors=descriptors.to_dict(),
            probabilities=probabilities,
            tags=top_tags(analysis.tag_probabilities, self.embedder.tag_labels),
            vectors=analysis.vectors,
            track_vector=analysis.track_vector,
            fingerprint=analysis.fingerprint,
            waveform=self.envelope(decoded.samples),
            sounding=analysis.sounding,
            **base,
        )

    def _decoded(self, path: Path, stat: os.stat_result) -> audio.Decoded:
        """The file decoded: as `ahead` decoded it if the file is the same (`stat`, taken
        before its hash), else now (a file rewritten meanwhile had been stored with the new
        content's hash and the old content's audio, then skipped as unchanged for ever)."""
        ready = self.ahead.pop(str(path), None)
        if ready is not None:
            try:
                with open(ready, "rb") as f:
                    decoded_from, decoded = pickle.load(f)
                ready.unlink()
            except FileNotFoundError:  # a run that stops takes the folder along, workers busy
                decoded_from = None
            if decoded_from == identity(stat):
                return decoded
        return audio.load(path, config=self.settings.audio)


def _unreadable(path: Path, exc: OSError) -> FileAnalysis:
    """A file that cannot be read, recorded as failed; or one gone since the walk (removed, or
    its folder renamed midway), not recorded (`changing`): its row had stayed as failed at a
    path that no longer is, and a folder renamed during a run left one a file."""
    if isinstance(exc, FileNotFoundError):
        what = "went away before it was read (removed or renamed)"
        return _nothing(path, f"{path}: not indexed: the file {what}", changing=True)
    return _nothing(path, f"{path}: the file cannot be read ({exc.strerror or exc})")


def _nothing(path: Path, error: str, *, changing: bool = False) -> FileAnalysis:
    """A result holding nothing of `path` but `error`."""
    return FileAnalysis(
        path=str(path), sha256="", size_bytes=0, mtime=0.0, error=error, changing=changing
    )


def _unless_changed(result: FileAnalysis, path: Path, before: os.stat_result) -> FileAnalysis:
    """`result`, unless `path` is no longer the file `before` described; then nothing of it is
    to be recorded (`changing`). Its stat, hash and decoding each open the path: one of a file
    replaced meanwhile (a sync tool, a re-export) had stored one song's vectors under another's
    hash, or a healthy file as truncated, and every later run called it unchanged. (A write in
    place within the clock tick of `before` leaves the times as they were: it goes unseen.)"""
    again = "run `mirsearch index` again once it is still"
    try:
        if identity(path.stat()) == identity(before):
            return result
        what = f"changed while it was being read (replaced or written to): {again}"
    except FileNotFoundError:
        what = "went away while it was being read (removed or renamed)"
    except OSError:  # its permissions changed (a new ctime), or its disk went
        what = f"changed while it was being read: {again}"
    return _nothing(path, f"{path}: not indexed: the file {what}", changing=True)


def analyse_all(
    paths: list[Path],
    settings: Settings,
    *,
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    ahead: DecodeAhead | None = None,
) -> Iterator[FileAnalysis]:
    """Analyse `paths`, yielding results in order, with the model loaded once per worker; the
    local engine stops `ahead` once torch is loaded and reads the files it decoded meanwhile.
    (A generator: nothing here runs, torch is not imported and `ahead` goes on decoding, until
    the first result is asked for.)"""
    if engine not in ENGINES:
        raise MirsearchError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if not paths:  # nothing to analyse: no model to load
        return
    keep_freed_memory()  # here too: forked workers inherit it, and this process checks duplicates
    if engine == "ray":
        yield from _on_ray(paths, settings, workers=workers, address=address)
        return
    if workers > 1:
        from mirsearch.checkpoints import load_checkpoint

        # torch imported once, here, for the forked workers to share (each importing its own
        # took ~3 CPU-s more), and a model that cannot load told here, not as a broken pool
        load_checkpoint(settings.model_path)
    decoded = {}
    if ahead is not None:
        decoded = ahead.stop()
        log.info("%d files decoded while torch loaded", len(decoded))
    load = partial(Analyser, settings, threads=1 if workers > 1 else None, ahead=decoded)
    yield from ordered_map(load, Analyser.__call__, paths, workers=workers)


# -- Ray: one actor per worker, each holding the model ------------------------------------------


def _on_ray(paths: list[Path], settings: Settings, *, workers: int, address: str | None):
    """Ray actors analyse the files; every node must see them at the same paths (shared storage).

    With no `address` a local Ray with `workers` CPUs is started and stopped, also where a
    cluster runs (`ray start`, RAY_ADDRESS), which ray.init would otherwise have joined, refusing
    the CPUs asked; with one (e.g. "auto" or "ray://head:10001") the run joins that cluster and
    uses `workers` of its CPUs.
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise MirsearchError("--engine ray needs Ray: pip install 'mirsearch[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            _reachable(address)
            options = {"address": address}
        else:  # "local": with None, ray.init joins a cluster RAY_ADDRESS or `ray start` names
            options = {"address": "local", "num_cpus": max(1, workers)}
        stopping = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(include_dashboard=False, log_to_driver=False, **options)
        except (ValueError, ConnectionError) as exc:  # an address Ray cannot read, or join
            hint = f" ({RAY_TOKEN})" if isinstance(exc, ConnectionError) else ""
            raise MirsearchError(f"cannot join the Ray cluster at {address}: {exc}{hint}") from None
        finally:  # Ray's own handler had stopped the run with a crash dump, not its message
            signal.signal(signal.SIGTERM, stopping)
        free = int(ray.available_resources().get("CPU", 0))
        if address and workers > free:  # the actors past the free CPUs wait, and all with them
            log.warning(
                "%d workers asked of the Ray cluster at %s, which has %d CPUs free: the run waits "
                "until it has more (an autoscaler's nodes, other jobs ending)",
                workers,
                address,
                free,
            )
    try:
        actor = ray.remote(num_cpus=1)(_RayAnalyser)
        pool = ActorPool([actor.remote(settings) for _ in range(max(1, workers))])
        yield from pool.map(lambda a, path: a.analyse.remote(str(path)), paths)
    except ray.exceptions.RayActorError as exc:  # a worker process or its node lost
        raise MirsearchError(
            f"a Ray worker was lost ({type(exc).__name__}): what was committed is kept; run the "
            "command again to go on"
        ) from None
    finally:
        if started_here:
            ray.shutdown()


def _reachable(address: str) -> None:
    """MirsearchError unless the Ray cluster's `address` (host:port, or ray://host:port)
    answers within RAY_CONNECT_S: Ray itself retried one that does not for minutes, holding
    the run's lock. "auto" (the local node's cluster) is left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise MirsearchError(f"cannot reach the Ray cluster at {address} ({reason})") from None


class _RayAnalyser:
    """An Analyser living in a Ray worker process (one torch thread: Ray schedules the CPUs)."""

    def __init__(self, settings: Settings):
        self.analyser = Analyser(settings, threads=1)

    def analyse(self, path: str) -> FileAnalysis:
        return self.analyser(Path(path))
