"""Verification: whether two prints (fingerprint.py) agree along a candidate alignment, and the
line their agreement draws.

The check cuts the aligned stretch into overlapping chunks, lets each find its best lag within a
second of the predicted line (vocoder tempo changes and speed estimates drift a little), and
takes the median of the chunks' correlations: a copy correlates, re-encoded, filtered, noisy,
stretched or not; other music with the same instruments, tempo and key does not, because its
notes and onsets fall elsewhere. The chunks' best lags also draw the line a copy follows: a copy
5 % fast checked on a line at speed 1.0 drifts 1.6 frames a second, and the line through the
lags gives its speed and offset (`_refitted`). Each chunk's best correlation is discounted by a
share of its median over the lags: slow alike-sounding music (long pads, drones) correlates at
every lag, a copy only at its own. Both prints are read relative to each frame's mean over the
bands, and the depth of cells more than 6 dB below it is halved (a soft floor): the quiet cells
are where another recording mixed underneath, or noise, shows first, and they carry little of
the music's own detail (replayed on the `make eval-dupes` queries, bench/dupes_replay.py: 10 s
clips under another recording at −12 dB 94.6 → 96.4 % found, under noise at 10 dB SNR 96.4 →
100 %, no transform lower). A hard floor did as well there, but left little besides the partials:
two synthetic demo pieces in one key, one at about twice the other's tempo, agreed at 0.36
instead of 0.23 and were flagged as duplicates; softened they agree at 0.25.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# the check reads a cell more than FLOOR_DB below its frame's mean over bands at FLOOR_SLOPE of
# its depth beyond that
FLOOR_DB, FLOOR_SLOPE = -6.0, 0.5
# a line is refitted to the chunks' best lags (`_refitted`) when they span at least this long,
# their median distance from the refitted line is at most this (1.5 print frames) and its speed
# differs by at most this (the windows vote over speeds 0.94 to 1.06)
RESPEED_MIN_SPAN_S, RESPEED_MAX_RESIDUAL_S, RESPEED_MAX_CHANGE = 2.0, 1.5 / 32, 0.1


@dataclass(frozen=True)
class Alignment:
    """Where a candidate says the query lies on the track: query seconds → track seconds."""

    query_start_s: float
    query_end_s: float
    track_offset_s: float  # track time at query_start_s
    speed: float  # track seconds per query second


@dataclass(frozen=True)
class Check:
    """What the prints say about an alignment (`check`)."""

    agreement: float  # median of the chunks' best correlations, less their background share
    alignment: Alignment  # the alignment refitted to the chunks' best lags (`_refitted`)


def check(query: np.ndarray, track: np.ndarray, alignment: Alignment, **options) -> Check:
    """The prints' agreement along one alignment: `checks` of one."""
    return checks([(query, track, alignment)], **options)[0]


def checks(
    items: Sequence[tuple[np.ndarray, np.ndarray, Alignment]],
    *,
    frames_per_s: float,
    chunk_s: float,
    chunk_hop_s: float,
    max_lag_s: float,
    max_chunks: int,
    background: float = 0.0,
) -> list[Check]:
    """For each (query, track, alignment) of `items`, the prints' agreement along the alignment:
    the median over the aligned stretch's chunks of the best correlation within ±max_lag_s, less
    `background` times the chunk's median correlation over those lags; and the alignment those
    best lags draw.

    `query` and `track` are prints (bands, frames), the track's usually decoded. Both are
    softly floored (`_floored`), then centred per band and per frame within the chunk: a gain
    or EQ change (a constant per band in dB) cancels, and so does the loudness contour (a fade
    or crescendo, which any two pieces can share). Chunks start every `chunk_hop_s`, so they
    overlap and a short stretch still gets several; a long stretch is checked on `max_chunks`
    of them spread evenly over it. The agreement is 0.0, and the alignment unchanged, when no
    chunk of the stretch lies inside both prints. The chunks of all the items are correlated in
    one pass (a query's ~5 checks are small: one at a time, they cost mostly NumPy's calls).
    """
    n = max(2, round(chunk_s * frames_per_s))
    hop = max(1, round(chunk_hop_s * frames_per_s))
    max_lag = round(max_lag_s * frames_per_s)
    lags = np.arange(-max_lag, max_lag + 1)
    done = [Check(0.0, alignment) for _, _, alignment in items]  # kept where no chunk lies inside
    cut = functools.partial(
        _chunks, n=n, hop=hop, lags=lags, max_chunks=max_chunks, frames_per_s=frames_per_s
    )
    chunked = [(i, cut(*item)) for i, item in enumerate(items)]
    chunked = [(i, chunks) for i, chunks in chunked if len(chunks)]
    if not chunked:
        return done
    q = np.concatenate(
        [
            _centred(np.moveaxis(_floored(items[i][0][:, chunks.frames]), 1, 0))
            for i, chunks in chunked
        ]
    )
    correlations = _lag_correlations(
        q, [items[i][1] for i, _ in chunked], [chunks.columns for _, chunks in chunked], lags
    )
    inside = np.concatenate([chunks.inside for _, chunks in chunked])
    # the lags inside the track are a run [low, high] of each chunk's row
    low, high = inside.argmax(axis=1), lags.size - 1 - inside[:, ::-1].argmax(axis=1)
    best = np.where(inside, correlations, -np.inf).argmax(axis=1)
    rows = np.arange(best.size)
    scores = correlations[rows, best] - background * _row_medians(correlations, inside)
    free = (low < best) & (best < high)  # a best lag at an end of the lags is a bound, not a lag
    bounds = np.cumsum([0] + [len(chunks) for _, chunks in chunked])
    for (i, chunks), start, stop in zip(chunked, bounds[:-1], bounds[1:], strict=True):
        own = slice(start, stop)
        mine = free[own]
        centres_s = (chunks.frames[mine, 0] + n / 2) / frames_per_s
        refitted = _refitted(done[i].alignment, centres_s, lags[best[own][mine]] / frames_per_s)
        done[i] = Check(float(np.median(scores[own])), refitted)
    return done


