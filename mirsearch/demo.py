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
    groove: str  # a key of GROOVES
    tempo_bpm: float
    tonic: int  # pitch class of the key
    minor: bool
    duration_s: float
    seed: int


@dataclass(frozen=True)
class Groove:
    """One bar of a style's rhythm on a grid of `steps` (step 0 the downbeat): where each part
    plays."""

    beats: int  # beats a bar
    steps: int  # grid steps a bar
    tempo_bpm: tuple[int, int]  # the range a piece's tempo is drawn from
    kick: tuple[int, ...]
    snare: tuple[int, ...]
    hat: tuple[int, ...]
    bass: tuple[int, ...]
    chords: tuple[int, ...]  # each struck chord rings until the next
    melody: float  # chance that a step starts a melody note (1 to 3 steps long)
    swing: float = 0.0  # each odd step played late by this fraction of a step


# Two grooves a style: a catalog's first piece of a style plays the first, its second the other.
# Each pair apart in pattern, drums and tempo: one pattern for all had lined two pieces up as a
# copy (score 0.997 at speed 0.94). The tempo ranges are read right by features.estimate_tempo
# (swing at 144 BPM was read at 72, half-time at 141 at 113).
GROOVES = {
    "four on the floor": Groove(4, 16, (120, 128), (0, 4, 8, 12), (4, 12), (2, 6, 10, 14),
                                (2, 6, 10, 14), (0,), 0.5),
    "half-time": Groove(4, 16, (134, 142), (0, 7, 10), (8,), tuple(range(16)),
                        (0, 7, 10), (0, 8), 0.2),
    "backbeat": Groove(4, 8, (96, 112), (0, 3, 4), (2, 6), tuple(range(8)),
                       tuple(range(8)), tuple(range(8)), 0.3),
    "shuffle": Groove(4, 12, (112, 128), (0, 6), (3, 9), (0, 2, 3, 5, 6, 8, 9, 11),
                      (0, 2, 3, 5, 6, 8, 9, 11), (0, 6), 0.25),
    "swing": Groove(4, 8, (128, 140), (0,), (2, 6), (0, 2, 3, 4, 6, 7),
                    (0, 2, 4, 6), (1, 4, 7), 0.45, swing=1 / 3),
    "ballad": Groove(4, 8, (62, 70), (0, 5), (2, 6), (0, 2, 4, 6), (0, 4), (0,), 0.35),
    "waltz": Groove(3, 3, (84, 96), (0,), (), (1, 2), (0,), (1, 2), 0.6),
    "bossa": Groove(4, 16, (100, 112), (0, 3, 4, 7, 8, 11, 12, 15), (0, 3, 6, 10, 13),
                    tuple(range(0, 16, 2)), (0, 6, 8, 14), (3, 6, 10, 13), 0.3),
}  # fmt: skip
STYLE_GROOVES = {
    "electronic": ("four on the floor", "half-time"),
    "rock": ("backbeat", "shuffle"),
    "jazz": ("swing", "ballad"),
    "ballroom": ("waltz", "bossa"),
}


@dataclass(frozen=True)
class Kit:
    """The ranges a style's drum sounds are drawn from; each piece tunes its own within them."""

    kick_hz: tuple[float, float]  # the kick's pitch as struck, falling to about 50 Hz
    kick_decay: tuple[float, float]  # how fast it fades, per second (so the other decays)
    snare_decay: tuple[float, float]
    hat_decay: tuple[float, float]  # a closed hat fades fast, a ride slowly
    snare_bright: tuple[float, float]  # 0: the snare's noise dark, 1: bright
    levels: tuple[float, float, float]  # kick, snare, hat


KITS = {
    "electronic": Kit((120, 170), (5, 8), (16, 24), (40, 60), (0.6, 0.9), (1.0, 0.5, 0.2)),
    "rock": Kit((90, 120), (14, 20), (10, 16), (25, 40), (0.3, 0.6), (0.8, 0.7, 0.25)),
    "jazz": Kit((70, 90), (18, 26), (6, 10), (4, 7), (0.1, 0.3), (0.35, 0.2, 0.3)),
    "ballroom": Kit((100, 130), (12, 18), (40, 60), (30, 50), (0.8, 1.0), (0.6, 0.35, 0.2)),
}

# Each style's instrument: the partials' levels and how fast a struck note fades (per second).
# Every partial, not odd ones alone: a clarinet-like ballroom voice had read C major as E minor.
VOICES = {
    "electronic": (np.array([1.0, 0.5, 0.33, 0.25, 0.2]), 0.0),
    "rock": (np.array([1.0, 0.8, 0.6, 0.5, 0.4]), 2.0),
    "jazz": (np.array([1.0, 0.25, 0.06]), 4.0),
    "ballroom": (np.array([1.0, 0.6, 0.3, 0.15]), 1.0),
}


