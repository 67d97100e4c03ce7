"""Decoding ahead while torch loads: whole files handed over once, nothing left behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script

from mirsearch import audio, prefetch
from mirsearch.analysis import Analyser
from mirsearch.demo import write_demo_catalog
from mirsearch.encoding import write
from mirsearch.prefetch import DecodeAhead
from mirsearch.workers import START_METHOD


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=3)


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
    settings, demo_files, monkeypatch, capfd
):
    """The decoder is stopped wherever it is (here: stuck in the second file for a minute), and
    what it had not finished is not handed over. It ends quietly, whatever handler of SIGTERM
    the run set (`index` raises KeyboardInterrupt: the decoder had printed its traceback)."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    load = audio.load

    def stuck_on_the_second(path, **kwargs):
        if path == demo_files[1]:
            time.sleep(60)
        return load(path, **kwargs)

    monkeypatch.setattr(prefetch.audio, "load", stuck_on_the_second)
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with DecodeAhead(demo_files, settings.audio) as ahead:
            deadline = time.monotonic() + 30
            while not (ahead.folder / "0.decoded").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            started = time.monotonic()
            ready = ahead.stop()
            assert time.monotonic() - started < 5
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(ready) == [str(demo_files[0])]
    assert "Traceback" not in capfd.readouterr().err


def test_without_a_temporary_folder_nothing_is_decoded_ahead_and_nothing_fails(
    settings, demo_files, monkeypatch
):
    def refused(**kwargs):
        raise PermissionError(13, "Permission denied", "/tmp")

    monkeypatch.setattr(prefetch.tempfile, "mkdtemp", refused)
    with DecodeAhead(demo_files, settings.audio) as ahead:
        assert ahead.process is None and ahead.stop() == {}


@pytest.mark.skipif(START_METHOD != "fork", reason="the full disk is patched in by fork")
def test_decoding_ahead_into_a_full_folder_stops_and_leaves_no_partial_file(
    settings, demo_files, monkeypatch
):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prefetch.pickle, "dump", full)
    with DecodeAhead(demo_files, settings.audio) as ahead:
        ahead.process.join(timeout=60)
        assert ahead.process.exitcode == 0
        assert ahead.stop() == {} and list(ahead.folder.iterdir()) == []


def test_decoding_ahead_stops_at_its_byte_budget(settings, demo_files, monkeypatch):
    monkeypatch.setattr(prefetch, "MAX_AHEAD_BYTES", 1)  # the first file spends it
    with DecodeAhead(demo_files, settings.audio) as ahead:
        ahead.process.join(timeout=60)
        assert ahead.process.exitcode == 0
        assert list(ahead.stop()) == [str(demo_files[0])]


# The start of a script whose decoding ahead takes SECONDS a file (the patch reaches the decoding
# process by fork).
SLOW_DECODER = """
import os, signal, sys, time
from pathlib import Path
from mirsearch import prefetch
from mirsearch.config import AudioConfig

load = prefetch.audio.load
def slow(path, **kwargs):
    time.sleep(SECONDS)
    return load(path, **kwargs)
prefetch.audio.load = slow
paths = [Path(p) for p in sys.argv[1:]]
"""

# A run killed while decoding ahead: its decoder finds its parent gone and removes the folder.
KILLED_WHILE_DECODING = (
    SLOW_DECODER.replace("SECONDS", "1")
    + """
ahead = prefetch.DecodeAhead(paths, AudioConfig())
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


# A run killed while its decoder is inside a long file.
KILLED_IN_A_LONG_DECODING = (
    SLOW_DECODER.replace("SECONDS", "60")
    + """
ahead = prefetch.DecodeAhead(paths, AudioConfig())
print(ahead.folder, ahead.process.pid, flush=True)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="told by the kernel (prctl)")
@pytest.mark.skipif(START_METHOD != "fork", reason="the slow decoder is patched in by fork")
def test_a_run_killed_while_a_long_file_decodes_ahead_has_its_decoder_end_at_once(demo_files):
    """The decoder had gone on to the end of the file in hand (a long one: minutes), holding
    the run's writer lock, so that the run started again waited for it, and its folder."""
    done = run_script(KILLED_IN_A_LONG_DECODING, *demo_files[:1], timeout=20)
    assert done.returncode == -9
    folder, pid = done.stdout.split()
    deadline = time.monotonic() + 5
    while prefetch._alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not prefetch._alive(int(pid)) and not Path(folder).exists()