@dataclass(frozen=True)
class _Chunks:
    """The chunks of an aligned stretch that some lag keeps inside the track."""

    frames: np.ndarray  # (chunks, n) their query frames
    columns: np.ndarray  # (chunks, n) the track frames the line puts them on
    inside: np.ndarray  # (chunks, lags) bool: whether the lag keeps the chunk on the track

    def __len__(self) -> int:
        return self.frames.shape[0]


def _chunks(
    query: np.ndarray,
    track: np.ndarray,
    alignment: Alignment,
    *,
    n: int,
    hop: int,
    lags: np.ndarray,
    max_chunks: int,
    frames_per_s: float,
) -> _Chunks:
    """The `n`-frame chunks, every `hop` frames (at most `max_chunks`, spread evenly), of the
    stretch `alignment` puts on `track`, those that lie inside both prints at some lag."""
    first = max(0, round(alignment.query_start_s * frames_per_s))
    stop = min(query.shape[1], round(alignment.query_end_s * frames_per_s))
    starts = np.arange(first, max(first + 1, stop - n + 1), hop)
    starts = starts[starts + n <= query.shape[1]]
    if starts.size > max_chunks:
        starts = starts[np.round(np.linspace(0, starts.size - 1, max_chunks)).astype(int)]
    frames = starts[:, None] + np.arange(n)  # (chunks, n) query frames
    seconds = alignment.track_offset_s + alignment.speed * (
        frames / frames_per_s - alignment.query_start_s
    )
    columns = np.round(seconds * frames_per_s).astype(np.int64)  # the line's track frames
    inside = (columns[:, :1] + lags >= 0) & (columns[:, -1:] + lags < track.shape[1])
    kept = inside.any(axis=1)
    return _Chunks(frames[kept], columns[kept], inside[kept])