def render(piece: Piece, *, sample_rate: int = 22_050) -> np.ndarray:
    """Drums, bass, chords and a melody in the piece's groove, as mono float32 in [-1, 1]."""
    rng = np.random.default_rng(piece.seed)
    groove, (partials, fade) = GROOVES[piece.groove], VOICES[piece.genre]
    partials = partials * rng.uniform(0.6, 1.4, size=partials.size)
    drums = _drums(KITS[piece.genre], rng, sample_rate)
    scale = MINOR if piece.minor else MAJOR
    progression = [0, *rng.permutation([3, 4, 5])]  # I, then IV, V, vi: the key read from it
    bass_line = rng.choice(3, size=4, p=[0.6, 0.15, 0.25])  # chord tones the bass steps through
    step_s = 60.0 / piece.tempo_bpm * groove.beats / groove.steps
    n = int(piece.duration_s * sample_rate)
    out = np.zeros(n)
    pitch, hits = 3, 0  # the melody's place in the scale, and the bass notes played so far
    for bar in range(int(piece.duration_s / (step_s * groove.steps)) + 1):
        degree = progression[bar % 4]
        chord = [48 + piece.tonic + _degree(scale, degree + s) for s in (0, 2, 4)]
        for step in range(groove.steps):
            at = int((bar * groove.steps + step + groove.swing * (step % 2)) * step_s * sample_rate)
            if at >= n:
                break
            for part, sound in drums.items():
                if step in getattr(groove, part):
                    _add(out, at, sound)
            if step in groove.bass:
                hz = _hz(chord[bass_line[hits % 4]] - 12)
                length_s = _until(groove, groove.bass, step) * step_s
                _add(out, at, _note(hz, length_s, partials[:2], fade, sample_rate))
                hits += 1
            if step in groove.chords:
                length_s = _until(groove, groove.chords, step) * step_s
                for midi in chord:
                    _add(out, at, 0.5 * _note(_hz(midi), length_s, partials, fade, sample_rate))
            if rng.random() < groove.melody:
                pitch = int(np.clip(pitch + rng.integers(-2, 3), 0, 9))
                length_s = step_s * rng.integers(1, 4)
                hz = _hz(72 + piece.tonic + _degree(scale, pitch))
                _add(out, at, 0.6 * _note(hz, length_s, partials, fade + 2, sample_rate))
    return (0.8 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def _degree(scale: list[int], degree: int) -> int:
    """Semitones above the tonic of a scale degree counted from 0, past the octave too."""
    return scale[degree % 7] + 12 * (degree // 7)


def _until(groove: Groove, steps: tuple[int, ...], step: int) -> int:
    """Steps from `step` to the part's next one, in this bar or the next."""
    later = [s for s in steps if s > step]
    return (later[0] if later else steps[0] + groove.steps) - step


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _add(out: np.ndarray, at: int, sound: np.ndarray) -> None:
    """Mix `sound` into `out` from sample `at`, as much of it as fits."""
    end = min(out.size, at + sound.size)
    out[at:end] += sound[: end - at]


def _note(hz: float, length_s: float, partials: np.ndarray, fade: float, sample_rate: int):
    """One note of `length_s`: its partials' sines fading at `fade` per second, without clicks."""
    t = np.arange(int(length_s * sample_rate)) / sample_rate
    tone = sum(a * np.sin(2 * np.pi * hz * (h + 1) * t) for h, a in enumerate(partials) if a)
    edges = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # 5 ms in and out
    return tone * np.exp(-fade * t) * edges


def _drums(kit: Kit, rng: np.random.Generator, sample_rate: int) -> dict[str, np.ndarray]:
    """The piece's kick, snare and hat, each tuned within the style's kit, as sample arrays."""
    t = np.arange(int(0.5 * sample_rate)) / sample_rate
    kick_hz, fall = rng.uniform(*kit.kick_hz), 30.0
    phase = 2 * np.pi * (50 * t + (kick_hz - 50) * (1 - np.exp(-fall * t)) / fall)
    noise = rng.standard_normal(t.size)
    bright = np.diff(noise, prepend=0.0)  # white noise's high end lifted
    mix = rng.uniform(*kit.snare_bright)
    body = np.sin(2 * np.pi * rng.uniform(160, 240) * t)
    snare = (mix * bright + (1 - mix) * noise) * 0.5 + 0.4 * body
    hat = np.diff(bright, prepend=0.0)
    hat += 0.3 * sum(np.sin(2 * np.pi * hz * t) for hz in rng.uniform(3000, 7000, size=3))
    sounds = {
        "kick": np.sin(phase) * np.exp(-rng.uniform(*kit.kick_decay) * t),
        "snare": snare * np.exp(-rng.uniform(*kit.snare_decay) * t),
        "hat": hat / 4 * np.exp(-rng.uniform(*kit.hat_decay) * t),
    }
    return {part: level * sounds[part] for part, level in zip(sounds, kit.levels, strict=True)}


def demo_pieces(n_tracks: int, *, seed: int = 7) -> list[Piece]:
    """`n_tracks` pieces cycling through the styles, a style's next piece in its other groove."""
    rng = np.random.default_rng(seed)
    pieces = []
    for i in range(n_tracks):
        genre = STYLES[i % len(STYLES)]
        groove = STYLE_GROOVES[genre][(i // len(STYLES)) % 2]
        pieces.append(
            Piece(
                title=f"Demo {i + 1}",
                genre=genre,
                groove=groove,
                tempo_bpm=float(rng.integers(*GROOVES[groove].tempo_bpm)),
                tonic=int(rng.integers(0, 12)),
                minor=bool(rng.integers(0, 2)),
                duration_s=float(rng.integers(30, 61)),
                seed=seed * 1000 + i,
            )
        )
    return pieces


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
            "comment": f"{piece.groove}, {piece.tempo_bpm:.0f} BPM, {key}",
        }
        write(path, render(piece), 22_050, tags=tags)
        paths.append(path)
    return paths
