"""Verification prints: a compact log-mel of each track, and the fine alignment check.

The window embeddings find a candidate (track, offsets, speed) to within a catalog hop; a print
checks it at 1/32 s. The log-mel bands centred between 150 Hz and 3.8 kHz are kept (the bass
carries a copy through loud broadband noise; above 3.8 kHz is what low-pass and 8 kHz copies
lose), adjacent bands averaged in pairs and pooled to 32 frames a second. A query's print stays
at full precision; a catalog track's is stored compactly (`encode`): each frame minus its mean
over the bands (the check removes it anyway), quantised in steps of STEP_DB to BITS bits, packed
as bit planes and deflated: about 300 bytes a second, a fifth of the 1-byte print of format 1
(1,408 bytes a second). Format 2 kept 4 bits, which clipped 2 % of the values at ±24 dB and cost
noisy clips their match; its prints are still read as they are.

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
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from mirsearch.config import FeatureConfig
from mirsearch.errors import IndexMismatchError

BAND_HZ = (150.0, 3800.0)  # mel bands whose centres lie in this range are kept
BAND_GROUP = 2  # adjacent kept mel bands averaged into one print band
POOL = 2  # log-mel frames averaged into one print frame
FORMAT = 3  # the stored layout `encode` writes (catalog column track_prints.format)
# each compact format's (bits per stored value, quantiser step in dB): a stored value is a
# multiple of the step within ±2**(bits-1) steps (format 1, one byte per value, is converted by
# migration 0003)
LAYOUTS = {2: (4, 3.0), 3: (5, 3.0)}
BITS, STEP_DB = LAYOUTS[FORMAT]
_HEADER = struct.Struct("<HI")  # bands, frames
# the check reads a cell more than FLOOR_DB below its frame's mean over bands at FLOOR_SLOPE of
# its depth beyond that
FLOOR_DB, FLOOR_SLOPE = -6.0, 0.5
# a line is refitted to the chunks' best lags (`_refitted`) when they span at least this long,
# their median distance from the refitted line is at most this (1.5 print frames) and its speed
# differs by at most this (the windows vote over speeds 0.94 to 1.06)
RESPEED_MIN_SPAN_S, RESPEED_MAX_RESIDUAL_S, RESPEED_MAX_CHANGE = 2.0, 1.5 / 32, 0.1
DECODED_CACHE_BYTES = 64 << 20  # decoded prints kept for reuse: ~150 three-minute tracks


@dataclass(frozen=True)
class Alignment:
    """Where a candidate says the query lies on the track: query seconds → track seconds."""

    query_start_s: float
    query_end_s: float
    track_offset_s: float  # track time at query_start_s
    speed: float  # track seconds per query second


@cache
def _kept_bands(config: FeatureConfig) -> np.ndarray:
    """Indices of the log-mel bands whose centre frequency lies in BAND_HZ."""
    centres = config.band_corners_hz()[1:-1]
    return np.flatnonzero((centres >= BAND_HZ[0]) & (centres <= BAND_HZ[1]))


def frames_per_s(config: FeatureConfig) -> float:
    return config.frames_per_s / POOL


def bytes_per_s(config: FeatureConfig) -> float:
    """What a stored print takes per second of audio before deflating (bench measures after)."""
    return len(_kept_bands(config)) // BAND_GROUP * frames_per_s(config) * BITS / 8


def make_print(mel_db: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(n_mels, n_frames) log-mel in dB → (bands, n_frames // POOL) float32 print in dB."""
    kept = np.asarray(mel_db, dtype=np.float32)[_kept_bands(config)]
    return _pooled(kept, BAND_GROUP, POOL)


