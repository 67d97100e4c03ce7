"""Shared fixtures: ../shared (skipped with a reason when absent), synthetic audio, temp homes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import hypothesis
import numpy as np
import postgres
import pytest
import torch
from av.stream import Disposition

from mirsearch import fingerprint, verification
from mirsearch.config import FeatureConfig, Settings, TrainConfig
from mirsearch.demo import write_demo_catalog
from mirsearch.encoding import write
from mirsearch.features import log_mel

if TYPE_CHECKING:
    from mirsearch.api import Engine
    from mirsearch.schema import Track

# Hypothesis draws the same inputs on every run (and keeps no example database that would steer
# it), so a failure seen once reproduces; tests with their own settings say so too.
hypothesis.settings.register_profile("mirsearch", derandomize=True, database=None)
hypothesis.settings.load_profile("mirsearch")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SR = 16_000
# The `mirsearch` command of this environment (the entry point through the interpreter where the
# console script is not installed), for tests that run it as a user would, in its own process.
SCRIPT = Path(sys.executable).with_name("mirsearch")
CLI = (
    [str(SCRIPT)]
    if SCRIPT.is_file()
    else [sys.executable, "-c", "from mirsearch.cli import run; run()"]
)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs ../shared beside the checkout")
    return path


# -- real components: ../shared, PostgreSQL, Chromium ------------------------------------------
# Their tests skip, saying why, where the component is missing. In CI (CI=true) the components are
# installed by .ci/run, so such a skip is a failure: the summary lists them and the run fails.
REAL_COMPONENTS = ("shared", "postgres", "browser")
SHARED_FIXTURES = {"shared_dir", "shared_audio", "shared_genres"}
_skipped_components: list[tuple[str, str]] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_collection_modifyitems(items):
    """Mark the tests that need a real component: ../shared, PostgreSQL (the catalog's
    'postgresql' parameter), Chromium (already marked `browser`)."""
    for item in items:
        if SHARED_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.shared)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        needs = [name for name in REAL_COMPONENTS if name in report.keywords]
        if needs:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            _skipped_components.append((report.nodeid, f"{'/'.join(needs)}: {reason}"))


def pytest_terminal_summary(terminalreporter):
    if _skipped_components and in_ci():
        terminalreporter.section("real components skipped in CI: the run fails", red=True)
        for nodeid, reason in _skipped_components:
            terminalreporter.line(f"SKIPPED {nodeid} ({reason})")


def pytest_sessionfinish(session, exitstatus):
    if _skipped_components and in_ci() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="session")
def one_faiss_thread():
    """FAISS on one thread: OpenMP threads spin badly on a shared, busy 2-core machine."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def shared_audio(shared_dir) -> Path:
    return _need(shared_dir / "audio" / "manifest.tsv").parent


@pytest.fixture(scope="session")
def shared_genres(shared_dir) -> Path:
    return _need(shared_dir / "genres" / "manifest.tsv").parent


