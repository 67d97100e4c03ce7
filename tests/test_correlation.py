"""The lag correlations: every chunk at every lag at once equals each shifted chunk built,
floored, centred and correlated."""

from __future__ import annotations

import numpy as np
import pytest

from mirsearch import correlation


def test_lag_correlations_equal_centring_every_shifted_chunk():
    """Chunks on lines of different speeds on two tracks, taken together: each row equals the
    chunk built from its own track, floored and centred at every lag, then correlated."""
    rng = np.random.default_rng(7)
    tracks = [rng.normal(size=(22, frames)).astype(np.float32) * 10 for frames in (300, 200)]
    query = rng.normal(size=(5, 22, 96)).astype(np.float32) * 10
    lags = np.arange(-32, 33)
    speeds = np.array([[0.94], [1.0], [1.06], [1.0], [0.97]])
    columns = np.round(10 + speeds * np.arange(96)).astype(np.int64)  # lags < -10 leave the track
    columns[4] += 90  # the second track's last lags reach past its end
    owner = [0, 0, 0, 1, 1]
    centred = correlation.centred(query)
    fast = correlation.lag_correlations(
        centred, np.square(centred).sum(axis=(1, 2)), tracks, [columns[:3], columns[3:]], lags
    )
    floored = [correlation.floored(t) for t in tracks]
    assert (floored[0] > tracks[0] - tracks[0].mean(axis=0)).mean() > 0.2  # the floor is exercised
    for chunk in range(5):
        q = correlation.centred(query[chunk])
        track = floored[owner[chunk]]
        for i, lag in enumerate(lags):
            if columns[chunk, 0] + lag < 0 or columns[chunk, -1] + lag >= track.shape[1]:
                continue
            t = correlation.centred(track[:, columns[chunk] + lag])  # the chunk built, centred
            expected = (q * t).sum() / np.sqrt((q * q).sum() * (t * t).sum())
            assert fast[chunk, i] == pytest.approx(expected, abs=1e-7)


def test_weighted_lag_correlations_take_the_track_chunk_energy_under_the_weights():
    """Each row with weights equals Σ w·q·t / √(Σ w·q² · Σ w·t²) of the chunk built at every
    lag (q and t centred), so it stays within ±1 even where the track's energy sits under the
    heavy weights: a track loud where the weights are 1 and near-flat elsewhere had read 1.33
    when its energy was taken as spread evenly over the cells."""
    rng = np.random.default_rng(11)
    track = rng.normal(size=(22, 300)) * 10
    track[:11] *= 0.05  # the low bands near-flat ...
    query = track[:, 100:196] + rng.normal(size=(22, 96))
    weights = np.ones((22, 96))
    weights[11:] = rng.random((11, 96))  # ... the loud ones weighted, a copy's cells
    weights[:11] = 0.02
    weights = np.repeat(weights[None], 2, axis=0)
    lags = np.arange(-20, 21)
    columns = np.round(90 + np.array([[1.0], [1.03]]) * np.arange(96)).astype(np.int64)
    centred = correlation.centred(np.stack([query, query]))
    energies = (weights * np.square(centred)).sum(axis=(1, 2))
    fast = correlation.lag_correlations(
        correlation.centred(weights * centred), energies, [track], [columns], lags, weights
    )
    spread = correlation.lag_correlations(
        correlation.centred(weights * centred),
        energies * weights.mean(axis=(1, 2)),
        [track],
        [columns],
        lags,
    )
    assert spread.max() > 1.2  # what reading the track's energy as spread evenly gave
    assert np.abs(fast).max() <= 1.0 + 1e-9
    assert fast[0, 30] > 0.9  # the copy, at lag +10: frames 100-195
    floored = correlation.floored(track)
    for chunk in range(2):
        w, q = weights[chunk], centred[chunk]
        for i, lag in enumerate(lags):
            t = correlation.centred(floored[:, columns[chunk] + lag])
            expected = (w * q * t).sum() / np.sqrt((w * q * q).sum() * (w * t * t).sum())
            assert fast[chunk, i] == pytest.approx(expected, abs=1e-7)