def encode(fingerprint: np.ndarray, *, format: int = FORMAT) -> bytes:
    """A print (bands, frames) in dB → the stored bytes of `format` (lossy; see `decode`)."""
    bits, step_db = LAYOUTS[format]
    x = np.asarray(fingerprint, dtype=np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    half = 2 ** (bits - 1)
    codes = (np.clip(np.round(x / step_db), -half, half - 1) + half).astype(np.uint8).ravel()
    planes = b"".join(np.packbits((codes >> bit) & 1).tobytes() for bit in range(bits))
    return zlib.compress(_HEADER.pack(*x.shape) + planes, 6)  # 9: 0.5 % smaller, 4.6× slower


def decode(data: bytes, *, format: int = FORMAT) -> np.ndarray:
    """Stored bytes → (bands, frames) float32, read-only: each frame centred over the bands, in
    dB steps. Recently decoded prints are reused (see `_Decoded`)."""
    return _decoded.get(data, format)


class _Decoded:
    """Decoded prints by their stored bytes, the least recently used dropped past `capacity`
    bytes of arrays.

    The candidates a query's windows point to recur across queries (a batch of uploads, a
    server's traffic, the ingest checks of one album), and decoding was two thirds of reading a
    print from the catalog: `match` over ../shared/audio took 61 → 54 ms a query. Keyed by the
    bytes themselves, a track indexed again with a new print never gets its old one. The arrays
    are shared, hence read-only.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._arrays: OrderedDict[tuple[bytes, int], np.ndarray] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # the web server's threads share it

    def get(self, data: bytes, format: int) -> np.ndarray:
        key = (bytes(data), format)  # PostgreSQL drivers hand out memoryviews
        with self._lock:
            if key in self._arrays:
                self._arrays.move_to_end(key)
                return self._arrays[key]
        array = _decode(data, format)
        array.flags.writeable = False
        with self._lock:
            if key not in self._arrays:
                self._arrays[key] = array
                self._size += array.nbytes
            while self._size > self.capacity:
                _, dropped = self._arrays.popitem(last=False)
                self._size -= dropped.nbytes
        return array


_decoded = _Decoded(DECODED_CACHE_BYTES)


def _decode(data: bytes, format: int) -> np.ndarray:
    if format not in LAYOUTS:
        raise IndexMismatchError(
            f"a verification print is stored in format {format}, this version reads formats "
            f"{sorted(LAYOUTS)}: run `mirsearch db upgrade` (it converts them), or index the "
            "catalog again"
        )
    bits, step_db = LAYOUTS[format]
    raw = zlib.decompress(data)
    bands, frames = _HEADER.unpack_from(raw)
    n = bands * frames
    size = (n + 7) // 8
    codes = np.zeros(n, dtype=np.uint8)
    for bit in range(bits):
        start = _HEADER.size + bit * size
        plane = np.frombuffer(raw, dtype=np.uint8, count=size, offset=start)
        codes |= np.unpackbits(plane, count=n) << bit
    half = 2 ** (bits - 1)
    return ((codes.astype(np.float32) - half) * step_db).reshape(bands, frames)


def from_format_1(data: bytes, bands: int) -> np.ndarray:
    """A format-1 print (one byte per kept mel band and 32 fps frame, dB + 80) as a print of
    today's layout (`make_print`), for the migration that converts stored prints."""
    one_byte = np.frombuffer(data, dtype=np.uint8).reshape(bands, -1).astype(np.float32)
    return _pooled(one_byte, BAND_GROUP, POOL // 2)


def _pooled(x: np.ndarray, bands: int, frames: int) -> np.ndarray:
    """Means over groups of `bands` rows and `frames` columns (a remainder is dropped)."""
    b, f = x.shape[0] // bands * bands, x.shape[1] // frames * frames
    grouped = x[:b, :f].reshape(b // bands, bands, f // frames, frames).mean(axis=(1, 3))
    return np.ascontiguousarray(grouped, dtype=np.float32)


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
    done: list[Check] = []
    pending, kept_frames, kept_columns, kept_inside, chunks, tracks = [], [], [], [], [], []
    for query, track, alignment in items:
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
        done.append(Check(0.0, alignment))  # replaced below when some chunk is kept
        if not kept.any():
            continue
        pending.append(len(done) - 1)
        kept_frames.append(frames[kept])
        kept_columns.append(columns[kept])
        kept_inside.append(inside[kept])
        chunks.append(_centred(np.moveaxis(_floored(query[:, frames[kept]]), 1, 0)))
        tracks.append(track)
    if not chunks:
        return done
    inside = np.concatenate(kept_inside)
    correlations = _lag_correlations(np.concatenate(chunks), tracks, kept_columns, lags)
    # the lags inside the track are a run [low, high] of each chunk's row
    low, high = inside.argmax(axis=1), lags.size - 1 - inside[:, ::-1].argmax(axis=1)
    best = np.where(inside, correlations, -np.inf).argmax(axis=1)
    rows = np.arange(best.size)
    scores = correlations[rows, best] - background * _row_medians(correlations, inside)
    free = (low < best) & (best < high)  # a best lag at an end of the lags is a bound, not a lag
    bounds = np.cumsum([0] + [f.shape[0] for f in kept_frames])
    for k, (i, frames) in enumerate(zip(pending, kept_frames, strict=True)):
        own = slice(bounds[k], bounds[k + 1])
        mine = free[own]
        centres_s = (frames[mine, 0] + n / 2) / frames_per_s
        refitted = _refitted(done[i].alignment, centres_s, lags[best[own][mine]] / frames_per_s)
        done[i] = Check(float(np.median(scores[own])), refitted)
    return done


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
