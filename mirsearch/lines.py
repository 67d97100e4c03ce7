"""Where a query's windows put catalog tracks: (query time, track time) pairs voted into lines.

Each query window fetches its nearest catalog windows. For every track they point to, the pairs
(query time t, track time u) are voted into a grid of speeds and offsets (u ≈ speed·t + offset,
speeds 0.88–1.12), so a re-encoded, filtered, noisy, sped-up or pitch-shifted copy still lines up.
Each track keeps its line of most support near normal speed, and a long one of more support
further from it: the windows' evidence, which `duplicates` checks on the prints and scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirsearch.config import DuplicateConfig
from mirsearch.index import VectorIndex

SPEED_PRIOR = 0.1  # support lost per unit of speed change: 0.5 % at ±5 %


@dataclass(frozen=True)
class Line:
    """A track's windows lined up with the query's: where, for how long, how fast (unchecked)."""

    track_id: int
    query_offset_s: float  # where in the query the line begins
    track_offset_s: float  # where in the track it begins
    duration_s: float  # how long it is (query time)
    speed: float  # track seconds per query second (1.05: the query plays the track 5% fast)
    windows: int  # query windows on it
    similarity: float  # their mean cosine similarity


def vote(
    index: VectorIndex,
    query_vectors: np.ndarray,
    query_offsets_s: np.ndarray,
    *,
    config: DuplicateConfig,
    exclude: frozenset[int],
) -> list[Line]:
    """The best line with every track the query's windows, (n, D) starting at
    `query_offsets_s` (n,), point to with config.min_windows of them or more (and a long line at
    a speed further from 1: `_best_lines`); tracks in `exclude` are left out of the search, so
    the k nearest are of the others."""
    if len(query_vectors) == 0 or index.n_tracks == 0:
        return []
    k = min(config.neighbours, index.ntotal_windows)
    scores, tracks, windows = index.search_windows(
        np.ascontiguousarray(query_vectors), k, excluded_tracks=exclude
    )
    t = np.repeat(np.asarray(query_offsets_s, dtype=np.float64), k)
    s, tid, u = scores.reshape(-1), tracks.reshape(-1), windows.reshape(-1) * index.meta.hop_s
    keep = (tid >= 0) & (s >= config.min_similarity)
    return _best_lines(tid[keep], t[keep], u[keep], s[keep], index.meta.hop_s, config)


def _best_lines(
    tid: np.ndarray,
    t: np.ndarray,
    u: np.ndarray,
    s: np.ndarray,
    hop_s: float,
    config: DuplicateConfig,
) -> list[Line]:
    """Each track's (query time t, track time u, similarity s) pairs voted into speed × offset
    cells, all tracks at once; the cell with most support within config.far_speed of normal
    speed makes the track's line, and the one of most support at any speed a second line where
    that is further and spans config.far_min_s or more: over a clip, lines a few per cent apart
    span the same windows and a far one can win by a window or two of a repeating phrase, while
    over a long file only the true speed's line holds (a whole version 10 % away). The prints
    tell the two apart.

    A cell's support is the sum, over query times, of the best similarity among that time's
    pairs lying on the cell's line (`_best_cells`). Tracks with fewer than config.min_windows
    query times pointing to them never make a line.
    """
    if tid.size == 0:
        return []
    order = np.lexsort((t, tid))  # by track, then query time; stable
    tid, t, u, s = tid[order], t[order], u[order], s[order]
    new_track = np.r_[True, tid[1:] != tid[:-1]]
    new_time = new_track | np.r_[True, t[1:] != t[:-1]]  # the first pair of a (track, time)
    starts = np.flatnonzero(new_track)
    times_per_track = np.add.reduceat(new_time.astype(np.int64), starts)
    enough = np.repeat(times_per_track >= config.min_windows, np.diff(np.r_[starts, tid.size]))
    if not enough.any():
        return []
    tid, t, u, s = tid[enough], t[enough], u[enough], s[enough]
    new_track, new_time = new_track[enough], new_time[enough]
    starts = np.flatnonzero(new_track)
    ends = np.r_[starts[1:], tid.size]
    speeds = np.asarray(config.speeds)
    near = np.abs(speeds - 1.0) <= config.far_speed + 1e-9
    if t.max() - t.min() + config.window_s < config.far_min_s:  # no far line could be kept
        speeds, near = speeds[near], near[near]
    slack = config.tolerance_s + hop_s / 2  # on the line: track time within this of it
    by_speed = u[None, :] - speeds[:, None] * t[None, :]  # (speeds, pairs)
    supports, cells = _best_cells(
        by_speed, np.cumsum(new_track) - 1, np.cumsum(new_time) - 1, s, hop_s, slack
    )
    # A short query barely constrains speed (neighbouring catalog windows overlap and look
    # alike): a slight preference for normal speed settles near-ties (the first speed of the
    # best weighted support wins).
    weighted = supports * (1 - SPEED_PRIOR * np.abs(speeds - 1.0))
    chosen = np.argmax(weighted, axis=1)
    chosen_near = np.flatnonzero(near)[np.argmax(weighted[:, near], axis=1)]
    lines = []
    for g, (first, end) in enumerate(zip(starts, ends, strict=True)):
        for k in dict.fromkeys([int(chosen_near[g]), int(chosen[g])]):
            line = _line(
                int(tid[first]),
                t[first:end],
                s[first:end],
                by_speed[k, first:end],
                float(speeds[k]),
                float(cells[g, k]),
                slack,
                config,
            )
            if line is not None and (near[k] or line.duration_s >= config.far_min_s):
                lines.append(line)
    return lines


def _line(
    track_id: int,
    t: np.ndarray,
    s: np.ndarray,
    pair_offsets: np.ndarray,
    speed: float,
    cell: float,
    slack: float,
    config: DuplicateConfig,
) -> Line | None:
    """One track's line through the cell `cell` at `speed`, from its pairs on it."""
    on_line = np.abs(pair_offsets - cell) <= slack
    times, sims, offsets = _per_query_window(t[on_line], s[on_line], pair_offsets[on_line])
    if times.size < config.min_windows:
        return None
    # The cell's centre is only a catalog hop from the truth; the windows' own offsets, each a
    # hop-quantised guess, agree on it more closely (their median).
    offset = float(np.median(offsets))
    # The line begins where its first window is, or where the track begins if that is later
    # (its first window lies within a hop of the line): pinning the track's start to the first
    # window instead had moved the whole line, up to seconds off at a speed away from 1.
    start = max(float(times.min()), -offset / speed)
    return Line(
        track_id=track_id,
        query_offset_s=start,
        track_offset_s=float(max(0.0, speed * start + offset)),
        duration_s=float(times.max() - start + config.window_s),
        speed=float(speed),
        windows=int(times.size),
        similarity=float(sims.mean()),
    )


