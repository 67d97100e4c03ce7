"""The files of an index folder: numbered generations, each written atomically, loaded under a
shared lock and pruned only when no reader holds it.

A generation is three files (`windows-<g>.faiss`, `tracks-<g>.faiss`, then `meta-<g>.json`),
each written to a temporary file, fsynced and renamed into place; the catalog database records
which generation is current, so a crash between writing the files and committing the database
leaves it on the previous, complete generation. Readers (a server reloading while `mirsearch
index` runs) read the current generation from the database and load it inside `reading`, a
shared lock; pruning takes that lock exclusively and gives way when it is held, so the
generation a reader picked, complete when the database named it, is never deleted under it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

FILES = (("windows", "faiss"), ("tracks", "faiss"), ("meta", "json"))  # in the order written
GENERATION_FILE = re.compile(r"^(windows|tracks|meta)-(\d+)\.(faiss|json)$")
READERS_LOCK = "readers.lock"  # shared while a reader picks and loads a generation (never pruned)
WRITER_LOCK = "writer.lock"  # held by the one indexing run that writes the folder


def path_of(directory: Path, name: str, generation: int) -> Path:
    """Where generation `generation` keeps its `name` file ("windows", "tracks" or "meta")."""
    extension = dict(FILES)[name]
    return Path(directory) / f"{name}-{generation}.{extension}"


def missing_files(directory: Path, generation: int) -> list[str]:
    """The names of generation `generation`'s files that are not in `directory`."""
    paths = (path_of(directory, name, generation) for name, _ in FILES)
    return [path.name for path in paths if not path.is_file()]


def none_of(directory: Path, generation: int) -> bool:
    """Whether `directory` holds none of generation `generation`'s files: another home's index
    folder, or an index lost (one with some of them is one a crash or a hand damaged)."""
    return len(missing_files(directory, generation)) == len(FILES)


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(temp)` to a temporary file in the same folder, fsync it, rename it over `path`.
    A write that fails (a full disk) leaves no temporary file, renames nothing and raises an
    OSError that says which file and why in a line (FAISS reports it as a RuntimeError of its
    source lines); a full disk's says how much room is left there."""
    temp = path.with_name(path.name + ".tmp")
    try:
        write(temp)
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    except (OSError, RuntimeError) as exc:
        temp.unlink(missing_ok=True)
        failed = OSError(f"cannot write {path}: {_why(exc)}{room_left(exc, path.parent)}")
        failed.errno = getattr(exc, "errno", None)  # what commits.py advises by
        raise failed from exc
    except BaseException:  # Ctrl-C mid-write: no temporary file of an index's size left behind
        temp.unlink(missing_ok=True)
        raise


def _why(exc: OSError | RuntimeError) -> str:
    """What stopped a write, in a line: an OSError's words, or those of FAISS's RuntimeError."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    # FAISS says "Error in <function> at <source line>: Error: '<test>' failed: <what>",
    # <what> ending with the system's words in brackets when a write fell short
    what = str(exc).rsplit("failed: ", 1)[-1]
    system = re.search(r"\(([^()]+)\)\s*$", what)
    return system.group(1) if system else what


def room_left(exc: BaseException, directory: Path) -> str:
    """For a write that failed on a full disk (ENOSPC): "; N bytes free in <directory>" (free
    to the user now, the temporary file deleted), else ""."""
    if not isinstance(exc, OSError) or exc.errno != errno.ENOSPC:
        return ""
    try:
        return f"; {shutil.disk_usage(directory).free:,} bytes free in {directory}"
    except OSError:
        return ""


def write_record(directory: Path, generation: int, record: dict[str, Any]) -> None:
    """Write generation `generation`'s meta file, its last, then fsync the folder."""
    path = path_of(directory, "meta", generation)
    write_atomically(path, lambda temp: temp.write_text(json.dumps(record, indent=1)))
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def saved_record(directory: Path, generation: int) -> dict[str, Any]:
    """What generation `generation` of `directory` says of itself (its meta file: kind, vector
    counts, when it was saved), read without loading the index; ValueError if it is not a
    JSON object (a file damaged into `[]` or `null`)."""
    record = json.loads(path_of(directory, "meta", generation).read_text())
    if not isinstance(record, dict):
        raise ValueError(f"its meta file holds a JSON {type(record).__name__}, not an object")
    return record


@contextmanager
def reading(directory: Path) -> Iterator[None]:
    """Hold off pruning in `directory` while the caller reads the current generation's number
    from the catalog and loads that generation (a shared lock; readers do not block each other).
    """
    lock = _reader_lock(Path(directory))
    if lock is None:  # a read-only folder without one: nothing can prune it either
        yield
        return
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        yield


def _reader_lock(directory: Path) -> BinaryIO | None:
    """The lock file opened for `reading`: as `_lock_file` opens it where the folder can be
    written, else read-only (a catalog served from a read-only volume); None if neither can, or
    where there is no folder (no generation in it to load or prune: a reader had made it)."""
    if not directory.exists():
        return None
    try:
        return _lock_file(directory, READERS_LOCK)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        try:
            return open(directory / READERS_LOCK, "rb")
        except FileNotFoundError:
            return None


@contextmanager
def writing(directory: Path) -> Iterator[None]:
    """The folder's one writer: an exclusive lock an indexing run holds from its start to its end.
    Another run waits here, then plans from what the first committed; two at once had each saved
    the index it loaded plus its own tracks, the last one losing the other's vectors."""
    with _lock_file(Path(directory), WRITER_LOCK) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another indexing run is writing %s: waiting for it to end", directory)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def prune_generations(directory: Path, *, keep: int) -> int:
    """Delete the files of generations other than `keep`, and temp files; returns how many: the
    older ones, and newer ones of a batch whose files were written but whose commit failed (a
    full disk: they had stayed, taking the room the next run needed). No reader loads a
    generation the catalog has not committed, and no other run writes while this one runs.

    Deletes nothing while a reader holds `reading(directory)`: it may be loading one of them
    (the next prune, after the next commit or at the start of the next run, deletes them).
    """
    with _lock_file(Path(directory), READERS_LOCK) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("a reader is loading the index in %s: pruning left for later", directory)
            return 0
        removed = 0
        for path in Path(directory).glob("*"):
            match = GENERATION_FILE.match(path.name)
            if path.name.endswith(".tmp") or (match and int(match.group(2)) != keep):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _lock_file(directory: Path, name: str) -> BinaryIO:
    """Lock file `name` of `directory`, opened (created with the folder if need be); a lock
    taken on it ends when it is closed."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # told as "File exists" before
        raise type(exc)(exc.errno, "a file is in the way of this folder", exc.filename) from exc
    return open(directory / name, "a+b")
