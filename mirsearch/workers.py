"""A local process pool whose workers each load what they need once (a model, an index) and
work through a list in order: indexing's analysis and the query commands run on it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
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

# Ctrl-C and SIGTERM are held while this process is inside the pool's calls (`_interrupts_held`),
# and a result is waited for this long at a time between them
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WAIT_S = 0.05

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
    with _interrupts_held():
        pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context(START_METHOD),
            initializer=_load,
            initargs=(load, os.getpid()),
        )
    try:
        pending: deque[Future] = deque()
        for item in items:
            with _interrupts_held():
                pending.append(pool.submit(_work, work, item))
            if len(pending) >= AHEAD * workers:
                yield _result(pending.popleft())
        for future in pending:
            yield _result(future)
    except BrokenProcessPool:  # a worker killed (the OOM killer, kill -9): a line, not a
        raise MirsearchError(WORKER_LOST) from None  # traceback; the items after it go unanswered
    finally:  # an interrupted map waits for the items in hand, not for all those in flight
        with _interrupts_held():
            pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future) -> Any:
    """The future's result, waited for a little at a time so that an interrupt held meanwhile
    is acted on between the waits."""
    while True:
        with _interrupts_held():
            if wait([future], timeout=WAIT_S).done:
                return future.result()


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM noted while the block runs and acted on after it, by the handlers set
    before. The block is a call into the pool, whose state a KeyboardInterrupt raised midway
    left half changed: in about one interrupt of four in a pool's first milliseconds, its
    shutdown then waited for ever on its thread, or failed "cannot join thread before it is
    started" (raised while `submit` started that thread). Signal handlers are set in the main
    thread only: elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner, noted = os.getpid(), []

    def note(signum: int, frame) -> None:
        if os.getpid() != owner:  # a worker forked in the block, stopped before `_load`
            os._exit(128 + signum)
        noted.append(signum)

    before = {number: signal.signal(number, note) for number in HELD_SIGNALS}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        if noted:
            signal.raise_signal(noted[0])


def _load(load: Callable[[], Any], parent: int) -> None:
    global _loaded
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler a forking command set,
    signal.signal(signal.SIGINT, signal.default_int_handler)  # nor the pool's (`_interrupts_held`)
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
