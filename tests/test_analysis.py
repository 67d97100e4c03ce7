"""Where files are analysed: one process, a local pool or Ray, with the same results everywhere."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mirsearch import analysis, audio
from mirsearch.analysis import Analyser, DecodeAhead, analyse_all
from mirsearch.api import Engine
from mirsearch.demo import write_demo_catalog
from mirsearch.errors import MirsearchError
from mirsearch.workers import START_METHOD


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=3)


def run_script(script: str, *args, timeout: float = 60, **options) -> subprocess.CompletedProcess:
    """`python -c script args…`, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **options,
    )


def test_a_bad_file_is_a_result_with_its_error_not_an_exception(settings, tmp_path):
    bad = tmp_path / "liner-notes.mp3"
    bad.write_text("not audio at all\n" * 50)
    result = Analyser(settings)(bad)
    assert result.error and "liner-notes.mp3" in result.error
    assert result.vectors is None and len(result.sha256) == 64


def test_the_process_pool_gives_the_same_vectors_in_the_same_order(settings, demo_files):
    alone = list(analyse_all(demo_files, settings, workers=1))
    pooled = list(analyse_all(demo_files, settings, workers=2))
    assert [r.path for r in pooled] == [str(p) for p in demo_files]
    for a, b in zip(alone, pooled, strict=True):
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
        assert a.probabilities.keys() == b.probabilities.keys()


# A parent that has run tensor work on several threads, then a forked pool: the workers' own first
# tensor operation (loading the model) hung in OpenMP when they asked for the parent's threads.
AFTER_THREADED_WORK = """
import sys, torch
from mirsearch.analysis import analyse_all
from mirsearch.config import Settings
torch.set_num_threads(2)
torch.ones(512, 512) @ torch.ones(512, 512)
results = analyse_all(sys.argv[1:], Settings.from_env({}), workers=2)
print(sum(r.error is None for r in results))
"""


def test_a_forked_pool_after_threaded_tensor_work_in_the_parent_finishes(demo_files):
    done = run_script(AFTER_THREADED_WORK, *demo_files, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(demo_files))]


def test_files_decoded_ahead_are_read_as_decoded_once_and_bad_ones_left_to_the_worker(
    settings, demo_files, tmp_path
):
    bad = tmp_path / "liner-notes.mp3"
    bad.write_text("not audio at all\n" * 50)
    paths = [demo_files[0], bad, demo_files[1]]
    with DecodeAhead(paths, settings.audio) as ahead:
        ahead.process.join(timeout=60)
        ready = ahead.stop()
        assert ready.keys() == {str(demo_files[0]), str(demo_files[1])}
        analyser = Analyser(settings, ahead=ready)
        decoded_ahead = analyser(demo_files[0])
        assert not ready[str(demo_files[0])].exists()  # read once, then gone
        np.testing.assert_array_equal(
            decoded_ahead.vectors, Analyser(settings)(demo_files[0]).vectors
        )
        assert "liner-notes.mp3" in analyser(bad).error
    assert not ahead.folder.exists()


@pytest.mark.skipif(START_METHOD != "fork", reason="the stalled decoder is patched in by fork")
def test_stopping_the_decoding_ahead_hands_over_only_whole_files_at_once(
    settings, demo_files, monkeypatch
):
    """The decoder is stopped wherever it is (here: stuck in the second file for a minute), and
    what it had not finished is not handed over."""
    load = audio.load

    def stuck_on_the_second(path, **kwargs):
        if path == demo_files[1]:
            time.sleep(60)
        return load(path, **kwargs)

    monkeypatch.setattr(analysis.audio, "load", stuck_on_the_second)
    with DecodeAhead(demo_files, settings.audio) as ahead:
        deadline = time.monotonic() + 30
        while not (ahead.folder / "0.decoded").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        ready = ahead.stop()
        assert time.monotonic() - started < 5
    assert list(ready) == [str(demo_files[0])]


def test_without_a_temporary_folder_nothing_is_decoded_ahead_and_nothing_fails(
    settings, demo_files, monkeypatch
):
    def refused(**kwargs):
        raise PermissionError(13, "Permission denied", "/tmp")

    monkeypatch.setattr(analysis.tempfile, "mkdtemp", refused)
    with DecodeAhead(demo_files, settings.audio) as ahead:
        assert ahead.process is None and ahead.stop() == {}


@pytest.mark.skipif(START_METHOD != "fork", reason="the full disk is patched in by fork")
def test_decoding_ahead_into_a_full_folder_stops_and_leaves_no_partial_file(
    settings, demo_files, monkeypatch
):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(analysis.pickle, "dump", full)
    with DecodeAhead(demo_files, settings.audio) as ahead:
        ahead.process.join(timeout=60)
        assert ahead.process.exitcode == 0
        assert ahead.stop() == {} and list(ahead.folder.iterdir()) == []


def test_decoding_ahead_stops_at_its_byte_budget(settings, demo_files, monkeypatch):
    monkeypatch.setattr(analysis, "MAX_AHEAD_BYTES", 1)  # the first file spends it
    with DecodeAhead(demo_files, settings.audio) as ahead:
        ahead.process.join(timeout=60)
        assert ahead.process.exitcode == 0
        assert list(ahead.stop()) == [str(demo_files[0])]


# The start of a script whose decoding ahead takes SECONDS a file (the patch reaches the decoding
# process by fork).
SLOW_DECODER = """
import os, signal, sys, time
from pathlib import Path
from mirsearch import analysis
from mirsearch.config import AudioConfig

load = analysis.audio.load
def slow(path, **kwargs):
    time.sleep(SECONDS)
    return load(path, **kwargs)
analysis.audio.load = slow
paths = [Path(p) for p in sys.argv[1:]]
"""