def tone(hz: float, seconds: float, *, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(x: np.ndarray, *, sr: int = SR) -> float:
    """The frequency of the strongest spectral peak (parabolic interpolation between bins)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    i = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[i - 1 : i + 2] + 1e-12)
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return (i + shift) * sr / x.size


def clicks(bpm: float, seconds: float, *, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Short noise bursts on every beat."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * sr), dtype=np.float32)
    for onset in np.arange(0, seconds, 60.0 / bpm):
        i = int(onset * sr)
        burst = x[i : i + 200]
        burst += 0.5 * rng.standard_normal(burst.size).astype(np.float32)
    return x


def chords(midi_chords: list[list[int]], *, seconds_each: float = 2.0, sr: int = SR) -> np.ndarray:
    """Each chord held for `seconds_each`, three harmonics per note."""
    t = np.arange(int(seconds_each * sr)) / sr
    out = []
    for chord in midi_chords:
        hz = [440.0 * 2 ** ((m - 69) / 12) for m in chord]
        out.append(sum(0.2 / h * np.sin(2 * np.pi * f * h * t) for f in hz for h in (1, 2, 3)))
    return np.concatenate(out).astype(np.float32)


def noise(seconds: float, *, sr: int = SR, seed: int = 0, amplitude: float = 0.2) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(
        np.float32
    )


def melody(seconds: float, *, seed: int) -> np.ndarray:
    """Harmonic notes of random pitch (A minor pentatonic) and length: music-like, seeded."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), dtype=np.float32)
    start = 0
    while start < out.size:
        length = int(rng.uniform(0.12, 0.5) * SR)
        hz = 220.0 * 2 ** (rng.choice([0, 3, 5, 7, 10, 12, 15]) / 12)
        t = np.arange(min(length, out.size - start)) / SR
        note = sum(np.sin(2 * np.pi * k * hz * t) / k for k in (1, 2, 3, 4))
        out[start : start + t.size] += 0.2 * note * np.exp(-4 * t)
        start += length
    return out


def talk(seconds: float, *, seed: int) -> np.ndarray:
    """Voice-like sound: syllables of 0.1-0.3 s, each a harmonic glide from a random pitch
    (120-260 Hz) with short pauses between; it never repeats itself as music does. Seeded."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR), dtype=np.float32)
    start = 0
    while start < out.size:
        length = min(int(rng.uniform(0.1, 0.3) * SR), out.size - start)
        t = np.arange(length) / SR
        hz = rng.uniform(120.0, 260.0) * (1 + rng.uniform(-0.3, 0.3) * t / max(t[-1], 1e-3))
        phase = 2 * np.pi * np.cumsum(hz) / SR
        syllable = sum(np.sin(k * phase) / k for k in range(1, 16))
        out[start : start + length] = (
            0.2 * syllable * np.sin(np.pi * t / t[-1] if length > 1 else 0)
        )
        start += length + int(rng.uniform(0.02, 0.12) * SR)
    return out


# a video container's (PyAV's name) picture and sound codecs; others take MPEG-4 and AAC
VIDEO_CODECS = {"flv": ("flv", "aac"), "mpeg": ("mpeg1video", "mp2")}


def write_video(
    path: Path,
    tracks: list[np.ndarray],
    *,
    video_s: float,
    audio_start_s: float = 0.0,
    default: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """A small video: `video_s` of 64x48 picture, then each of `tracks` (mono, at SR) as a sound
    stream, all beginning `audio_start_s` into it; with `default`, that track alone (from 0) is
    marked default. The container follows the extension; `options` go to its muxer."""
    with av.open(str(path), "w", options=options or {}) as out:
        picture_codec, sound_codec = VIDEO_CODECS.get(out.format.name, ("mpeg4", "aac"))
        picture = out.add_stream(picture_codec, rate=25)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        rate = 48_000 if sound_codec == "mp2" else SR
        sounds = [out.add_stream(sound_codec, rate=rate, layout="mono") for _ in tracks]
        for i, sound in enumerate(sounds):
            sound.disposition = Disposition.default if i == default else Disposition(0)
        for i in range(round(video_s * 25)):
            picture_frame = np.full((48, 64, 3), i % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture_frame, format="rgb24")
            frame.pts = i
            out.mux(picture.encode(frame))
        out.mux(picture.encode(None))
        for sound, samples in zip(sounds, tracks, strict=True):
            frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
            frame.sample_rate, frame.time_base = SR, Fraction(1, SR)
            frame.pts = round(audio_start_s * SR)
            resampler = av.AudioResampler(format=sound.format.name, layout="mono", rate=rate)
            for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
                out.mux(sound.encode(resampled))
            out.mux(sound.encode(None))
    return Path(path)


# the training tests' network: a small CNN (TrainConfig.model_args)
TINY = {"channels": (8, 16, 16, 32), "embedding_dim": 32}
# A few seconds of training that learns the synthetic classes below.
TINY_CONFIG = TrainConfig(
    epochs=6,
    steps_per_epoch=8,
    batch_size=12,
    lr=5e-3,
    mixup_alpha=0.0,
    contrastive_weight=0.2,
    model_args=TINY,
    seed=0,
)


def synthetic_classes(n_per_class: int, *, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Tones, noise and click tracks with random pitch, colour and tempo."""
    rng = np.random.default_rng(seed)
    signals, labels = [], []
    for i in range(n_per_class):
        signals.append(tone(float(rng.uniform(200, 2000)), 6.0))
        signals.append(noise(6.0, seed=seed * 1000 + i))
        signals.append(clicks(float(rng.uniform(80, 160)), 6.0, seed=i))
        labels += [0, 1, 2]
    return signals, np.array(labels)


def print_of(x: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The verification print of 16 kHz samples `x`."""
    return fingerprint.make_print(log_mel(torch.from_numpy(x), config).numpy(), config)


def whole(seconds: float, *, track_offset_s: float = 0.0) -> verification.Alignment:
    """A query of `seconds` aligned at speed 1.0 with the track from `track_offset_s`."""
    return verification.Alignment(0.0, seconds, track_offset_s, 1.0)


# the check's options (DuplicateConfig's verify_* of the day these tests were written)
PRINT_CHECK = {
    "frames_per_s": fingerprint.print_frames_per_s(FeatureConfig()),
    "chunk_s": 3.0,
    "chunk_hop_s": 1.0,
    "max_lag_s": 1.0,
    "max_chunks": 10,
}


@pytest.fixture
def write_audio(tmp_path):
    """write_audio(name, samples, sr=16000, **tags) → path of an encoded file in tmp_path."""

    def _write(name: str, samples: np.ndarray, sr: int = SR, **tags) -> Path:
        return write(tmp_path / name, samples, sr, tags=tags or None)

    return _write


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings with a fresh home (SQLite catalog + index) under tmp_path."""
    return Settings.from_env({}, home=tmp_path / "home")


@pytest.fixture(scope="session")
def postgres_server():
    """Admin URL of a throwaway PostgreSQL server (or the test is skipped, saying why)."""
    try:
        with postgres.server() as url:
            yield url
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The catalog URL of each backend in turn: SQLite in tmp_path, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'catalog.db'}"
        return
    with postgres.fresh_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture
def catalog(database_url):
    """A catalog on each backend in turn (database_url), migrated on first use."""
    from mirsearch.catalog import Catalog

    db = Catalog(database_url)
    yield db
    db.close()


@pytest.fixture
def sqlite_catalog(tmp_path):
    """A SQLite catalog in tmp_path/var."""
    from mirsearch.catalog import Catalog

    db = Catalog(f"sqlite:///{tmp_path / 'var' / 'catalog.db'}")
    yield db
    db.close()


def add_tracks(db, **rows: dict) -> dict[str, int]:
    """Insert indexed tracks named by keyword (path = /music/<name>.flac unless given) into the
    Catalog `db`; returns name → id."""
    from mirsearch.schema import Track

    with db.session() as session, session.begin():
        tracks = {}
        for name, fields in rows.items():
            tracks[name] = Track(**{"path": f"/music/{name}.flac", "status": "indexed", **fields})
            session.add(tracks[name])
    return {name: track.id for name, track in tracks.items()}


def table_names(db) -> set[str]:
    """The tables of the Catalog `db`'s database."""
    from sqlalchemy import inspect

    return set(inspect(db.engine).get_table_names())


@pytest.fixture
def db_settings(tmp_path, database_url) -> Settings:
    """Settings with a fresh home under tmp_path and the catalog on each backend in turn."""
    home = Settings.from_env({}, home=tmp_path / "home")
    return dataclasses.replace(home, database_url=database_url)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The four demo tracks (mirsearch/demo.py), written once per test module."""
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=4)[0].parent


@pytest.fixture
def folder(tmp_path, demo_dir):
    """The demo tracks plus one file of every bad kind."""
    root = tmp_path / "music"
    shutil.copytree(demo_dir, root)
    (root / "empty.mp3").write_bytes(b"")
    (root / "text.mp3").write_text("these are liner notes, not audio\n" * 20)
    (root / "notes.txt").write_text("ignored: neither an audio name nor audio content")
    truncated = (root / "demo-01.flac").read_bytes()
    (root / "truncated.flac").write_bytes(truncated[: len(truncated) // 3])
    write(root / "silent.wav", np.zeros(16_000 * 5, dtype=np.float32), 16_000)
    write(root / "short.wav", tone(440.0, 0.5), 16_000)
    return root


def rows(engine: Engine) -> dict[str, Track]:
    """The catalog's tracks by file name, whatever their status."""
    tracks, _ = engine.catalog.list_tracks(status=None, per_page=1000)
    return {os.path.basename(t.path): t for t in tracks}


def walk(rng: np.random.Generator, n: int, *, dim: int, step: float = 0.35) -> np.ndarray:
    """n unit vectors, each a random step of about `step` from the last (music changes slowly)."""
    from mirsearch.index_kinds import normalise

    vectors = [normalise(rng.standard_normal(dim))[0]]
    for _ in range(n - 1):
        vectors.append(normalise(vectors[-1] + step / dim**0.5 * rng.standard_normal(dim))[0])
    return np.array(vectors, dtype=np.float32)


def windows_at(windows: np.ndarray, times_s: np.ndarray, *, hop_s: float) -> np.ndarray:
    """The track's window vectors (one every hop_s) interpolated at `times_s`."""
    from mirsearch.index_kinds import normalise

    position = np.asarray(times_s) / hop_s
    below = np.clip(np.floor(position).astype(int), 0, len(windows) - 2)
    after = (position - below)[:, None]
    return normalise((1 - after) * windows[below] + after * windows[below + 1])


def run_script(script: str, *args, timeout: float = 60, **options) -> subprocess.CompletedProcess:
    """`python -c script args…`, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **options,
    )


@pytest.fixture(scope="module")
def clustered_vectors() -> tuple[np.ndarray, np.ndarray]:
    """20,000 catalog and 200 query unit vectors (64-d) scattered around 200 shared centres."""
    from mirsearch.index_kinds import normalise

    def clustered(rng, centres: np.ndarray, n: int, *, spread: float = 0.1) -> np.ndarray:
        noise = spread * rng.standard_normal((n, centres.shape[1]))
        return normalise(centres[rng.integers(0, len(centres), n)] + noise)

    rng = np.random.default_rng(0)
    centres = normalise(rng.standard_normal((200, 64)))
    return clustered(rng, centres, 20_000), clustered(rng, centres, 200)


@pytest.fixture
def unlistable(monkeypatch):
    """Call it with a folder to make that folder unlistable, as chmod 000 does to anyone but
    root (who runs the tests here)."""
    locked: set[str] = set()
    listed = os.scandir

    def scandir(path):
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listed(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return lambda folder: locked.add(str(folder))
