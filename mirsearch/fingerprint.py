"""Verification prints: a compact log-mel of each track, made, stored and read back.

The window embeddings find a candidate (track, offsets, speed) to within a catalog hop; a print
checks it at 1/32 s (verification.py). The log-mel bands centred between 150 Hz and 3.8 kHz are kept
(the bass carries a copy through loud broadband noise; above 3.8 kHz is what low-pass and 8 kHz
copies lose), adjacent bands averaged in pairs and pooled to 32 frames a second. A query's print
stays at full precision; a catalog track's is stored compactly (`encode`): each frame minus its
mean over the bands (the check removes it anyway), quantised in steps of STEP_DB to BITS bits;
each band then stored as its steps from one frame to the next (a signed byte each) and
Huffman-coded: about 200 bytes a second, a seventh of the 1-byte print of format 1 (1,408 bytes
a second). Earlier formats are still read as they are: 2 kept 4 bits, which clipped 2 % of
the values at ±24 dB and cost noisy clips their match; 3 packed the same 5-bit values as format 4
as bit planes and deflated them, 45 % more bytes (music's bands change little from one frame to
the next, which the steps show Huffman coding and bit planes hide from deflate).
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import OrderedDict
from functools import cache

import numpy as np

from mirsearch.config import FeatureConfig
from mirsearch.errors import IndexMismatchError

BAND_HZ = (150.0, 3800.0)  # mel bands whose centres lie in this range are kept
BAND_GROUP = 2  # adjacent kept mel bands averaged into one print band
POOL = 2  # log-mel frames averaged into one print frame
FORMAT = 4  # the stored layout `encode` writes (catalog column track_prints.format)
# each compact format's (bits per stored value, quantiser step in dB): a stored value is a
# multiple of the step within ±2**(bits-1) steps (format 1, one byte per value, is converted by
# migration 0003)
LAYOUTS = {2: (4, 3.0), 3: (5, 3.0), 4: (5, 3.0)}
BIT_PLANES = frozenset({2, 3})  # the formats stored as deflated bit planes, not frame steps
BITS, STEP_DB = LAYOUTS[FORMAT]
_HEADER = struct.Struct("<HI")  # bands, frames
DECODED_CACHE_BYTES = 64 << 20  # decoded prints kept for reuse: ~150 three-minute tracks


@cache
def _kept_bands(config: FeatureConfig) -> np.ndarray:
    """Indices of the log-mel bands whose centre frequency lies in BAND_HZ."""
    centres = config.band_corners_hz()[1:-1]
    return np.flatnonzero((centres >= BAND_HZ[0]) & (centres <= BAND_HZ[1]))


def print_frames_per_s(config: FeatureConfig) -> float:
    """Frames a second of the prints made from log-mels of `config` (POOL mel frames each)."""
    return config.frames_per_s / POOL


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
    codes = (np.clip(np.round(x / step_db), -half, half - 1) + half).astype(np.int8)
    header = _HEADER.pack(*x.shape)
    if format in BIT_PLANES:
        flat = codes.ravel()
        planes = b"".join(np.packbits((flat >> bit) & 1).tobytes() for bit in range(bits))
        return zlib.compress(header + planes, 6)
    steps = np.diff(codes, axis=1, prepend=np.int8(0))  # a band's first value as it is
    huffman = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    return huffman.compress(header + steps.tobytes()) + huffman.flush()


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
    if format in BIT_PLANES:
        size = (n + 7) // 8
        codes = np.zeros(n, dtype=np.uint8)
        for bit in range(bits):
            start = _HEADER.size + bit * size
            plane = np.frombuffer(raw, dtype=np.uint8, count=size, offset=start)
            codes |= np.unpackbits(plane, count=n) << bit
    else:
        steps = np.frombuffer(raw, dtype=np.int8, count=n, offset=_HEADER.size)
        codes = steps.reshape(bands, frames).cumsum(axis=1, dtype=np.int16)
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
