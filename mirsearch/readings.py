"""How an upload is read for near-duplicates, as much as it needs: as it plays first, at the
shifted pitch hypotheses only when that reading leaves it in doubt, further in key and brought
back from the speeds of sped-up and slowed copies only when no reading lists a track, and its
music under other sound only when none of those does either (`read_as_needed`). Each reading's
lines are checked on the prints by duplicates.py (`candidates`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from mirsearch import lines
from mirsearch.config import DuplicateConfig
from mirsearch.duplicates import Prints, Reading, best_of, candidates, checked_lines, lines_of
from mirsearch.index import VectorIndex
from mirsearch.scoring import Match, less_sure

# Pitch hypotheses (semitones) → the query's readings at them, in that order.
Read = Callable[[Sequence[float]], Sequence[Reading]]
# Track ids → the catalog's other versions of them (Catalog.versions).
Versions = Callable[[Sequence[int]], set[int]]
# A speed → the query brought back from it (played 1 / speed times as fast), read as it then
# plays and at the pitch it played at before, and the speed exactly undone.
ReadAt = Callable[[float], tuple[Sequence[Reading], float]]
# () → the query's repeating part, the music under other sound (repeating.under_other_sound).
ReadRepeating = Callable[[], Reading]


def read_as_needed(
    index: VectorIndex,
    read: Read,
    prints: Prints,
    *,
    threshold: float,
    versions: Versions = lambda track_ids: set(),
    read_at: ReadAt | None = None,
    read_repeating: ReadRepeating | None = None,
    config: DuplicateConfig = DuplicateConfig(),
) -> list[Match]:
    """`candidates` over the pitch hypotheses (`read_pitches`) and, where they confirm no track
    (a score at `threshold` on prints agreeing by config.settle_agreement), over the readings
    past their reach too (`read_far`): a copy moved further in key, sped up or slowed. Those may
    also list it, at a wrong speed on prints agreeing weakly (6 of 256 seeded clips 15-20 % fast
    or slow: at 1.0, agreeing by 0.29-0.43, where brought back they agree by 0.68-0.86). Where
    none of those confirms a track either, the music under other sound is read too
    (`read_under_talk`, where `read_repeating` is given). Each track keeps its best alignment,
    best first."""

    def confirmed(found: Sequence[Match]) -> bool:
        return any(m.score >= threshold and m.agreement >= config.settle_agreement for m in found)

    found = read_pitches(index, read, prints, threshold=threshold, versions=versions, config=config)
    if confirmed(found):
        return found
    found = best_of(found, read_far(index, read, read_at, prints, config=config))
    if confirmed(found) or read_repeating is None:
        return found
    return best_of(found, read_under_talk(index, read_repeating(), prints, config=config))


def read_under_talk(
    index: VectorIndex, repeating: Reading, prints: Prints, *, config: DuplicateConfig
) -> list[Match]:
    """`candidates` of the query's repeating part (repeating.under_other_sound: its windows,
    and its print weighted by the repeating part's share), each line free to shift
    config.under_talk_max_lag_s on the prints (the separation smears the windows' line a second
    or more), scored config.under_talk_logits less sure."""
    wide = dataclasses.replace(config, verify_max_lag_s=config.under_talk_max_lag_s)
    return [
        less_sure(m, config.under_talk_logits, config)
        for m in candidates(index, [repeating], prints, config=wide)
    ]


def read_far(
    index: VectorIndex,
    read: Read,
    read_at: ReadAt | None,
    prints: Prints,
    *,
    config: DuplicateConfig,
) -> list[Match]:
    """`candidates` of the query read at config.key_readings_st and brought back from each of
    config.speed_readings (`read_at_speeds`, where `read_at` is given), scored
    config.far_reading_logits less sure: more chances taken to line a track up. Each track's
    best, best first."""
    keys, floor = config.key_readings_st, config.far_min_similarity
    in_key = (
        candidates(index, read(keys), prints, config=config, min_similarity=floor) if keys else []
    )
    at_speeds = read_at_speeds(index, read_at, prints, config=config) if read_at else []
    return best_of([less_sure(m, config.far_reading_logits, config) for m in in_key], at_speeds)


def read_at_speeds(
    index: VectorIndex, read_at: ReadAt, prints: Prints, *, config: DuplicateConfig
) -> list[Match]:
    """`candidates` of the query brought back from each of config.speed_readings, read as it
    then plays and at the pitch it played at before, in the query's own time (offsets and
    durations divided by the speed undone, speeds multiplied by it); each track's best, best
    first.

    A sped-up ("nightcore") or slowed copy plays the track's tempo and pitch moved together, as
    resampling moves them; brought back from a speed within ~7 % of its own, its windows and
    print line up with the track's near speed 1. A copy stretched in time alone (tempo 1.25 at
    its own pitch, as many "sped up" edits are made) lines up in the same reading read at the
    pitch it played at: bench/speed_range.py finds 88-100 % of its 10 s clips at tempo 0.7-1.4,
    where of 12 seeded clips at 0.8, 1.2 and 1.25 the pitch readings had found 9, 6 and 4.
    (Checking each track in the reading its windows favour alone saved a tenth of the cost and
    lost copies halfway between two of these speeds.)
    """
    found = []
    for speed in config.speed_readings:
        readings, undone = read_at(speed)
        matches = candidates(
            index, readings, prints, config=config, min_similarity=config.far_min_similarity
        )
        found.append([_at_speed(m, undone, config) for m in matches])
    return best_of(*found)


def _at_speed(m: Match, speed: float, config: DuplicateConfig) -> Match:
    """A match of the query brought back from `speed` (played 1 / `speed` times as fast), in
    the query's own time, scored config.far_reading_logits less sure."""
    return dataclasses.replace(
        less_sure(m, config.far_reading_logits, config),
        query_offset_s=m.query_offset_s / speed,
        duration_s=m.duration_s / speed,
        speed=m.speed * speed,
    )


