"""What is left of an upload once a catalog track it holds is taken out: the track's own audio
laid on the upload along the match (its offsets and speed), shifted to the sample that lines it
up best, filtered as the upload has it (a complex gain per frequency, fitted by least squares:
a level, an EQ, a codec's colouring) and subtracted.

Two catalog tracks mixed at equal level had listed one (bench/background.py's two-track case):
the louder or better-aligned one takes the windows' vote and the other's windows lie under it.
Taken out, what remains is the other track nearly as it plays: on 12 seeded mixes of
../shared/audio the rest's windows were as alike as the other track's own (cosine 0.99-1.00,
against 0.14-0.69 in the mix) and `match` listed it in 11. A copy the subtraction cannot model
(a pitch shift, a time stretch) leaves most of itself behind, which the next reading finds
nothing new in.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np

from mirsearch.config import AudioConfig
from mirsearch.errors import AudioError
from mirsearch.excerpts import excerpt
from mirsearch.fingerprint import LAYOUTS
from mirsearch.scoring import Match

log = logging.getLogger(__name__)

N_FFT = 1024  # the STFT the gain is fitted in: 64 ms at 16 kHz ...
HOP = N_FFT // 2  # ... half a frame apart (square-root Hann windows, overlap-added to unity)
BLOCK_S = 20.0  # a gain fitted on each block of this length (a level or EQ that moves)
MAX_LAG_S = 0.25  # the track is shifted to the sample within this of the match's line
LAG_SPAN_S = 3.0  # the shift is found on at most this much of the stretch, its middle
SNAP_SPEED = 0.01  # a match within this of speed 1 is laid at 1: ±0.004 is the line's error
# this much of a match is taken out first, where another sound owns most of the print (`busiest`):
# a clean copy leaves nothing there, and the rest of it is not decoded (30 clean 10 s clips:
# ~10 ms instead of ~30 where the prints had called for the removal)
PROBE_S = 3.0
# the rest is silenced in each block this long where it holds less than this share of the
# upload's energy (`_emptied`): the removal's leftovers, no other sound
EMPTY_BLOCK_S, EMPTY_SHARE = 0.5, 0.02
# a print cell standing this far over the track's along the match (`busiest`) is another
# sound's: a clean copy's stand within the stored print's 3 dB steps
OWNED_DB = 6.0
# ... each print read within this of its frame's mean (`_levelled`): the narrowest stored format's
STORED_DB = min((2 ** (bits - 1) - 1) * step_db for bits, step_db in LAYOUTS.values())


def rest_of(
    samples: np.ndarray,
    match: Match,
    path: Path,
    *,
    config: AudioConfig,
    min_share: float,
    probe_at_s: float | None = None,
) -> np.ndarray | None:
    """`samples` (the upload) less the catalog track whose file is at `path` along `match`;
    None where less than `min_share` of the upload's energy is left over the PROBE_S of the
    match around `probe_at_s` (its middle where not given; `narrowed`), taken out first, or the
    file cannot be read (moved or deleted since it was indexed: said in the log; a file changed
    since takes nothing out). The rest of the match is taken out whatever it leaves: another
    track under 6 s of a 20 s upload leaves 2 % of the whole, where it sounds 6 %."""
    probe = narrowed(match, PROBE_S, around_s=probe_at_s)
    for stretch in (probe, match) if probe != match else (match,):
        try:
            track, track_start_s = excerpt(path, *span(stretch), config=config)
        except AudioError as exc:
            log.info("track %d not taken out of the upload: %s", match.track_id, exc)
            return None
        rest, share = taken_out(
            samples, track, track_start_s, stretch, sample_rate=config.sample_rate
        )
        if stretch is probe and share < min_share:
            return None
    return rest


def narrowed(match: Match, duration_s: float, *, around_s: float | None = None) -> Match:
    """`match` cut to `duration_s` centred on `around_s` in the upload, kept inside it (its
    middle where not given; itself where it is no longer)."""
    if match.duration_s <= duration_s:
        return match
    start_s = match.query_offset_s + (match.duration_s - duration_s) / 2
    if around_s is not None:
        start_s = around_s - duration_s / 2
    query_offset_s = min(
        max(start_s, match.query_offset_s), match.query_offset_s + match.duration_s - duration_s
    )
    return dataclasses.replace(
        match,
        query_offset_s=query_offset_s,
        track_offset_s=match.track_offset_s + match.speed * (query_offset_s - match.query_offset_s),
        duration_s=duration_s,
    )


def busiest(
    upload_print: np.ndarray, track_print: np.ndarray, match: Match, *, frames_per_s: float
) -> tuple[float, float]:
    """The share of the upload's print cells another sound owns (standing OWNED_DB or more over
    the track's print along `match`, both read relative to each frame's mean (`_levelled`) and
    their difference to each band's median: a gain, an EQ, a fade cancel) over the PROBE_S of
    the match where it owns most, and that stretch's middle in the upload (s). Prints are
    (bands, frames), fingerprint.py's.

    The prints' agreement is a median over the match: another track under 6 s of a 20 s upload
    leaves it where a clean copy's lies. Over 3 s, clean copies of ../shared/audio own under
    1.5 % of the cells (95 % of 60 clips), another track 12 dB under 6 s of them 5 % (median of
    60), in the 3 s where it sounds."""
    first = math.ceil(match.query_offset_s * frames_per_s)
    last = math.floor((match.query_offset_s + match.duration_s) * frames_per_s)
    frames = np.arange(first, min(last, upload_print.shape[1]))
    at = match.track_offset_s + match.speed * (frames / frames_per_s - match.query_offset_s)
    at = np.round(at * frames_per_s).astype(int)
    inside = (at >= 0) & (at < track_print.shape[1])
    frames, at = frames[inside], at[inside]
    if frames.size == 0:
        return 0.0, match.query_offset_s + match.duration_s / 2
    difference = _levelled(upload_print[:, frames]) - _levelled(track_print[:, at])
    difference -= np.median(difference, axis=1, keepdims=True)
    owned = np.mean(difference >= OWNED_DB, axis=0)
    width = min(owned.size, max(1, round(PROBE_S * frames_per_s)))
    shares = np.convolve(owned, np.full(width, 1 / width), mode="valid")
    best = int(np.argmax(shares))
    return float(shares[best]), float((frames[best] + width / 2) / frames_per_s)


def _levelled(print_: np.ndarray) -> np.ndarray:
    """Each frame of a print (dB) relative to its mean over the bands, within the range every
    stored print format keeps (fingerprint.LAYOUTS: ±21 dB), as a catalog print is read: a
    sparse frame's peaks and valleys lie further out, where an upload's print and a catalog's
    would part with no other sound in the upload."""
    x = print_ - print_.mean(axis=0)
    return np.clip(x, -STORED_DB, STORED_DB)


def span(match: Match) -> tuple[float, float]:
    """Where in the track (s) the audio to take out of the upload begins and how long it lasts,
    the shift's reach included on both sides."""
    speed = laid_speed(match)
    start_s = match.track_offset_s - speed * MAX_LAG_S
    return max(0.0, start_s), speed * (match.duration_s + 2 * MAX_LAG_S)


