"""How loud a signal is, as the silence check reads it: its level once each short block loses
its trend (a DC offset or sub-audible drift is no sound), and which of its windows lie in pauses.

audio.py refuses a silent file by this level; embeddings.py and the queries leave out the
windows in pauses.
"""

from __future__ import annotations

import numpy as np

# The silence check measures what is left once each block of this length loses its straight-line
# trend: a DC offset and drift below ~10 Hz (-30 dB and more; 50 Hz passes) are no sound, and an
# upload of nothing else had been matched to a catalog track.
LEVEL_BLOCK_S = 0.02
# A window is sound unless 1 - SOUNDING_SHARE of it is in pauses. A clip cut from a catalog track
# scored 0.936 in search, 0.823 after a 3 s silent lead-in, 0.888 with windows left out when
# half their blocks were quiet, 0.918 at 0.9. Counting every quiet block, dry sparse music lost
# windows (clicks 0.75 s apart: all; 36 of 150 clips of ../shared/genres, some or all: a
# 5-fold genre CV 2 points lower); counting pauses only, its windows stay, and of the 5,560
# windows of ../shared/audio 35 fall out, 31 of them at a track's start or end.
SOUNDING_SHARE = 0.9
PAUSE_S = 1.0  # quiet this long is a pause; the gaps in dry, sparse music are shorter


def level_dbfs(samples: np.ndarray, *, sample_rate: int) -> float:
    """The level of mono `samples` at `sample_rate` that the silence check reads
    (`_detrended_power`), in dBFS; NaN where a sample is not finite."""
    power = _detrended_power(samples, max(2, int(LEVEL_BLOCK_S * sample_rate)))
    return 10 * np.log10(power + 1e-24)


def sounding_windows(
    samples: np.ndarray,
    starts_s: np.ndarray,
    window_s: float,
    *,
    sample_rate: int,
    silence_dbfs: float,
) -> np.ndarray:
    """Whether each window of `samples` (`window_s` seconds from each of `starts_s`) is sound:
    less than 1 - SOUNDING_SHARE of it in pauses, runs of LEVEL_BLOCK_S blocks below
    `silence_dbfs` (each read as the silence check reads a file, `_detrended_power`) that last
    PAUSE_S or longer. A silent lead-in or ending, or a pause, is left out of what a signal's
    windows are averaged into (embeddings.Embedder.analyse); the short gaps between the notes of
    dry, sparse music are not pauses."""
    block = max(2, int(LEVEL_BLOCK_S * sample_rate))
    starts_s = np.asarray(starts_s, dtype=np.float64)
    if samples.size < block:
        return np.ones(len(starts_s), dtype=bool)
    quiet = _block_residuals(samples, block) / block < 10 ** (silence_dbfs / 10)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    paused = np.zeros(quiet.size, dtype=bool)
    for start, end in edges.reshape(-1, 2):  # each run of quiet blocks: [start, end)
        if (end - start) * block >= PAUSE_S * sample_rate:
            paused[start:end] = True
    in_pause = np.concatenate([[0], np.cumsum(paused)])  # paused blocks before each block
    first = np.clip(np.round(starts_s * sample_rate / block).astype(np.int64), 0, quiet.size)
    last = np.clip(
        np.round((starts_s + window_s) * sample_rate / block).astype(np.int64), 0, quiet.size
    )
    return in_pause[last] - in_pause[first] <= (1 - SOUNDING_SHARE) * (last - first)


def heard_windows(sounding: np.ndarray) -> np.ndarray:
    """The windows a signal is read by: those sounding (`sounding_windows`), or every window
    where none is (a quiet clip by all of its windows, rather than by none)."""
    return sounding | (not sounding.any())


def _detrended_power(samples: np.ndarray, block: int) -> float:
    """Mean power of `samples` once each `block` of them (the last, shorter one left out) loses
    its least-squares line; NaN where a sample is not finite."""
    block = min(block, samples.size)
    residual = _block_residuals(samples, block)
    return float(residual.sum(dtype=np.float64) / (residual.size * block))


def _block_residuals(samples: np.ndarray, block: int) -> np.ndarray:
    """The energy each `block` of `samples` (the last, shorter one left out) keeps once it loses
    its least-squares line: (n // block,), NaN where a sample is not finite.

    Per block, it is its energy less its sum squared over its length and its moment about the
    centre squared over the moments' norm: three reductions the blocks share (BLAS; no copy of
    the samples: an hour, ~0.09 s) and the cancellation within a block only.
    """
    blocks = samples[: samples.size // block * block].reshape(-1, block)
    t = np.arange(block, dtype=np.float32) - (block - 1) / 2
    with np.errstate(invalid="ignore"):  # NaN or infinite samples: told by the result
        energy = np.einsum("ij,ij->i", blocks, blocks)
        trend = blocks.sum(axis=1) ** 2 / block + (blocks @ t) ** 2 / float(t @ t or 1.0)
        return np.maximum(energy - trend, 0.0)
