"""The local process pool: results in the order of the items, `load` run once in each worker,
failures handed back as values, one worker meaning this process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from functools import partial

import pytest

from mirsearch.errors import MirsearchError
from mirsearch.workers import AHEAD, START_METHOD, default_workers, ordered_map


def _load(tag: str) -> dict:
    return {"tag": tag, "pid": os.getpid(), "loads": 1}


def _work(loaded: dict, item: float) -> tuple:
    time.sleep(item)  # the first items are the slowest: later ones finish first
    return item, loaded["tag"], loaded["pid"], os.getpid(), id(loaded)


def _fail_on_odd(loaded: dict, item: int):
    return ValueError(f"odd {item}") if item % 2 else item


def test_results_come_back_in_order_each_worker_loading_once_in_itself():
    items = [0.2, 0.15, 0.1, 0.05, 0.0, 0.0, 0.0, 0.0]
    results = list(ordered_map(partial(_load, "model"), _work, items, workers=2))
    assert [r[0] for r in results] == items
    assert {r[1] for r in results} == {"model"}
    assert all(loaded_in == ran_in != os.getpid() for _, _, loaded_in, ran_in, _ in results)
    workers = {r[3] for r in results}
    assert len(workers) == 2  # both worked
    for pid in workers:  # one load per worker, reused for each of its items
        assert len({r[4] for r in results if r[3] == pid}) == 1


def test_one_worker_runs_here_and_loads_once():
    results = list(ordered_map(partial(_load, "here"), _work, [0.0, 0.0, 0.0], workers=1))
    assert {(r[2], r[3]) for r in results} == {(os.getpid(), os.getpid())}
    assert len({r[4] for r in results}) == 1


def test_failures_returned_as_values_leave_the_other_items_alone():
    out = list(ordered_map(partial(_load, "x"), _fail_on_odd, range(6), workers=2))
    assert [o for o in out if not isinstance(o, ValueError)] == [0, 2, 4]
    assert [str(o) for o in out if isinstance(o, ValueError)] == ["odd 1", "odd 3", "odd 5"]


def test_default_workers_is_every_core_but_never_more_than_the_items():
    cores = os.cpu_count() or 1
    assert default_workers(1000) == cores
    assert default_workers(1) == 1 and default_workers(0) == 1


def test_items_are_drawn_as_the_workers_need_them_not_all_at_once():
    """A few items in flight per worker: a query of a folder of 100,000 clips neither holds
    them all in the pool's queue nor, interrupted, leaves them all to be cancelled."""
    drawn = []

    def items():
        for i in range(1000):
            drawn.append(i)
            yield 0.0

    results = ordered_map(partial(_load, "x"), _work, items(), workers=2)
    next(results)
    assert len(drawn) == AHEAD * 2
    results.close()
    assert len(drawn) == AHEAD * 2


def _killed_on_three(loaded: dict, item: int) -> int:
    if item == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer ends a worker
    return item


def test_a_worker_killed_ends_the_map_with_a_line_saying_so():
    """A worker ended abruptly (kill -9, out of memory) had come out as a traceback of
    BrokenProcessPool; the items done before it come back, then a MirsearchError says so."""
    came_back = []
    with pytest.raises(MirsearchError, match="worker process ended abruptly") as raised:
        for result in ordered_map(partial(_load, "x"), _killed_on_three, range(8), workers=2):
            came_back.append(result)
    assert came_back == list(range(len(came_back))) and len(came_back) <= 3  # in order, then
    assert "run the command again" in str(raised.value)  # the line, not BrokenProcessPool's


# A process that maps items on two workers again and again, told Ctrl-C as the CLI tells it
# SIGTERM too (a KeyboardInterrupt raised in its own process, a forked one ending at once)
INTERRUPTED_MAP = """
import os, signal, sys, time
from mirsearch.workers import ordered_map

def stop(signum, frame):
    if os.getpid() != owner:
        os._exit(128 + signum)
    raise KeyboardInterrupt

def work(loaded, item):
    time.sleep(0.01)

owner = os.getpid()
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, signal.default_int_handler)  # not ignored, as a job run in the
# background by a shell that has no job control is started (CI's may be)
print("ready", flush=True)
try:
    while True:
        list(ordered_map(int, work, range(20), workers=2))
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr, flush=True)
os._exit(0)
"""


@pytest.mark.skipif(START_METHOD != "fork", reason="the script's functions reach workers by fork")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_at_any_moment_ends_the_map_as_interrupted(stop):
    """Raised inside the pool's own calls, Ctrl-C or SIGTERM had left a queue's lock taken (the
    run then waited for ever in the pool's shutdown) or failed "cannot join thread before it is
    started", in about one interrupt of four sent in the pool's first milliseconds."""
    rng = random.Random(5)
    for _ in range(16):
        process = subprocess.Popen(
            [sys.executable, "-c", INTERRUPTED_MAP],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, 0.004))
        process.send_signal(stop)
        try:
            _, told = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the interrupted map never ended")
        assert process.returncode == 0 and told == "interrupted\n", told