# Ctrl-C in a terminal reaches every process of the run: the decoder leaves it to the run.
INTERRUPTED_WHILE_DECODING = (
    SLOW_DECODER.replace("SECONDS", "3")
    + """
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, wherever this runs
with prefetch.DecodeAhead(paths, AudioConfig()) as ahead:
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
    leaves alone the folder of a run still going, this user's or another's (whose process this
    one may not signal: a shared /tmp)."""
    gone = run_script("import os; print(os.getpid())").stdout.strip()
    left = tmp_path / f"{prefetch.FOLDER_PREFIX}{gone}-abcd"
    left.mkdir()
    (left / "0.decoded").write_bytes(b"decoded audio")
    running = tmp_path / f"{prefetch.FOLDER_PREFIX}{os.getppid()}-efgh"
    running.mkdir()
    others = tmp_path / f"{prefetch.FOLDER_PREFIX}{gone}0-ijkl"  # another user's run
    others.mkdir()
    kill = os.kill

    def not_ours(pid: int, signal: int) -> None:
        if pid == int(f"{gone}0"):
            raise PermissionError(1, "Operation not permitted")
        kill(pid, signal)

    monkeypatch.setattr(prefetch.os, "kill", not_ours)
    monkeypatch.setattr(prefetch.tempfile, "tempdir", str(tmp_path))
    with DecodeAhead(demo_files[:1], settings.audio) as ahead:
        assert ahead.folder.parent == tmp_path
        assert not left.exists() and running.exists() and others.exists()


# What lets an indexing run decode while torch loads: the decoder is forked before torch is
# imported, which importing the indexer must not do.
TORCH_FREE_UNTIL_DECODING = """
import sys
from pathlib import Path

from mirsearch import prefetch
from mirsearch.api import Engine
from mirsearch.config import Settings

init = prefetch.DecodeAhead.__init__
def noted(self, paths, config):
    print("decoding", len(paths), "ahead; torch loaded:", "torch" in sys.modules, flush=True)
    init(self, paths, config)
prefetch.DecodeAhead.__init__ = noted
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


def test_a_file_rewritten_after_it_was_decoded_ahead_is_decoded_again(
    settings, demo_files, tmp_path
):
    """It had been stored with the new content's hash and the old content's audio, then
    skipped as unchanged by every later run."""
    path = tmp_path / "song.ogg"
    path.write_bytes(demo_files[1].read_bytes())
    with DecodeAhead([path], settings.audio) as ahead:
        ahead.process.join(timeout=60)
        ready = ahead.stop()
        assert ready.keys() == {str(path)}
        path.write_bytes(demo_files[2].read_bytes())  # another song, the same name
        analysed = Analyser(settings, ahead=ready)(path)
    assert not ready[str(path)].exists()
    np.testing.assert_array_equal(analysed.vectors, Analyser(settings)(demo_files[2]).vectors)


def test_a_file_rewritten_with_its_size_and_time_kept_is_decoded_again(settings, tmp_path):
    """Another recording of the same size written over a file, its modification time put back
    (as `cp -p` or a sync tool keeps it): only the change time tells, and the decoding made
    before is not used."""
    path, other = tmp_path / "song.wav", tmp_path / "other.wav"
    for name, hz in ((path, 440.0), (other, 660.0)):
        t = np.arange(5 * 16_000) / 16_000
        audio_samples = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        write(name, audio_samples, 16_000)
    assert path.stat().st_size == other.stat().st_size
    with DecodeAhead([path], settings.audio) as ahead:
        ahead.process.join(timeout=60)
        ready = ahead.stop()
        before = path.stat()
        path.write_bytes(other.read_bytes())
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        analysed = Analyser(settings, ahead=ready)(path)
    np.testing.assert_array_equal(analysed.vectors, Analyser(settings)(other).vectors)


def test_a_decoding_whose_folder_went_with_a_stopped_run_is_decoded_again(settings, demo_files):
    """A run that stops (its database gone, say) removes the folder while its workers are busy:
    each had logged a FileNotFoundError traceback."""
    gone = {str(demo_files[0]): Path("/nonexistent/mirsearch-decoded-0/0.decoded")}
    analysed = Analyser(settings, ahead=gone)(demo_files[0])
    assert analysed.error is None and len(analysed.vectors)
