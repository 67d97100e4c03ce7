"""Training views: crops of a signal, changed the way real uploads differ from catalog audio.

A view is a log-mel crop of `window + 2·context` seconds. The heavy view may be sped up, pitch-
or tempo-shifted, louder or quieter, noisy, filtered, band-limited, reverberant, mixed with other
music and masked; the light view is the catalog side: the same music at a slightly shifted start.
Speed and pitch change the waveform (resampling). Tempo, and the time correction a pitch shift
needs, either stretch the mel frames (clean) or run a phase vocoder on the waveform, whose smeared
transients and phasiness are what real time-stretching tools leave behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from mirsearch.config import FeatureConfig
from mirsearch.features import log_mel


@dataclass(frozen=True)
class AugmentConfig:
    max_shift_s: float = (
        0.75  # start offset between the two views (catalog windows are 1.5 s apart)
    )
    speed: tuple[float, float, float] = (0.4, 0.94, 1.06)  # (probability, low, high) factor
    pitch: tuple[float, float, float] = (0.3, -1.2, 1.2)  # (probability, low, high) semitones
    tempo: tuple[float, float, float] = (0.3, 0.94, 1.06)  # (probability, low, high) factor
    vocoder: float = 0.6  # probability that tempo and pitch go through a phase vocoder
    vocoder_n_fft: tuple[int, ...] = (1024, 2048)  # its frame lengths, chosen at random
    gain: tuple[float, float, float] = (0.5, -10.0, 6.0)  # (probability, low, high) dB, then clip
    noise: tuple[float, float, float] = (0.4, 5.0, 30.0)  # (probability, low, high) SNR dB
    low_pass: tuple[float, float, float] = (0.2, 2500.0, 5000.0)  # (probability, low, high) Hz
    high_pass: tuple[float, float, float] = (0.3, 150.0, 500.0)  # (probability, low, high) Hz
    band_limit: float = 0.15  # probability of cutting everything above 4 kHz (8 kHz telephone)
    reverb: tuple[float, float, float] = (0.2, 0.3, 1.2)  # (probability, low, high) RT60 s
    mix: tuple[float, float, float] = (0.25, -15.0, -6.0)  # (probability, low, high) dB of other
    mask: float = 0.3  # probability of one frequency and one time mask


@dataclass(frozen=True)
class View:
    samples: np.ndarray  # the changed waveform
    frames: int  # log-mel frames it must fill (a tempo change stretches it to this)
    mask: bool  # whether to mask a band and a stretch of time


class Augmenter:
    """Makes light and heavy log-mel views from mono float32 signals at one sample rate."""

    def __init__(
        self,
        feature_config: FeatureConfig,
        config: AugmentConfig = AugmentConfig(),
        *,
        rng: np.random.Generator,
    ):
        self.features = feature_config
        self.config = config
        self.rng = rng
        self.sr = feature_config.sample_rate

    def _chance(self, spec) -> bool:
        probability = spec if isinstance(spec, float) else spec[0]
        return self.rng.random() < probability

    def _uniform(self, spec) -> float:
        return float(self.rng.uniform(spec[1], spec[2]))

    def view(
        self,
        source: np.ndarray,
        start_s: float,
        *,
        length_s: float,
        heavy: bool,
        other: np.ndarray | None = None,
    ) -> View:
        """`length_s` of `source` from `start_s`, augmented if heavy (see `to_log_mel`)."""
        c = self.config
        speed = self._uniform(c.speed) if heavy and self._chance(c.speed) else 1.0
        semitones = self._uniform(c.pitch) if heavy and self._chance(c.pitch) else 0.0
        tempo = self._uniform(c.tempo) if heavy and self._chance(c.tempo) else 1.0
        pitch = speed * 2 ** (semitones / 12)  # how much the frequencies rise
        out_n = int(length_s * self.sr)
        raw_n = int(round(out_n * speed * tempo))  # input needed to fill the output
        x = _crop(source, int(start_s * self.sr), raw_n)
        if pitch != 1.0:
            x = _resample(x, int(round(raw_n / pitch)))
        if abs(x.size - out_n) > self.features.hop_length and self._chance(c.vocoder):
            x = _phase_vocoder(x, out_n, n_fft=int(self.rng.choice(c.vocoder_n_fft)))
        if heavy:
            x = self._waveform_effects(x, other)
        frames = out_n // self.features.hop_length + 1
        return View(x, frames, heavy and self._chance(c.mask))

    def to_log_mel(self, views: list[View]) -> torch.Tensor:
        """(B, n_mels, frames) log-mel of the views, stretched in time to their target length.

        One batched mel call (views zero-padded to the longest); stretching the frames changes
        tempo and keeps pitch.
        """
        longest = max(v.samples.size for v in views)
        batch = np.zeros((len(views), longest), dtype=np.float32)
        for i, v in enumerate(views):
            batch[i, : v.samples.size] = v.samples
        mel = log_mel(torch.from_numpy(batch), self.features)
        out = []
        for i, v in enumerate(views):
            m = mel[i, :, : v.samples.size // self.features.hop_length + 1]
            if m.shape[-1] != v.frames:
                m = F.interpolate(m[None], size=v.frames, mode="linear", align_corners=False)[0]
            out.append(self._mask(m) if v.mask else m)
        return torch.stack(out)

    def _waveform_effects(self, x: np.ndarray, other: np.ndarray | None) -> np.ndarray:
        c, rng = self.config, self.rng
        if other is not None and self._chance(c.mix):
            y = _crop(other, int(rng.integers(0, max(1, other.size - x.size))), x.size)
            x = x + y * _rms(x) / (_rms(y) + 1e-9) * 10 ** (self._uniform(c.mix) / 20)
        if self._chance(c.reverb):
            x = _reverb(x, self.sr, self._uniform(c.reverb), rng)
        spectrum = np.fft.rfft(x)
        freqs = np.fft.rfftfreq(x.size, 1 / self.sr)
        if self._chance(c.low_pass):
            spectrum /= np.sqrt(1 + (freqs / self._uniform(c.low_pass)) ** 8)
        if self._chance(c.high_pass):
            spectrum /= np.sqrt(1 + (self._uniform(c.high_pass) / np.maximum(freqs, 1.0)) ** 8)
        if self._chance(c.band_limit):
            spectrum[freqs > 4000.0] = 0.0
        x = np.fft.irfft(spectrum, x.size)
        if self._chance(c.noise):
            snr_db = self._uniform(c.noise)
            x = x + rng.standard_normal(x.size) * _rms(x) * 10 ** (-snr_db / 20)
        if self._chance(c.gain):
            x = np.clip(x * 10 ** (self._uniform(c.gain) / 20), -1.0, 1.0)
        return x.astype(np.float32)

    def _mask(self, mel: torch.Tensor) -> torch.Tensor:
        mel = mel.clone()
        n_mels, n_frames = mel.shape
        f0, fw = int(self.rng.integers(0, n_mels - 8)), int(self.rng.integers(1, 8))
        t0, tw = int(self.rng.integers(0, max(1, n_frames - 20))), int(self.rng.integers(1, 20))
        floor = mel.min()
        mel[f0 : f0 + fw, :] = floor
        mel[:, t0 : t0 + tw] = floor
        return mel


def _crop(x: np.ndarray, start: int, n: int) -> np.ndarray:
    """x[start : start + n], zero-padded where it runs past either end."""
    out = np.zeros(n, dtype=np.float32)
    lo, hi = max(0, start), min(x.size, start + n)
    if hi > lo:
        out[lo - start : hi - start] = x[lo:hi]
    return out


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Linear-interpolation resampling to n samples (cheap; fine for augmentation)."""
    return np.interp(np.linspace(0, x.size - 1, n), np.arange(x.size), x).astype(np.float32)


def _phase_vocoder(x: np.ndarray, n: int, *, n_fft: int) -> np.ndarray:
    """x stretched in time to n samples at the same pitch (STFT phase vocoder)."""
    hop = n_fft // 4
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.from_numpy(x), n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, np.pi * hop, spec.shape[0])[:, None]
    stretched = AF.phase_vocoder(spec, x.size / n, advance)
    return torch.istft(stretched, n_fft, hop, window=window, length=n).numpy().astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _reverb(x: np.ndarray, sr: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    n = int(rt60_s * sr)
    t = np.arange(n) / sr
    impulse = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    impulse[0] = 1.0
    wet = np.fft.irfft(np.fft.rfft(x, x.size + n) * np.fft.rfft(impulse, x.size + n))[: x.size]
    wet *= _rms(x) / (_rms(wet) + 1e-9)
    return (0.6 * x + 0.4 * wet).astype(np.float32)
