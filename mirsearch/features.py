"""The log-mel of tensors (spectrogram.py's, the one mel path), and per-track descriptors: MFCC,
bands, centroid, tempo, key, loudness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import torch
import torchaudio

from mirsearch import spectrogram
from mirsearch.config import FeatureConfig

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Albrecht and Shanahan's key profiles (how long each scale degree sounds in a corpus of
# common-practice pieces, Music Perception 31, 2013), tonic first, matched against a chroma of
# magnitudes: the key of 42.9 % of the 450 clips of ../shared/genres named right, as many in
# minor as in major (bench/descriptors.py), where Krumhansl and Kessler's probe-tone ratings on
# fourth roots of the power had named 28.2 %, and Temperley's 55 % of those in major but 26 %
# of those in minor (docs/tempo-and-key.md).
MAJOR_PROFILE = np.array(
    [0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081]
)
MINOR_PROFILE = np.array(
    [0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052]
)
BANDS_HZ = {"low": (20.0, 250.0), "mid": (250.0, 4000.0), "high": (4000.0, 20_000.0)}
N_MFCC = 20
TEMPO_RANGE_BPM = (50.0, 220.0)
TEMPO_PRIOR_BPM = 120.0  # centre of the log-normal prior that settles octave ambiguity
TEMPO_PRIOR_OCTAVES = 1.0  # its width, in octaves
TWO_BEATS_WEIGHT = 0.5  # a lag is judged with the autocorrelation at twice it, at this weight
CHROMA_N_FFT = 8192  # long frames: 2 Hz bins at 16 kHz, enough to tell semitones apart low down
CHROMA_RANGE_HZ = (55.0, 2000.0)
EXCERPT_S = 90.0  # tempo, key, timbre and bands come from the central 90 s of longer tracks
ENVELOPE_POINTS = 400  # the peaks of a track's waveform, as its page draws them


def mel_power(
    waveform: torch.Tensor, config: FeatureConfig, *, frequency_scale: float = 1.0
) -> torch.Tensor:
    """Mel power spectrogram: (..., n_samples) float → (..., n_mels, n_frames), centred frames
    (spectrogram.mel_powers on a tensor)."""
    mel = spectrogram.mel_powers(_array(waveform), config, (frequency_scale,), rfft=_rfft)
    return torch.from_numpy(mel[0])


def log_mel(
    waveform: torch.Tensor, config: FeatureConfig, *, frequency_scale: float = 1.0
) -> torch.Tensor:
    """Log-mel power spectrogram in dB: (..., n_samples) float → (..., n_mels, n_frames).

    Training and indexing call this function (or `log_mels`, the same at several scales), and
    a query is read by spectrogram.log_mels, which this hands the samples to: one mel path.
    `frequency_scale` reads every band at that multiple of its frequencies
    (spectrogram.filterbank): a near-duplicate query undoing a suspected pitch change.
    """
    return log_mels(waveform, config, (frequency_scale,))[0]


def log_mels(
    waveform: torch.Tensor, config: FeatureConfig, frequency_scales: Sequence[float]
) -> torch.Tensor:
    """`log_mel` at each of `frequency_scales` (a leading axis), the STFT taken once."""
    mel_db = spectrogram.log_mels(_array(waveform), config, frequency_scales, rfft=_rfft)
    return torch.from_numpy(mel_db)


def _array(waveform: torch.Tensor) -> np.ndarray:
    return waveform.detach().to(torch.float32).numpy()


def _rfft(frames: np.ndarray) -> np.ndarray:
    """torch's FFT of the frames: the same spectrum as NumPy's to float rounding, ~2.5 times
    faster on a track's thousands of short frames (MKL batches them), which indexing needs."""
    return torch.fft.rfft(torch.from_numpy(frames)).numpy()


