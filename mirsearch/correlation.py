"""Prints correlated at every lag at once: a query's chunks against the frames of a track a line
puts them on, each free to shift, as products of Fourier transforms (verification.py reads the
agreement and the line from them).

Both prints are read relative to each frame's mean over the bands, and the depth of cells more
than FLOOR_DB below it is halved (a soft floor): the quiet cells are where another recording
mixed underneath, or noise, shows first, and they carry little of the music's own detail
(replayed on the `make eval-dupes` queries, bench/dupes_replay.py: 10 s clips under another
recording at −12 dB 94.6 → 96.4 % found, under noise at 10 dB SNR 96.4 → 100 %, no transform
lower). A hard floor did as well there, but left little besides the partials: two synthetic demo
pieces in one key, one at about twice the other's tempo, agreed at 0.36 instead of 0.23 and were
flagged as duplicates; softened they agree at 0.25.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# the check reads a cell more than FLOOR_DB below its frame's mean over bands at FLOOR_SLOPE of
# its depth beyond that
FLOOR_DB, FLOOR_SLOPE = -6.0, 0.5


def lag_correlations(
    q: np.ndarray,
    energies: np.ndarray,
    tracks: Sequence[np.ndarray],
    columns: Sequence[np.ndarray],
    lags: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """(chunks, lags) correlations of each centred query chunk q[c] (bands, n), of energy
    energies[c] (its sum of squares), with its track's floored frames `column + lag`, each
    centred the same way (per band over frames, per frame over bands). The chunks are those of
    `columns`, in order: columns[i] (chunks_i, n) are the frames of tracks[i] its chunks land
    on.

    With `weights` (chunks, bands, n), each cell counts by its weight: q[c] is then the
    weighted chunk (centred again), energies[c] its weighted sum of squares, and the track
    chunk's energy is taken under the same weights (`_weighted_energy`), so that a correlation
    stays within ±1 wherever the track's energy lies.

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
    if weights is None:
        energy = (
            squares
            - np.square(per_band).sum(axis=1) / n
            - frame_squares / bands
            + np.square(frame_sums) / (bands * n)
        )
    else:
        # each band's mean over the chunk's frames once every frame loses its mean over bands
        means = (per_band - frame_sums[:, None, :] / bands) / n
        energy = _weighted_energy(
            span, spectrum, per_frame / bands, weights, landing, means, width, fft_size
        )
    norms = np.sqrt(energies[:, None] * np.maximum(energy, 0.0)) + 1e-9
    return products / norms


def _weighted_energy(
    span: np.ndarray,
    spectrum: np.ndarray,
    frame_means: np.ndarray,
    weights: np.ndarray,
    landing: np.ndarray,
    means: np.ndarray,
    width: int,
    fft_size: int,
) -> np.ndarray:
    """(chunks, lags) energy of each centred track chunk under its query cells' weights:
    Σ w·(u − m)², where u is the track's floored frames (`span`, whose transform is
    `spectrum`) less each frame's mean over the bands (`frame_means`, (chunks, size)) and m
    (`means`, (chunks, bands, lags)) each band's mean of u over the chunk's frames at that lag.
    Expanded as Σ w·u² − 2 Σ_b m_b Σ w·u + Σ_b m_b² Σ w, its sliding sums taken as products of
    Fourier transforms against the weights summed where they land (`landing`, as
    `lag_correlations` lands q); u's transform is the span's less the frame means'."""
    chunks, bands, _ = span.shape
    n_lags = means.shape[-1]
    landed = np.bincount(landing.ravel(), weights.ravel(), minlength=chunks * bands * width)
    at = np.conj(np.fft.rfft(landed.reshape(chunks, bands, width), fft_size))
    u = span - frame_means[:, None, :]
    u_spectrum = spectrum - np.fft.rfft(frame_means, fft_size)[:, None, :]
    squares = np.fft.irfft((np.fft.rfft(np.square(u), fft_size) * at).sum(axis=1), fft_size)
    sums = np.fft.irfft(u_spectrum * at, fft_size)[..., :n_lags]
    totals = weights.sum(axis=2)[:, :, None]  # (chunks, bands, 1)
    return (
        squares[:, :n_lags]
        - 2 * (means * sums).sum(axis=1)
        + (np.square(means) * totals).sum(axis=1)
    )


def _fft_size(size: int) -> int:
    """The shortest transform of at least `size` points of the form 2^k, 3·2^k or 5·2^k, all
    fast in pocketfft: a 3 s chunk's lags reach ~160 frames, whose 160-point transforms take
    about half the time of 256-point ones."""
    return min(m << (-(-size // m) - 1).bit_length() for m in (1, 3, 5))


def _reached(track: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """(chunks, size) track frames → the floored frames (chunks, bands, size) in float64, zeros
    off the track."""
    on_track = (reach >= 0) & (reach < track.shape[1])
    span = floored(track[:, np.clip(reach, 0, track.shape[1] - 1)]).astype(np.float64)
    return np.moveaxis(span * on_track, 1, 0)


def floored(x: np.ndarray) -> np.ndarray:
    """(bands, frames) print → each frame less its mean over the bands, what lies below FLOOR_DB
    compressed to FLOOR_SLOPE of its depth beyond it."""
    x = x - x.mean(axis=0, keepdims=True)
    return np.where(x < FLOOR_DB, FLOOR_DB + FLOOR_SLOPE * (x - FLOOR_DB), x)


def centred(chunk: np.ndarray) -> np.ndarray:
    """(…, bands, frames) float64 less each band's mean over frames and each frame's mean over
    bands."""
    chunk = chunk - chunk.mean(axis=-1, keepdims=True, dtype=np.float64)
    return chunk - chunk.mean(axis=-2, keepdims=True)
