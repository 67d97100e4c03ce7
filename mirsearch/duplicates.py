"""Near-duplicate detection: window lines checked on the prints, the best kept.

The query's windows give every catalog track they point to a line of speed and offset
(`lines.vote`). The lines of most window evidence are verified at 1/32 s on the tracks' prints
(`verification.check`): a copy's spectrogram moves with the query's, other music with the same
sound does not, and the prints put a copy's line where it lies (its speed to a few thousandths,
its offset to a few hundredths of a second, where the windows' vote knows them to a few per
cent). The windows' evidence and the prints' agreement give a score (`scoring.py`, with the
threshold calibrated for it). Which readings of an upload are checked so (as it plays, at other
pitches, brought back from other speeds, its music under other sound) is readings.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mirsearch import fingerprint, lines, verification
from mirsearch.config import DuplicateConfig, FeatureConfig
from mirsearch.index import VectorIndex
from mirsearch.scoring import Match, ranked, scored, window_logit

NO_PRINT = np.zeros((0, 0), np.float32)  # what a track without a print is checked against
# Track ids → their prints (bands, frames) uint8; ids without a print are left out.
Prints = Callable[[Sequence[int]], Mapping[int, np.ndarray]]


@dataclass(frozen=True)
class Reading:
    """A query as one pitch hypothesis reads it (matcher.Matcher.matching)."""

    vectors: np.ndarray  # (n, D) its windows' matching vectors
    offsets_s: np.ndarray  # (n,) where they start
    fingerprint: np.ndarray  # (bands, frames) its print (fingerprint.make_print)
    # (bands, frames) how much each print cell counts in the check, 0-1 (repeating.py); None: all
    weights: np.ndarray | None = None

    @property
    def query_print(self) -> verification.Query:
        """The print as the check reads it: weighted where the reading has weights."""
        if self.weights is None:
            return self.fingerprint
        return verification.Weighted(self.fingerprint, self.weights)


def find_matches(
    index: VectorIndex,
    query_vectors: np.ndarray,
    query_offsets_s: np.ndarray,
    query_print: np.ndarray,
    prints: Prints,
    *,
    config: DuplicateConfig = DuplicateConfig(),
    threshold: float | None = None,
    exclude: frozenset[int] = frozenset(),
) -> list[Match]:
    """Catalog tracks the query contains, best first; `threshold` None uses config's default."""
    threshold = config.default_threshold if threshold is None else threshold
    reading = Reading(query_vectors, query_offsets_s, query_print)
    found = candidates(index, [reading], prints, config=config, exclude=exclude)
    return ranked([m for m in found if m.score >= threshold])


def candidates(
    index: VectorIndex,
    readings: Sequence[Reading],
    prints: Prints,
    *,
    config: DuplicateConfig = DuplicateConfig(),
    exclude: frozenset[int] = frozenset(),
    min_similarity: float = 0.0,
) -> list[Match]:
    """The best alignments of the query with catalog tracks, verified and scored, best first.

    Each reading of the query (a pitch hypothesis) gives every track its windows point to a
    best line; the tracks of most window evidence (`strongest`) are checked on the prints along
    each of their lines whose windows are `min_similarity` alike or more (mean cosine), and each
    keeps its best-scoring one.
    """
    per_reading = [lines_of(index, r, config, exclude) for r in readings]
    return checked_lines(
        index, readings, per_reading, prints, [{} for _ in readings], config, min_similarity
    )


def best_of(*found: Sequence[Match]) -> list[Match]:
    """Each track's best-scoring match over the lists `found`, highest score first."""
    best: dict[int, Match] = {}
    for m in (m for matches in found for m in matches):
        if m.track_id not in best or _evidence(m) > _evidence(best[m.track_id]):
            best[m.track_id] = m
    return sorted(best.values(), key=lambda m: (-m.score, m.track_id))


def lines_of(
    index: VectorIndex, reading: Reading, config: DuplicateConfig, exclude: frozenset[int]
) -> list[lines.Line]:
    """A reading's lines: its windows' vote (`lines.vote`)."""
    return lines.vote(index, reading.vectors, reading.offsets_s, config=config, exclude=exclude)


def print_frames_per_s(index: VectorIndex) -> float:
    """Frames a second of the catalog's prints and an upload's: those of the features the
    index was built with, the model's (not the settings' defaults)."""
    return fingerprint.print_frames_per_s(FeatureConfig(**index.meta.feature_config))


def checked_lines(
    index: VectorIndex,
    readings: Sequence[Reading],
    per_reading: Sequence[Sequence[lines.Line]],
    prints: Prints,
    checked: Sequence[dict[int, Match]],
    config: DuplicateConfig,
    min_similarity: float = 0.0,
) -> list[Match]:
    """The strongest tracks of `per_reading` (the readings' lines) verified: see `candidates`.
    The tracks are chosen on all the lines, and those less alike than `min_similarity` left
    unchecked after: a check less, never another track checked in its place. `checked` (one a
    reading) holds the checks made before, which are not made again (`verified_best`)."""
    frames_per_s = print_frames_per_s(index)
    duration_s = readings[0].fingerprint.shape[1] / frames_per_s if readings else 0.0
    chosen = strongest(per_reading, duration_s, config)
    per_reading = [[ln for ln in r if ln.similarity >= min_similarity] for r in per_reading]
    unchecked = {
        line.track_id
        for reading, known in zip(per_reading, checked, strict=True)
        for line in reading
        if line.track_id in chosen and line.track_id not in known
    }
    track_prints = prints(sorted(unchecked)) if unchecked else {}
    query_prints = [r.query_print for r in readings]
    return verified_best(
        per_reading, query_prints, chosen, track_prints, frames_per_s, config, checked=checked
    )