def read_pitches(
    index: VectorIndex,
    read: Read,
    prints: Prints,
    *,
    threshold: float,
    versions: Versions = lambda track_ids: set(),
    config: DuplicateConfig = DuplicateConfig(),
) -> list[Match]:
    """`candidates` over the pitch hypotheses (config.pitch_hypotheses_st), reading the query
    at the others only when the one nearest no shift leaves it in doubt.

    A reading that confirms a catalog track (a score at `threshold`, the prints agreeing by
    config.settle_agreement or more) and leaves no other track in doubt (none scoring from
    config.settle_doubt up to `threshold`: another version of the recording, lined up but at
    another pitch) is the answer: most uploads play the track as it is, and the shifted readings
    cost over half the work (clean 10 s clips of ../shared/audio on one core: 54 → 24 ms).
    Unless it lists a track on an agreement under config.settle_agreement, or the catalog holds
    `versions` of the confirmed tracks that reading did not confirm:
    a copy 5 % faster plays 0.85 semitones higher, and the unshifted reading may not find it at
    all (its windows crowded out by the original's in a repetitive piece, or its print out of
    line). Otherwise the query is read at the other hypotheses too and the candidates are those
    of all the readings, the first one's votes and checks reused: the same as `candidates` of
    every reading.
    """
    order = sorted(config.pitch_hypotheses_st)
    first = min(order, key=abs)
    readings: dict[float, Reading] = {}
    voted: dict[float, list[lines.Line]] = {}
    checked: dict[float, dict[int, Match]] = {st: {} for st in order}

    def verified(hypotheses: list[float]) -> list[Match]:
        for st, reading in zip(hypotheses, read(hypotheses), strict=True):
            readings[st] = reading
            voted[st] = lines_of(index, reading, config, frozenset())
        ready = [st for st in order if st in readings]
        return checked_lines(
            index,
            [readings[st] for st in ready],
            [voted[st] for st in ready],
            prints,
            [checked[st] for st in ready],
            config,
        )

    found = verified([first])
    settled = {
        m.track_id for m in found if m.score >= threshold and m.agreement >= config.settle_agreement
    }
    doubt = any(config.settle_doubt <= m.score < threshold for m in found)
    if settled and not doubt:
        listed = {m.track_id for m in found if m.score >= threshold}
        # a track listed on a weaker agreement may be another passage that sounds alike at
        # this pitch (a pitch-shifted copy's phrase repeated a semitone up, 140 s away): its own
        # pitch's reading places it
        if not (versions(sorted(listed)) | listed) - settled:
            return found
    rest = [st for st in order if st != first]
    return verified(rest) if rest else found