# A run killed while decoding ahead: its decoder finds its parent gone and removes the folder.
KILLED_WHILE_DECODING = (
    SLOW_DECODER.replace("SECONDS", "1")
    + """
ahead = analysis.DecodeAhead(paths, AudioConfig())
print(ahead.folder, flush=True)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""
)


@pytest.mark.skipif(START_METHOD != "fork", reason="the slow decoder is patched in by fork")
def test_a_run_killed_while_decoding_ahead_leaves_no_decoded_audio_behind(demo_files):
    done = run_script(KILLED_WHILE_DECODING, *demo_files)
    assert done.returncode == -9
    folder = Path(done.stdout.strip())
    assert folder.name.startswith("mirsearch-decoded-")
    deadline = time.monotonic() + 15
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not folder.exists()


# Ctrl-C in a terminal reaches every process of the run: the decoder leaves it to the run.
INTERRUPTED_WHILE_DECODING = (
    SLOW_DECODER.replace("SECONDS", "3")
    + """
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, wherever this runs
with analysis.DecodeAhead(paths, AudioConfig()) as ahead:
    time.sleep(1)
    try:
        os.killpg(0, signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        time.sleep(1)  # a run can take a while to get there (an import in C does not stop)
        print("interrupted; decoder still running:", ahead.process.is_alive(), flush=True)
"""
)


@pytest.mark.skipif(START_METHOD != "fork", reason="the slow decoder is patched in by fork")
def test_ctrl_c_while_decoding_ahead_is_the_runs_to_report(demo_files):
    done = run_script(INTERRUPTED_WHILE_DECODING, *demo_files, start_new_session=True)
    assert done.stdout.strip() == "interrupted; decoder still running: True"  # for the run to stop
    assert "Traceback" not in done.stderr


def test_a_folder_left_by_a_killed_run_is_removed_by_the_next(
    settings, demo_files, tmp_path, monkeypatch
):
    """Killed after its decoder stopped, a run leaves its folder; the next run removes it, and
    leaves alone the folder of a run still going."""
    gone = run_script("import os; print(os.getpid())").stdout.strip()
    left = tmp_path / f"{analysis.FOLDER_PREFIX}{gone}-abcd"
    left.mkdir()
    (left / "0.decoded").write_bytes(b"decoded audio")
    running = tmp_path / f"{analysis.FOLDER_PREFIX}{os.getppid()}-efgh"
    running.mkdir()
    monkeypatch.setattr(analysis.tempfile, "tempdir", str(tmp_path))
    with DecodeAhead(demo_files[:1], settings.audio) as ahead:
        assert ahead.folder.parent == tmp_path
        assert not left.exists() and running.exists()


# What lets an indexing run decode while torch loads: the decoder is forked before torch is
# imported, which importing the indexer must not do.
TORCH_FREE_UNTIL_DECODING = """
import sys
from pathlib import Path

from mirsearch import analysis
from mirsearch.api import Engine
from mirsearch.config import Settings

init = analysis.DecodeAhead.__init__
def noted(self, paths, config):
    print("decoding", len(paths), "ahead; torch loaded:", "torch" in sys.modules, flush=True)
    init(self, paths, config)
analysis.DecodeAhead.__init__ = noted
summary = Engine(Settings.from_env({}, home=Path(sys.argv[1]))).index_paths(sys.argv[2:], workers=2)
print("indexed", summary.indexed)
"""


def test_an_index_run_starts_decoding_before_torch_loads(demo_files, tmp_path):
    done = run_script(
        TORCH_FREE_UNTIL_DECODING,
        tmp_path,
        *demo_files,
        timeout=180,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    n = len(demo_files)
    expected = f"decoding {n if (os.cpu_count() or 1) > 1 else 0} ahead; torch loaded: False"
    assert done.stdout.splitlines() == [expected, f"indexed {n}"]


def test_an_unknown_engine_is_refused(settings, demo_files):
    with pytest.raises(MirsearchError, match="unknown engine 'spark'"):
        list(analyse_all(demo_files, settings, engine="spark"))


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'mirsearch[ray]')",
)
def test_ray_indexes_the_same_tracks_and_vectors_as_the_local_engine(tmp_path, demo_files):
    from mirsearch.config import Settings

    folder = demo_files[0].parent
    local = Engine(Settings.from_env({}, home=tmp_path / "local"))
    on_ray = Engine(Settings.from_env({}, home=tmp_path / "ray"))
    local.index_paths([folder])
    summary = on_ray.index_paths([folder], workers=2, engine="ray")
    assert summary.indexed == len(demo_files) and summary.failed == 0

    def by_name(engine):
        tracks, _ = engine.catalog.list_tracks(per_page=100)
        return {os.path.basename(t.path): t for t in tracks}

    a, b = by_name(local), by_name(on_ray)
    assert a.keys() == b.keys() == {p.name for p in demo_files}
    index_a, index_b = local.index(), on_ray.index()
    for name in a:
        assert a[name].genre == b[name].genre and a[name].n_windows == b[name].n_windows
        np.testing.assert_allclose(
            index_a.track_windows(a[name].id), index_b.track_windows(b[name].id), atol=1e-5
        )
    hits = on_ray.search(demo_files[1])
    assert os.path.basename(hits[0].path) == demo_files[1].name
