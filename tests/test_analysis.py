"""Where files are analysed: one process, a local pool or Ray, with the same results everywhere."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from conftest import run_script

from mirsearch.analysis import Analyser, analyse_all
from mirsearch.api import Engine
from mirsearch.demo import write_demo_catalog
from mirsearch.errors import MirsearchError


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=3)


def test_a_bad_file_is_a_result_with_its_error_not_an_exception(settings, tmp_path, monkeypatch):
    """Told by its first bytes, before it is read whole to be hashed (a 10 GB file named .wav
    had taken a minute)."""
    import mirsearch.analysis

    def file_sha256(path):
        raise AssertionError(f"{path} read whole")

    monkeypatch.setattr(mirsearch.analysis, "file_sha256", file_sha256)
    bad = tmp_path / "liner-notes.mp3"
    bad.write_text("not audio at all\n" * 50)
    result = Analyser(settings)(bad)
    assert result.error and "liner-notes.mp3: not an audio file" in result.error
    assert result.vectors is None and result.sha256 == ""
    assert result.size_bytes == bad.stat().st_size  # the next run skips it while it is the same


@pytest.mark.parametrize("change", ["written to in place", "removed"])
def test_a_file_that_changes_while_it_is_read_gives_nothing_to_record(
    settings, demo_files, tmp_path, monkeypatch, change
):
    """Its hash and its decoding may hold two contents: no vectors, no hash, and why."""
    import mirsearch.audio

    song = tmp_path / "song.ogg"
    song.write_bytes(demo_files[1].read_bytes())
    load = mirsearch.audio.load

    def changed_while_decoded(path, **kwargs):
        decoded = load(path, **kwargs)
        if change == "removed":
            song.unlink()
        else:  # the same inode, a new size and mtime
            with open(song, "ab") as f:
                f.write(b"\0" * 4096)
        return decoded

    monkeypatch.setattr(mirsearch.audio, "load", changed_while_decoded)
    result = Analyser(settings)(song)
    assert result.changing and result.vectors is None and result.sha256 == ""
    what = "went away" if change == "removed" else "changed"
    assert result.error.startswith(f"{song}: not indexed: the file {what} while it was being read")


def test_a_file_gone_before_it_is_read_gives_nothing_to_record(settings, tmp_path):
    """A file the walk listed and then removed, or its folder renamed midway through a run, is
    not recorded (the next run finds it where it is): it had been a failed row at a path that
    no longer is. One that cannot be read is recorded as failed, as before."""
    result = Analyser(settings)(tmp_path / "renamed-folder" / "song.ogg")
    assert result.changing and result.sha256 == "" and result.vectors is None
    assert result.error.endswith(
        "not indexed: the file went away before it was read (removed or renamed)"
    )


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


def test_an_unknown_engine_is_refused(settings, demo_files):
    with pytest.raises(MirsearchError, match="unknown engine 'spark'"):
        list(analyse_all(demo_files, settings, engine="spark"))


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'mirsearch[ray]')",
)
def test_a_ray_cluster_that_cannot_be_joined_is_one_line_and_the_run_keeps_its_sigterm(
    settings, demo_files, monkeypatch
):
    """An --address no one answers at had Ray retry for minutes, the run's lock held; one Ray
    cannot read was a traceback; and ray.init put Ray's SIGTERM handler in place of the run's,
    so a stopped run printed a crash dump, not what it had kept."""
    import signal

    import ray

    def init(**options):  # as Ray does: its handler in place, then what it met
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise ValueError(f"Invalid address format: {options['address']}")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def the_run_s(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, the_run_s)
    try:
        with pytest.raises(MirsearchError, match="cannot join the Ray cluster at garbage: Invalid"):
            list(analyse_all(demo_files, settings, engine="ray", address="garbage"))
        assert signal.getsignal(signal.SIGTERM) is the_run_s
    finally:
        signal.signal(signal.SIGTERM, before)
    with pytest.raises(MirsearchError, match=r"cannot reach the Ray cluster at 127.0.0.1:1 \("):
        list(analyse_all(demo_files, settings, engine="ray", address="127.0.0.1:1"))


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'mirsearch[ray]')",
)
def test_a_ray_cluster_refusing_the_run_says_how_to_give_it_its_token(
    settings, demo_files, monkeypatch
):
    """A cluster `ray start` made asks a token, which Ray 2.60 sends to an address it is given
    only with RAY_AUTH_MODE=token: the run had said "Failed to connect" after Ray's lines of
    InvalidAuthToken, the README telling to keep the head's RAY_AUTH_MODE, unset on both."""
    import ray

    def init(**options):  # as Ray does once the cluster refused the run
        raise ConnectionError(f"Failed to connect to Ray cluster at {options['address']}")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr("mirsearch.analysis._reachable", lambda address: None)
    with pytest.raises(MirsearchError, match="at head:6379: Failed to connect") as raised:
        list(analyse_all(demo_files, settings, engine="ray", address="head:6379"))
    assert "RAY_AUTH_MODE=token" in str(raised.value)


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'mirsearch[ray]')",
)
def test_more_workers_than_a_ray_cluster_has_free_cpus_is_said(
    settings, demo_files, monkeypatch, caplog
):
    """The actors past the free CPUs wait to be placed, and the results, in order, with them:
    a run had hung without a word."""
    import ray

    def placed(**options):
        raise RuntimeError("no actor made in this test")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: None)
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 1.0})
    monkeypatch.setattr(ray, "remote", placed)
    with pytest.raises(RuntimeError, match="no actor made"):
        list(analyse_all(demo_files, settings, engine="ray", workers=3, address="auto"))
    assert "3 workers asked of the Ray cluster at auto, which has 1 CPUs free" in caplog.text


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (pip install 'mirsearch[ray]')",
)
def test_ray_without_an_address_starts_its_own_where_a_cluster_is_named(
    settings, demo_files, monkeypatch
):
    """`--engine ray` with no --address is a local Ray, as the README's first command says: where
    a cluster was named (RAY_ADDRESS, or a `ray start --head` on this machine, its next
    command) ray.init joined it and refused the CPUs asked, "cannot join the Ray cluster at
    None"."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    results = list(analyse_all(demo_files[:1], settings, engine="ray", workers=1))
    assert len(results) == 1 and results[0].error is None and len(results[0].vectors) > 0


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
