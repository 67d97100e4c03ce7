"""The changes an upload may have undergone, for the near-duplicate evaluation (project's own code).

Each transform takes mono float32 samples at `sample_rate` and returns (samples, sample_rate).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from mirsearch.audio import load
from mirsearch.config import AudioConfig
from mirsearch.encoding import write

Transform = Callable[..., tuple[np.ndarray, int]]


def _reencode(x: np.ndarray, sr: int, *, suffix: str, bit_rate: int, **_) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / f"clip{suffix}", x, sr, bit_rate=bit_rate)
        return load(path, config=AudioConfig(sample_rate=sr)).samples, sr


def _gain(x: np.ndarray, sr: int, *, db: float, **_) -> tuple[np.ndarray, int]:
    return np.clip(x * 10 ** (db / 20), -1.0, 1.0).astype(np.float32), sr


def _noise(x: np.ndarray, sr: int, *, snr_db: float, rng: np.random.Generator, **_):
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    noise = rng.standard_normal(x.size) * rms * 10 ** (-snr_db / 20)
    return (x + noise).astype(np.float32), sr


def _filter(x: np.ndarray, sr: int, *, kind: str, hz: float, **_) -> tuple[np.ndarray, int]:
    t = torch.from_numpy(x)
    biquad = AF.lowpass_biquad if kind == "low" else AF.highpass_biquad
    for _ in range(2):  # two biquads: 24 dB per octave
        t = biquad(t, sr, hz)
    return t.numpy().astype(np.float32), sr


def _telephone(x: np.ndarray, sr: int, **_) -> tuple[np.ndarray, int]:
    """Down to 8 kHz mono and back: everything above 4 kHz is gone."""
    low = AF.resample(torch.from_numpy(x), sr, 8000)
    return AF.resample(low, 8000, sr).numpy().astype(np.float32), sr


def _ratio(factor: float) -> tuple[int, int]:
    """A small-integer fraction close to `factor` (resampling cost grows with the terms)."""
    for denominator in (20, 50, 100, 200, 400):
        numerator = round(factor * denominator)
        if abs(numerator / denominator - factor) < 2e-4:
            return numerator, denominator
    return round(factor * 1000), 1000


def speed(x: np.ndarray, sr: int, *, factor: float, **_) -> tuple[np.ndarray, int]:
    """Play `factor` times as fast: tempo and pitch both rise (a turntable or tape change)."""
    up, down = _ratio(factor)
    return AF.resample(torch.from_numpy(x), up, down).numpy().astype(np.float32), sr


def tempo(x: np.ndarray, sr: int, *, factor: float, **_) -> tuple[np.ndarray, int]:
    """`factor` times as fast at the same pitch (phase vocoder)."""
    n_fft, hop = 2048, 512
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.from_numpy(x), n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, np.pi * hop, spec.shape[0])[:, None]
    stretched = AF.phase_vocoder(spec, factor, advance)
    length = int(round(x.size / factor))
    y = torch.istft(stretched, n_fft, hop, window=window, length=length)
    return y.numpy().astype(np.float32), sr


def pitch(x: np.ndarray, sr: int, *, semitones: float, **_) -> tuple[np.ndarray, int]:
    """Shift pitch by `semitones`, keeping tempo: stretch the time, then resample back."""
    factor = 2 ** (semitones / 12)
    y, _ = tempo(x, sr, factor=1 / factor)
    return speed(y, sr, factor=factor)


def _reverb(x: np.ndarray, sr: int, *, rng: np.random.Generator, rt60_s: float = 0.8, **_):
    n = int(rt60_s * sr)
    impulse = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
    impulse[0] = 1.0
    wet = np.fft.irfft(np.fft.rfft(x, x.size + n) * np.fft.rfft(impulse, x.size + n))[: x.size]
    wet *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / (np.mean(wet**2) + 1e-12))
    return (0.5 * x + 0.5 * wet).astype(np.float32), sr


def _mix(x: np.ndarray, sr: int, *, db: float, background: np.ndarray, rng, **_):
    """Another recording underneath at `db` relative to the clip's level."""
    start = int(rng.integers(0, max(1, background.size - x.size)))
    other = np.resize(background[start : start + x.size], x.size)
    level = np.sqrt(
        np.mean(x.astype(np.float64) ** 2) / (np.mean(other.astype(np.float64) ** 2) + 1e-12)
    )
    return (x + other * level * 10 ** (db / 20)).astype(np.float32), sr


TRANSFORMS: dict[str, Transform] = {
    "none": lambda x, sr, **_: (x, sr),
    "mp3_64k": partial(_reencode, suffix=".mp3", bit_rate=64_000),
    "ogg_low": partial(_reencode, suffix=".ogg", bit_rate=32_000),
    "aac_96k": partial(_reencode, suffix=".m4a", bit_rate=96_000),
    "gain_+6db": partial(_gain, db=6.0),
    "gain_-10db": partial(_gain, db=-10.0),
    "noise_snr20": partial(_noise, snr_db=20.0),
    "noise_snr10": partial(_noise, snr_db=10.0),
    "lowpass_4k": partial(_filter, kind="low", hz=4000.0),
    "highpass_300": partial(_filter, kind="high", hz=300.0),
    "mono_8k": _telephone,
    "speed_+2%": partial(speed, factor=1.02),
    "speed_-2%": partial(speed, factor=0.98),
    "speed_+5%": partial(speed, factor=1.05),
    "speed_-5%": partial(speed, factor=0.95),
    "tempo_+5%": partial(tempo, factor=1.05),
    "tempo_-5%": partial(tempo, factor=0.95),
    "pitch_+1st": partial(pitch, semitones=1.0),
    "pitch_-1st": partial(pitch, semitones=-1.0),
    "reverb": _reverb,
    "mix_-12db": partial(_mix, db=-12.0),
}