def laid_speed(match: Match) -> float:
    return 1.0 if abs(match.speed - 1.0) < SNAP_SPEED else match.speed


def taken_out(
    samples: np.ndarray, track: np.ndarray, track_start_s: float, match: Match, *, sample_rate: int
) -> tuple[np.ndarray, float]:
    """`samples` (the upload, mono float32) less `track` (the catalog track's audio from
    `track_start_s` on, same rate) along `match`, and the share of the upload's energy over the
    match's stretch that is left (1.0: nothing taken out)."""
    first = int(round(match.query_offset_s * sample_rate))
    last = min(samples.size, int(round((match.query_offset_s + match.duration_s) * sample_rate)))
    if last - first < N_FFT:
        return samples, 1.0
    lag = int(MAX_LAG_S * sample_rate)
    upload_s = np.arange(first - lag, last + lag) / sample_rate
    speed = laid_speed(match)
    at = match.track_offset_s + speed * (upload_s - match.query_offset_s) - track_start_s
    laid = np.interp(at * sample_rate, np.arange(track.size), track, left=0.0, right=0.0)
    laid = laid.astype(np.float32)  # float32 throughout: its FFTs take a quarter of the time
    stretch = samples[first:last].astype(np.float32)
    shift = _best_shift(stretch, laid, 2 * lag, int(LAG_SPAN_S * sample_rate))
    source = laid[shift : shift + stretch.size]
    block = int(BLOCK_S * sample_rate)
    fitted = np.concatenate(
        [
            _fitted(stretch[i : i + block], source[i : i + block])
            for i in range(0, stretch.size, block)
        ]
    )
    rest = samples.astype(np.float32, copy=True)
    rest[first:last] -= fitted
    energy = float(np.sum(stretch.astype(np.float64) ** 2))
    left = float(np.sum(rest[first:last].astype(np.float64) ** 2))
    _emptied(rest[first:last], stretch, int(EMPTY_BLOCK_S * sample_rate))
    return rest, left / energy if energy else 1.0


