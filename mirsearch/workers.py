"""A local process pool whose workers each load what they need once (a model, an index) and
work through a list in order: indexing's analysis and the query commands run on it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, TypeVar

from mirsearch.errors import MirsearchError

Item = TypeVar("Item")
Result = TypeVar("Result")

# Workers are forked where that is safe (Linux): a spawned one pays ~1.4 s importing torch again,
# about a tenth of indexing ../shared/audio on 2 cores. A forked child runs ONE torch thread,
# set before its first tensor operation (`load` is called in the child): OpenMP's thread pool
# does not survive a fork, and a child that asks it for more threads waits for them for ever.
# macOS must spawn.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"

# Items in flight per worker. Results come back in the order of the items, so a long one holds
# the ones after it: with too few in flight, the other workers run dry behind it.
AHEAD = 8

WORKER_LOST = (
    "a worker process ended abruptly (killed, or out of memory): run the command again (an "
    "index run goes on from what it committed)"
)
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends (Linux)

_loaded: Any = None  # what `load` made, in a worker process


def default_workers(n_items: int) -> int:
    """Every core, but no more workers than items."""
    return max(1, min(os.cpu_count() or 1, n_items))


def ordered_map(
    load: Callable[[], Any],
    work: Callable[[Any, Item], Result],
    items: Iterable[Item],
    *,
    workers: int,
) -> Iterator[Result]:
    """`work(loaded, item)` for each item, in order, where `loaded = load()` once per worker.

    With one worker it all runs in this process. Otherwise `load` and `work` must be picklable
    (module-level functions or partials of them) and `work` should return its failures rather
    than raise them: an exception raised in a worker ends the whole map, and a worker that
    ends abruptly ends it with a MirsearchError (WORKER_LOST).
    """
    if workers <= 1:
        loaded = load()
        yield from (work(loaded, item) for item in items)
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=get_context(START_METHOD),
        initializer=_load,
        initargs=(load, os.getpid()),
    )
    try:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(_work, work, item))
            if len(pending) >= AHEAD * workers:
                yield pending.popleft().result()
        for future in pending:
            yield future.result()
    except BrokenProcessPool:  # a worker killed (the OOM killer, kill -9): a line, not a
        raise MirsearchError(WORKER_LOST) from None  # traceback; the items after it go unanswered
    finally:  # an interrupted map waits for the items in hand, not for all those in flight
        pool.shutdown(wait=True, cancel_futures=True)


def _load(load: Callable[[], Any], parent: int) -> None:
    global _loaded
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler a forking command set
    end_with(parent)
    _loaded = load()


def end_with(parent: int, signal_number: int = signal.SIGKILL) -> None:
    """Have this process sent `signal_number` (killed, by default) when `parent`, the process
    that forked it, ends, however it ends (kill -9 too): a worker had outlived a killed `index`,
    blocked on its pipe and holding the run's writer lock (inherited with its open files), and
    every later run waited for ever. Linux only; elsewhere a child checks its parent itself."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal_number)
    if os.getppid() != parent:  # it ended before that was asked
        os._exit(1)


def _work(work: Callable[[Any, Item], Result], item: Item) -> Result:
    assert _loaded is not None, "worker not initialised"
    return work(_loaded, item)