@dataclass(frozen=True)
class Descriptors:
    """Musical and acoustic summary of a track, stored in the catalog."""

    tempo_bpm: float
    key: str  # "C major", "A minor"
    key_confidence: float  # correlation of the chroma with the best key profile, in [-1, 1]
    loudness_db: float  # RMS level in dBFS
    centroid_hz: float  # mean spectral centroid
    band_energy: dict[str, float]  # share of energy in low (<250 Hz), mid, high (>4 kHz)
    mfcc_mean: list[float]  # 20 coefficients
    mfcc_std: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def describe(
    samples: np.ndarray,
    sample_rate: int,
    *,
    config: FeatureConfig = FeatureConfig(),
    mel_db: torch.Tensor | None = None,
):
    """Descriptors of mono float32 `samples` at `sample_rate` (must be config.sample_rate).

    Tempo, key, timbre and bands come from the central EXCERPT_S; `mel_db` is the whole signal's
    log-mel (`log_mel(samples)`), computed here unless the caller has it already (the indexer
    does: the network reads the same one), and the excerpt's frames are read from it.
    """
    whole = np.asarray(samples, dtype=np.float32)
    rms = float(np.sqrt(np.dot(whole, whole) / whole.size)) if whole.size else 0.0
    x = central_excerpt(whole, sample_rate)
    key, confidence = estimate_key(x, sample_rate)
    if mel_db is None:
        mel_db = log_mel(torch.from_numpy(whole), config)
    first = round(max(0, (whole.size - x.size) // 2) / config.hop_length)
    mel_db = mel_db[..., first : first + x.size // config.hop_length + 1]
    mfcc = _mfcc(mel_db, config)
    power, freqs = _power_spectrum(x, sample_rate)
    return Descriptors(
        tempo_bpm=round(estimate_tempo(x, sample_rate, mel_db=mel_db, config=config), 2),
        key=key,
        key_confidence=round(confidence, 3),
        loudness_db=round(float(20 * np.log10(rms + 1e-12)), 2),
        centroid_hz=round(float((power * freqs).sum() / (power.sum() + 1e-20)), 1),
        band_energy=band_energies(x, sample_rate, spectrum=(power, freqs)),
        mfcc_mean=[round(float(v), 3) for v in mfcc.mean(axis=1)],
        mfcc_std=[round(float(v), 3) for v in mfcc.std(axis=1)],
    )


def peak_envelope(samples: np.ndarray, points: int = ENVELOPE_POINTS) -> bytes:
    """The peak level of `points` equal stretches of mono `samples`, in bytes 0–255 of the
    loudest: the waveform a track's page draws, kept in the catalog (400 bytes a track) so that
    the page need not decode the file."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size == 0:
        return bytes(points)
    starts = np.linspace(0, x.size, points, endpoint=False).astype(np.int64)
    peaks = np.maximum(np.maximum.reduceat(x, starts), -np.minimum.reduceat(x, starts))
    return np.round(255 * peaks / max(float(peaks.max()), 1e-9)).astype(np.uint8).tobytes()


def central_excerpt(x: np.ndarray, sample_rate: int, *, length_s: float = EXCERPT_S) -> np.ndarray:
    n = int(length_s * sample_rate)
    start = max(0, (x.size - n) // 2)
    return x[start : start + n]


def mfcc_stats(samples: np.ndarray, sample_rate: int, *, config: FeatureConfig = FeatureConfig()):
    """(40,) float32: mean and std over time of 20 MFCCs (the classical baseline's features)."""
    mel_db = log_mel(torch.from_numpy(np.asarray(samples, dtype=np.float32)), config)
    mfcc = _mfcc(mel_db, config)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]).astype(np.float32)


@cache
def _dct(n_mels: int) -> torch.Tensor:
    return torchaudio.functional.create_dct(N_MFCC, n_mels, norm="ortho")


def _mfcc(mel_db: torch.Tensor, config: FeatureConfig) -> np.ndarray:
    """(20, n_frames) MFCCs as the DCT of the one log-mel spectrogram."""
    return (mel_db.transpose(-1, -2) @ _dct(config.n_mels)).transpose(-1, -2).numpy()


def _power_spectrum(x: np.ndarray, sample_rate: int, *, n_fft: int = 2048):
    """Mean power per frequency over the track (Welch-style), and the bin frequencies."""
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = torch.from_numpy(x).unfold(0, n_fft, n_fft)
    spectrum = torch.fft.rfft(frames * torch.hann_window(n_fft), dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()  # as mel_power: no complex abs()
    return power.mean(0).numpy().astype(np.float64), np.fft.rfftfreq(n_fft, 1 / sample_rate)


def band_energies(x: np.ndarray, sample_rate: int, *, spectrum=None) -> dict[str, float]:
    """Share of the energy that passes each band-pass filter (ideal filters, in the FFT domain)."""
    power, freqs = spectrum if spectrum is not None else _power_spectrum(x, sample_rate)
    total = power[(freqs >= 20.0)].sum() + 1e-20
    return {
        name: round(float(power[(freqs >= lo) & (freqs < hi)].sum() / total), 4)
        for name, (lo, hi) in BANDS_HZ.items()
    }


def estimate_tempo(
    x: np.ndarray,
    sample_rate: int,
    *,
    mel_db: torch.Tensor | None = None,
    config: FeatureConfig = FeatureConfig(),
) -> float:
    """Tempo in BPM (within TEMPO_RANGE_BPM): autocorrelation of the spectral-flux onset
    envelope, prior at 120 BPM.

    A lag is judged by its own peak and, at TWO_BEATS_WEIGHT, the peak at twice it: a beat's
    period recurs at two beats, where a period of two thirds or half a beat (off-beats, a
    shuffle's triplets, eighth notes) need not. On ../shared/genres it took exact tempos 72.9 →
    77.8 % (docs/tempo-and-key.md)."""
    if mel_db is None:
        mel_db = log_mel(torch.from_numpy(x), config)
    flux = np.maximum(np.diff(mel_db.numpy(), axis=1), 0.0).mean(axis=0)
    fps = config.frames_per_s
    if flux.size < 4 * fps:  # under 4 s: no tempo told (one frame, 7 ms, has no flux at all)
        return 0.0
    flux = np.convolve(flux, [0.1, 0.2, 0.4, 0.2, 0.1], mode="same")  # a beat between frames
    envelope = flux - flux.mean()  # should not split its peak
    n = 1 << int(np.ceil(np.log2(2 * envelope.size)))
    spectrum = np.fft.rfft(envelope, n)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n)[: envelope.size]
    acf /= acf[0] + 1e-20
    lo, hi = int(fps * 60 / TEMPO_RANGE_BPM[1]), int(np.ceil(fps * 60 / TEMPO_RANGE_BPM[0]))
    lags = np.arange(lo, min(hi, acf.size - 2))
    bpm = 60 * fps / lags
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    # A period between two lags splits its peak: judge each lag by its neighbourhood's best.
    peak = np.maximum(acf[:-2], np.maximum(acf[1:-1], acf[2:]))  # peak[i]: around lag i + 1
    support = peak[lags - 1] + TWO_BEATS_WEIGHT * peak[np.minimum(2 * lags, acf.size - 2) - 1]
    best = lags[int(np.argmax(support * prior))]
    best = max(best - 1, best, best + 1, key=lambda lag: acf[lag])
    a, b, c = acf[best - 1], acf[best], acf[best + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    tempo_bpm = 60 * fps / (best + np.clip(shift, -0.5, 0.5))
    return float(np.clip(tempo_bpm, *TEMPO_RANGE_BPM))  # the shortest lag's neighbour lies past it


def chroma(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """(12,) magnitude per pitch class (C first), normalised to sum 1, from long STFT frames."""
    if x.size < CHROMA_N_FFT:
        x = np.pad(x, (0, CHROMA_N_FFT - x.size))
    frames = torch.from_numpy(x).unfold(0, CHROMA_N_FFT, CHROMA_N_FFT)
    spectrum = torch.fft.rfft(frames * torch.hann_window(CHROMA_N_FFT), dim=-1)
    freqs = np.fft.rfftfreq(CHROMA_N_FFT, 1 / sample_rate)
    keep = (freqs >= CHROMA_RANGE_HZ[0]) & (freqs <= CHROMA_RANGE_HZ[1])
    power = (spectrum.real.square() + spectrum.imag.square()).numpy()[:, keep]
    energy = np.sqrt(power).sum(axis=0)  # magnitudes: a partial counts by its level
    pitch_class = np.round(12 * np.log2(freqs[keep] / 440.0) + 9).astype(int) % 12
    out = np.bincount(pitch_class, weights=energy, minlength=12)
    return out / (out.sum() + 1e-20)


def estimate_key(x: np.ndarray, sample_rate: int) -> tuple[str, float]:
    """Best of the 24 major/minor keys by correlating the chroma with rotated key profiles."""
    profile = chroma(x, sample_rate)
    best, best_r = "C major", -1.0
    for tonic in range(12):
        for mode, template in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if r > best_r:
                best, best_r = f"{NOTE_NAMES[tonic]} {mode}", r
    return best, best_r
