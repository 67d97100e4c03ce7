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