def _emptied(rest: np.ndarray, upload: np.ndarray, block: int) -> None:
    """Silence `rest` (in place) in each `block` of samples where it holds less than
    EMPTY_SHARE of the upload's energy there: what the track's removal leaves of itself, read as
    a pause, not as music. Another track under 6 s of a 20 s upload had been lined up across
    all of it, the leftovers' chunks pulling its prints' agreement from ~0.8 to ~0.1."""
    for i in range(0, rest.size, block):
        left = float(np.sum(rest[i : i + block].astype(np.float64) ** 2))
        if left < EMPTY_SHARE * float(np.sum(upload[i : i + block].astype(np.float64) ** 2)):
            rest[i : i + block] = 0.0


def _best_shift(stretch: np.ndarray, laid: np.ndarray, reach: int, most: int) -> int:
    """The shift s in [0, reach] for which laid[s : s + len(stretch)] lines up with `stretch`
    best (the largest cross-correlation, either sign), found on at most `most` samples of it."""
    middle = max(0, (stretch.size - most) // 2)
    target = stretch[middle : middle + most]
    pool = laid[middle : middle + target.size + reach]
    n = 1 << int(np.ceil(np.log2(target.size + pool.size)))
    corr = np.fft.irfft(np.fft.rfft(pool, n) * np.conj(np.fft.rfft(target, n)), n)[: reach + 1]
    return int(np.argmax(np.abs(corr)))


def _fitted(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """`source` filtered to resemble its part in `target` (same length): in the STFT, each
    frequency's least-squares complex gain from `source` to `target`."""
    if target.size < N_FFT:
        return np.zeros_like(target)
    t, s = _stft(target), _stft(source)
    power = np.sum(np.abs(s) ** 2, axis=0)
    gain = np.sum(t * np.conj(s), axis=0) / np.where(power > 0, power, 1.0)
    return _istft(s * np.where(power > 0, gain, 0.0), target.size)


def _window() -> np.ndarray:
    # its squares, a periodic Hann window, overlap-add to a constant half a frame apart
    return np.sqrt(np.hanning(N_FFT + 1)[:N_FFT]).astype(np.float32)


def _stft(x: np.ndarray) -> np.ndarray:
    """(n,) → (frames, N_FFT // 2 + 1), zero-padded by a frame at both ends."""
    padded = np.pad(x, N_FFT)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    return np.fft.rfft(frames * _window(), axis=1)


def _istft(spectrum: np.ndarray, length: int) -> np.ndarray:
    """The inverse of `_stft` (overlap-add of the windowed frames), `length` samples."""
    window = _window()
    frames = np.fft.irfft(spectrum, n=N_FFT, axis=1) * window
    count, parts = frames.shape[0], N_FFT // HOP
    out = np.zeros((count + parts - 1) * HOP, np.float32)
    norm = np.zeros_like(out)
    pieces, weights = frames.reshape(count, parts, HOP), (window**2).reshape(parts, HOP)
    for j in range(parts):  # frame k's j-th hop of samples lands at (k + j) · HOP
        out[j * HOP : (j + count) * HOP] += pieces[:, j].reshape(-1)
        norm[j * HOP : (j + count) * HOP] += np.tile(weights[j], count)
    return (out / np.maximum(norm, 1e-8))[N_FFT : N_FFT + length]