def strongest(
    per_reading: Sequence[Sequence[lines.Line]], duration_s: float, config: DuplicateConfig
) -> set[int]:
    """The tracks whose best line over the readings has the most window evidence
    (`scoring.window_logit`, ties to the lower id): config.verify_tracks of them per started
    minute of query, so a long upload holding many catalog tracks has them all checked.

    Most of a query's tracks are other music its windows brush against; each strongest track is
    checked along every reading's line, as the reading with the best windows is not always the
    one whose print agrees best (reverb, noise: checking only the best line of each of 8 tracks
    lost 5 s reverb clips, 89 → 82 %, in a replay of `make eval-dupes`). Five tracks instead of
    eight lost the quieter of two catalog tracks mixed in one upload (bench/background.py: both
    listed in 4 of 30 mixes at equal level instead of 6).
    """
    evidence: dict[int, float] = {}
    for reading in per_reading:
        for line in reading:
            evidence[line.track_id] = max(
                evidence.get(line.track_id, -np.inf), window_logit(line, config)
            )
    n = config.verify_tracks * max(1, int(np.ceil(duration_s / 60.0)))
    return set(sorted(evidence, key=lambda t: (-evidence[t], t))[:n])


def verified_best(
    per_reading: Sequence[Sequence[lines.Line]],
    query_prints: Sequence[verification.Query],
    chosen: set[int],
    track_prints: Mapping[int, np.ndarray],
    frames_per_s: float,
    config: DuplicateConfig,
    *,
    checked: Sequence[dict[int, Match]] | None = None,
) -> list[Match]:
    """Each chosen track's lines verified with their reading's print (`query_prints`, one a
    reading) and its best-scoring one kept, highest score first. The prints' agreement, then the
    windows' similarity, settle ties of clear copies, whose scores all round to 1.0: the
    hypothesis the query really plays at is the one kept. `checked` (one a reading, track id →
    the best of its lines there verified) holds the checks made before and receives the new
    ones."""
    checked = checked if checked is not None else [{} for _ in per_reading]
    # the lines of the tracks not checked before in their reading, with its print: all checked in
    # one pass
    new = [
        (r, line, query_print)
        for r, (reading, query_print, known) in enumerate(
            zip(per_reading, query_prints, checked, strict=True)
        )
        for line in reading
        if line.track_id in chosen and line.track_id not in known
    ]
    verified = _verified([(line, p) for _, line, p in new], track_prints, frames_per_s, config)
    for (r, line, _), match in zip(new, verified, strict=True):
        known = checked[r].get(line.track_id)
        if known is None or _evidence(match) > _evidence(known):
            checked[r][line.track_id] = match
    best: dict[int, Match] = {}
    for reading, known in zip(per_reading, checked, strict=True):
        for line in reading:
            if line.track_id not in chosen:
                continue
            found = known[line.track_id]
            if line.track_id not in best or _evidence(found) > _evidence(best[line.track_id]):
                best[line.track_id] = found
    return sorted(best.values(), key=lambda m: (-m.score, m.track_id))


def _verified(
    lines_to_check: Sequence[tuple[lines.Line, verification.Query]],
    track_prints: Mapping[int, np.ndarray],
    frames_per_s: float,
    config: DuplicateConfig,
) -> list[Match]:
    """Each (line, the query print of its reading) scored with its prints' agreement, its speed,
    track offset and stretch of the query refitted to the prints (`verification.checks`, all of
    them in one pass: a catalog excerpt inside a longer upload begins where its print does, not
    where the windows' line, a catalog hop coarse, put it). A track without a print is checked
    against an empty one: agreement 0, the line unchanged."""
    found = verification.checks(
        [
            (
                query_print,
                track_prints.get(line.track_id, NO_PRINT),
                verification.Alignment(
                    query_start_s=line.query_offset_s,
                    query_end_s=line.query_offset_s + line.duration_s,
                    track_offset_s=line.track_offset_s,
                    speed=line.speed,
                ),
            )
            for line, query_print in lines_to_check
        ],
        frames_per_s=frames_per_s,
        chunk_s=config.verify_chunk_s,
        chunk_hop_s=config.verify_chunk_hop_s,
        max_lag_s=config.verify_max_lag_s,
        max_chunks=config.verify_max_chunks,
        background=config.verify_background,
    )
    return [
        scored(_stretched(line, checked.alignment), checked, config)
        for (line, _), checked in zip(lines_to_check, found, strict=True)
    ]


def _stretched(line: lines.Line, alignment: verification.Alignment) -> lines.Line:
    """`line` over the stretch of the query `alignment` puts on the track."""
    return dataclasses.replace(
        line,
        query_offset_s=alignment.query_start_s,
        duration_s=alignment.query_end_s - alignment.query_start_s,
    )


def _evidence(m: Match) -> tuple[float, float, float]:
    return (m.score, m.agreement, m.similarity)