def _row_medians(x: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """(rows, columns) → each row's median over its `kept` columns (at least one a row)."""
    counts = kept.sum(axis=1)
    ordered = np.sort(np.where(kept, x, np.inf), axis=1)
    rows = np.arange(x.shape[0])
    return (ordered[rows, (counts - 1) // 2] + ordered[rows, counts // 2]) / 2


def _refitted(alignment: Alignment, centres_s: np.ndarray, lags_s: np.ndarray) -> Alignment:
    """The alignment moved onto the line through the chunks' best lags (`lags_s` seconds at query
    times `centres_s`; a chunk whose best lag is the first or last it could try, at ±max_lag_s
    or where the track begins or ends, is left out): a robust line (Theil–Sen: the median of the
    pairwise slopes), so a chunk caught on a neighbouring beat does not bend it.

    The windows' vote finds the speed only to a few per cent (a copy 5 % fast can win at 1.0);
    the chunks, each free to slide, show the drift at 1/32 s. Kept as it was where they cannot
    tell: fewer than three chunks, chunks spanning less than RESPEED_MIN_SPAN_S, most of them
    off the line (other music: its best lags fall anywhere), or a line far steeper than a copy's.
    """
    if centres_s.size < 3 or np.ptp(centres_s) < RESPEED_MIN_SPAN_S:
        return alignment
    i, j = np.triu_indices(centres_s.size, k=1)  # every pair of chunks, i before j
    slope = float(np.median((lags_s[j] - lags_s[i]) / (centres_s[j] - centres_s[i])))
    detrended = lags_s - slope * (centres_s - alignment.query_start_s)  # each chunk's lag at start
    at_start = float(np.median(detrended))
    residuals = detrended - at_start
    if abs(slope) > RESPEED_MAX_CHANGE or np.median(np.abs(residuals)) > RESPEED_MAX_RESIDUAL_S:
        return alignment
    return dataclasses.replace(
        alignment,
        track_offset_s=max(0.0, alignment.track_offset_s + at_start),
        speed=alignment.speed + slope,
    )


def _lag_correlations(
    q: np.ndarray, tracks: Sequence[np.ndarray], columns: Sequence[np.ndarray], lags: np.ndarray
) -> np.ndarray:
    """(chunks, lags) correlations of each centred query chunk q[c] (bands, n) with its track's
    floored frames `column + lag`, each centred the same way (per band over frames, per frame
    over bands). The chunks are those of `columns`, in order: columns[i] (chunks_i, n) are the
    frames of tracks[i] its chunks land on.

    The shifted track chunks are never built: q being centred, its product with a chunk equals
    its product with the centred chunk, and a chunk's centred energy follows from its sums
    (total, per band, per frame, of squares), all sliding sums over the track's frames weighted
    by how often the line visits each frame (a sped-up line skips some, a slowed one repeats).
    Every chunk's sliding sums over every lag are taken at once, as products of Fourier
    transforms. Frames off the track read as zeros; the caller drops the lags that reach them.
    """
    chunks, bands, n = q.shape
    steps = np.concatenate([c - c[:, :1] for c in columns])  # (chunks, n) from each chunk's first
    width = int(steps.max()) + 1
    size = width + lags.size - 1  # the track frames a chunk's lags reach
    fft_size = _fft_size(size)
    rows = np.arange(chunks)[:, None]
    visits = np.bincount((rows * width + steps).ravel(), minlength=chunks * width)
    visits = visits.reshape(chunks, width).astype(np.float64)
    landing = (rows[:, :, None] * bands + np.arange(bands)[:, None]) * width + steps[:, None, :]
    landed = np.bincount(landing.ravel(), q.ravel(), minlength=chunks * bands * width)
    landed = landed.reshape(chunks, bands, width)  # q summed where it lands on the track
    reach = lags[0] + np.arange(size)  # from a chunk's first track frame
    span = np.concatenate(  # (chunks, bands, size)
        [_reached(t, c[:, :1] + reach) for t, c in zip(tracks, columns, strict=True)]
    )
    spectrum = np.fft.rfft(span, fft_size)  # (chunks, bands, frequencies)
    visited = np.conj(np.fft.rfft(visits, fft_size))  # (chunks, frequencies)

    products = np.fft.irfft(
        (spectrum * np.conj(np.fft.rfft(landed, fft_size))).sum(axis=1), fft_size
    )[:, : lags.size]
    per_band = np.fft.irfft(spectrum * visited[:, None, :], fft_size)[..., : lags.size]
    per_frame = span.sum(axis=1)
    # sums of squares, of squared frame sums and of frame sums (chunks, size) under each lag's
    # visits
    squares, frame_squares, frame_sums = np.fft.irfft(
        np.fft.rfft(
            np.stack([np.square(span).sum(axis=1), np.square(per_frame), per_frame]), fft_size
        )
        * visited,
        fft_size,
    )[..., : lags.size]
    energy = (
        squares
        - np.square(per_band).sum(axis=1) / n
        - frame_squares / bands
        + np.square(frame_sums) / (bands * n)
    )
    norms = np.sqrt(np.square(q).sum(axis=(1, 2))[:, None] * np.maximum(energy, 0.0)) + 1e-9
    return products / norms


def _fft_size(size: int) -> int:
    """The shortest transform of at least `size` points of the form 2^k, 3·2^k or 5·2^k, all
    fast in pocketfft: a 3 s chunk's lags reach ~160 frames, whose 160-point transforms take
    about half the time of 256-point ones."""
    return min(m << (-(-size // m) - 1).bit_length() for m in (1, 3, 5))


def _reached(track: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """(chunks, size) track frames → the floored frames (chunks, bands, size) in float64, zeros
    off the track."""
    on_track = (reach >= 0) & (reach < track.shape[1])
    span = _floored(track[:, np.clip(reach, 0, track.shape[1] - 1)]).astype(np.float64)
    return np.moveaxis(span * on_track, 1, 0)


def _floored(x: np.ndarray) -> np.ndarray:
    """(bands, frames) print → each frame less its mean over the bands, what lies below FLOOR_DB
    compressed to FLOOR_SLOPE of its depth beyond it."""
    x = x - x.mean(axis=0, keepdims=True)
    return np.where(x < FLOOR_DB, FLOOR_DB + FLOOR_SLOPE * (x - FLOOR_DB), x)


def _centred(chunk: np.ndarray) -> np.ndarray:
    """(…, bands, frames) float64 less each band's mean over frames and each frame's mean over
    bands."""
    chunk = chunk - chunk.mean(axis=-1, keepdims=True, dtype=np.float64)
    return chunk - chunk.mean(axis=-2, keepdims=True)
