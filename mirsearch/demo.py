"""A small demo catalog of synthetic music, for a fresh clone without ../shared/audio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mirsearch.encoding import write

NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
FORMATS = [".flac", ".ogg", ".mp3", ".wav"]
STYLES = ["electronic", "rock", "jazz", "ballroom"]


@dataclass(frozen=True)
class Piece:
    """What one synthetic track is made of; enough to tell tracks apart by ear and by model."""

    title: str
    genre: str
    tempo_bpm: float
    tonic: int  # pitch class of the key
    minor: bool
    duration_s: float
    seed: int


def render(piece: Piece, *, sample_rate: int = 22_050) -> np.ndarray:
    """Chords, a bass line, a melody and drums at the piece's tempo, as mono float32 in [-1, 1]."""
    rng = np.random.default_rng(piece.seed)
    n = int(piece.duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    beat_s = 60.0 / piece.tempo_bpm
    scale = MINOR if piece.minor else MAJOR
    progression = rng.choice([0, 3, 4, 5], size=4, replace=False)
    out = np.zeros(n, dtype=np.float64)
    harmonics = rng.uniform(0.2, 0.8, size=4)
    for bar_start in np.arange(0, piece.duration_s, 4 * beat_s):
        degree = progression[int(bar_start / (4 * beat_s)) % 4]
        chord = [
            48 + piece.tonic + scale[(degree + step) % 7] + 12 * ((degree + step) // 7)
            for step in (0, 2, 4)
        ]
        root = chord[0]
        span = (t >= bar_start) & (t < bar_start + 4 * beat_s)
        for midi in chord:
            out[span] += 0.12 * _tone(t[span], _hz(midi), harmonics)
        out[span] += 0.2 * _tone(t[span], _hz(root - 12), harmonics[:2])
        for beat in range(8):
            onset = bar_start + beat * beat_s / 2
            note = 72 + piece.tonic + scale[rng.integers(0, 7)]
            near = _around(onset, beat_s / 2, sample_rate, n)
            out[near] += 0.1 * _note(t[near], onset, beat_s / 2, _hz(note), harmonics)
    for onset in np.arange(0, piece.duration_s, beat_s):
        near = _around(onset, 0.2, sample_rate, n)
        out[near] += _drum(t[near], onset, rng, kick=int(onset / beat_s) % 2 == 0)
    return (0.8 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def _around(onset: float, length_s: float, sample_rate: int, n: int) -> slice:
    """The samples a sound from `onset` for `length_s` can touch, a few spare at each end (its
    own test of which samples it covers decides; outside them it adds nothing)."""
    start = max(0, int(onset * sample_rate) - 2)
    return slice(start, min(n, int((onset + length_s) * sample_rate) + 3))


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _tone(t: np.ndarray, hz: float, harmonics: np.ndarray) -> np.ndarray:
    return sum(a * np.sin(2 * np.pi * hz * (h + 1) * t) for h, a in enumerate(harmonics))


def _note(t: np.ndarray, onset: float, length_s: float, hz: float, harmonics) -> np.ndarray:
    local = t - onset
    inside = (local >= 0) & (local < length_s)
    out = np.zeros_like(t)
    out[inside] = _tone(local[inside], hz, harmonics) * np.exp(-4 * local[inside] / length_s)
    return out


def _drum(t: np.ndarray, onset: float, rng: np.random.Generator, *, kick: bool) -> np.ndarray:
    local = t - onset
    inside = (local >= 0) & (local < 0.2)
    out = np.zeros_like(t)
    x = local[inside]
    if kick:
        out[inside] = 0.6 * np.sin(2 * np.pi * (60 + 80 * np.exp(-30 * x)) * x) * np.exp(-15 * x)
    else:
        out[inside] = 0.3 * rng.standard_normal(x.size) * np.exp(-25 * x)
    return out


def demo_pieces(n_tracks: int, *, seed: int = 7) -> list[Piece]:
    rng = np.random.default_rng(seed)
    return [
        Piece(
            title=f"Demo {i + 1}",
            genre=STYLES[i % len(STYLES)],
            tempo_bpm=float(rng.integers(70, 160)),
            tonic=int(rng.integers(0, 12)),
            minor=bool(rng.integers(0, 2)),
            duration_s=float(rng.integers(30, 61)),
            seed=seed * 1000 + i,
        )
        for i in range(n_tracks)
    ]


def write_demo_catalog(directory: Path, *, n_tracks: int = 8, seed: int = 7) -> list[Path]:
    """Render `n_tracks` pieces into `directory` in mixed formats, with title/artist/genre tags."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, piece in enumerate(demo_pieces(n_tracks, seed=seed)):
        key = f"{NOTE_NAMES[piece.tonic]} {'minor' if piece.minor else 'major'}"
        path = directory / f"demo-{i + 1:02d}{FORMATS[i % len(FORMATS)]}"
        tags = {
            "title": piece.title,
            "artist": "mirsearch demo",
            "genre": piece.genre,
            "comment": f"{piece.tempo_bpm:.0f} BPM, {key}",
        }
        write(path, render(piece), 22_050, tags=tags)
        paths.append(path)
    return paths
