"""DecodeAhead: an indexing run's first files decoded by a process of their own while torch loads.

Neither this module nor its decoding process imports torch (an import-linter contract): the
process is forked from a run that has not imported it yet.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import tempfile
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

from mirsearch import audio
from mirsearch.config import AudioConfig
from mirsearch.workers import START_METHOD, end_with

log = logging.getLogger(__name__)

# DecodeAhead writes at most this much decoded audio (~70 min at 16 kHz): a few seconds of
# decoding are ~100 MB, a cold start of torch from disk (10 s and more) could be many times that
MAX_AHEAD_BYTES = 256 << 20
FOLDER_PREFIX = "mirsearch-decoded-"  # then the run's process id: DecodeAhead's folders
ORPHANED = signal.SIGUSR1  # what the decoding process is sent when its run ends (Linux)


class DecodeAhead:
    """The first files of a run decoded by a process of their own while this one imports torch
    and loads the model: on 2 cores that took ~4 s of one core, the other idle (`import torch`
    alone 2.7-3.9 s on the machine of the README's figures), and `mirsearch index` of
    ../shared/audio went from 27.0 to 25.0 s (three runs of each, interleaved).

    The process is forked before torch is imported (it imports none), decodes `paths` in order
    and writes each whole decoded file to a private temporary folder under a name it takes only
    once complete, up to MAX_AHEAD_BYTES. `stop` ends it at once, wherever it is, and hands over
    what is complete; a file it could not decode is left to the worker, whose error is the one
    recorded, and one that changed since its decoding began is decoded again by the worker. The
    folder goes when the context ends; if this process is killed first, its decoding process
    removes it and ends at once (it had decoded on to the end of the file in hand, up to
    minutes, holding the run's writer lock, inherited with its open files, so that a run
    started again waited for it), or, when that had stopped already, the next run does (the
    folder's name holds the process id).
    """

    def __init__(self, paths: Sequence[Path], config: AudioConfig):
        self.paths = list(paths)
        self.folder: Path | None = None
        self.process = None
        if self.paths:
            _remove_orphans(Path(tempfile.gettempdir()))
            try:
                self.folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
            except OSError as exc:  # the workers decode everything, as they would anyway
                log.info("not decoding ahead: no temporary folder (%s)", exc)
                return
            self.process = get_context(START_METHOD).Process(
                target=_decode_ahead,
                args=(self.paths, config, self.folder, os.getpid()),
                daemon=True,
            )
            self.process.start()

    def stop(self) -> dict[str, Path]:
        """Stop decoding; the files decoded whole: path → where its decoded audio waits."""
        if self.process is not None:
            self.process.terminate()
            self.process.join()
        if self.folder is None:
            return {}
        return {str(self.paths[int(f.stem)]): f for f in self.folder.glob("*.decoded")}

    def __enter__(self) -> DecodeAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def identity(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """What tells one state of a file from another: a decoding handed over is used only if the
    file still has the identity it had when its decoding began (it may be rewritten meanwhile;
    the change time also catches one renamed away and back, or copied with its mtime kept)."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _abandon(folder: Path) -> None:
    """End the decoding of a run that was killed: nothing will read its folder."""
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)


def _remove_orphans(temp: Path) -> None:
    """Folders of runs killed after their decoder stopped (a crash, `kill -9`): the process named
    in the folder's name is gone."""
    for folder in temp.glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        pass
    return True


def _decode_ahead(paths: list[Path], config: AudioConfig, folder: Path, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle: it stops this
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # how `stop` ends it, not the run's handler
    signal.signal(ORPHANED, lambda *_: _abandon(folder))  # the run was killed
    end_with(parent, ORPHANED)
    written = 0
    for n, path in enumerate(paths):
        if os.getppid() != parent:  # where no signal says so
            _abandon(folder)
        if written >= MAX_AHEAD_BYTES:
            return
        try:
            before = identity(os.stat(path))
            decoded = audio.load(path, config=config)
        except Exception:  # the worker decodes this file itself and records what goes wrong
            continue
        part = folder / f"{n}.part"
        try:
            with open(part, "wb") as f:
                pickle.dump((before, decoded), f, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:  # the temporary folder is full: the workers decode the rest
            part.unlink(missing_ok=True)
            return
        part.rename(folder / f"{n}.decoded")
        written += decoded.samples.nbytes