def _best_cells(
    offsets: np.ndarray,
    group_of: np.ndarray,
    time_of: np.ndarray,
    s: np.ndarray,
    hop_s: float,
    slack: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(speeds, pairs) offsets of pairs in groups (tracks, numbered from 0 in order) → for each
    group and speed, its best cell's support and offset, each (groups, speeds).

    A line's cells are the offsets, a hop apart, that some pair of its group rounds to at its
    speed; a cell's support is the sum over query times (`time_of`: numbered from 0 across the
    groups, in order) of the best similarity of that time's pairs within `slack` of it (the
    first of equal cells wins). A pair lies near its own cell and at most the next few, so it
    votes only there. The votes are kept as (cell, query time) slots and the best of each slot
    found by sorting: memory in proportion to the votes, where a dense (cells, query times)
    grid grew with the square of the upload's length (an hour against its own track: 1.3 GB).
    """
    n_speeds = offsets.shape[0]
    rounded = np.round(offsets / hop_s).astype(np.int64)
    reach = int(np.ceil(slack / hop_s + 0.5))  # cells a pair can lie near, on either side
    low = int(rounded.min()) - reach
    span = int(rounded.max()) + reach - low + 1  # keys of one line never meet the next line's
    line_of = group_of[None, :] * n_speeds + np.arange(n_speeds)[:, None]  # (speeds, pairs)
    keys = rounded - low + line_of * span  # a cell: its line and its offset, in one number
    cell_keys, own_row = np.unique(keys, return_inverse=True)
    own_row = own_row.reshape(keys.shape)  # flat in some NumPy releases
    n_slots = int(time_of[-1]) + 1
    times = np.broadcast_to(time_of, offsets.shape)
    sims = np.broadcast_to(s, offsets.shape)
    slots, values = [], []
    for step in range(-reach, reach + 1):
        neighbour = np.minimum(np.searchsorted(cell_keys, cell_keys + step), cell_keys.size - 1)
        row = neighbour[own_row]
        near = cell_keys[row] == keys + step
        near[near] = np.abs(offsets[near] - (rounded[near] + step) * hop_s) <= slack
        slots.append(row[near] * n_slots + times[near])
        values.append(sims[near])
    slot, value = np.concatenate(slots), np.concatenate(values)
    order = np.argsort(slot, kind="stable")
    slot, value = slot[order], value[order]
    starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    best_of_slot = np.maximum.reduceat(value, starts)
    support = np.bincount(slot[starts] // n_slots, weights=best_of_slot, minlength=cell_keys.size)
    # Every line has cells, in order of key: each line's first cell of its greatest support.
    line = cell_keys // span
    bounds = np.flatnonzero(np.r_[True, line[1:] != line[:-1]])
    greatest = np.maximum.reduceat(support, bounds)
    is_best = support == np.repeat(greatest, np.diff(np.r_[bounds, support.size]))
    best = np.flatnonzero(is_best)
    best = best[np.r_[True, line[best][1:] != line[best][:-1]]]
    cells = (cell_keys[best] - line[best] * span + low) * hop_s
    return greatest.reshape(-1, n_speeds), cells.reshape(-1, n_speeds)


def _per_query_window(
    t: np.ndarray, s: np.ndarray, offset: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query time once, with its best similarity and that pair's offset."""
    order = np.lexsort((-s, t))
    t, s, offset = t[order], s[order], offset[order]
    first = np.ones(t.size, dtype=bool)
    first[1:] = t[1:] != t[:-1]
    return t[first], s[first], offset[first]
