"""What `match` finds of the catalog in an upload's samples (Engine.match_candidates): the
readings it needs, as it plays first and further only where that leaves a doubt
(readings.py), each track at its best alignment over them, and a second catalog track beside
the first where another sound plays with it (residual.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mirsearch import audio, levels
from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.duplicates import Reading, best_of, candidates, print_frames_per_s
from mirsearch.index import VectorIndex
from mirsearch.matcher import Matcher
from mirsearch.readings import read_as_needed, read_far, read_under_talk
from mirsearch.repeating import under_other_sound
from mirsearch.residual import busiest, rest_of
from mirsearch.scoring import Match

if TYPE_CHECKING:  # the reader of a network other than a CNN, loaded where there is one
    from mirsearch.embeddings import Embedder


@dataclass(frozen=True)
class UploadCheck:
    """One catalog's near-duplicate check of uploads: its window index, the reader of uploads
    (the model's matching branch), the catalog's prints and files, and the threshold a score
    confirms a track at."""

    reader: Matcher | Embedder
    index: VectorIndex
    catalog: Catalog
    settings: Settings
    threshold: float

    def candidates(self, samples: np.ndarray, *, every_hypothesis: bool = False) -> list[Match]:
        """The catalog tracks the signal's windows align with best, verified and scored (not
        thresholded).

        The signal is read as it plays first, at the other pitch hypotheses only when that
        reading leaves a doubt, and further in key and brought back from the speeds of sped-up
        and slowed copies only when none of those lists a track (readings.read_as_needed); or
        at all of them with `every_hypothesis` (what the threshold's calibration samples other
        music with). Each reading is its windows' vectors and its print, several hypotheses read
        in one batched pass of the matching branch (`reader`), and each track keeps its best
        alignment over them.
        """
        config = self.settings.duplicates
        sample_rate = self.settings.audio.sample_rate

        as_played = {}  # the upload's print read as it plays, for `_beside`

        def read(semitones: Sequence[float], signal: np.ndarray = samples) -> list[Reading]:
            hypotheses = self.reader.matching(
                signal,
                hop_s=self.settings.embedding.query_hop_s,
                frequency_scales=[2 ** (st / 12) for st in semitones],
            )
            heard = self._sounding(signal, hypotheses[0].offsets_s)
            if signal is samples and 0.0 in semitones:
                as_played["print"] = hypotheses[list(semitones).index(0.0)].fingerprint
            return [
                Reading(h.vectors[heard], h.offsets_s[heard], h.fingerprint) for h in hypotheses
            ]

        def read_at(speed: float) -> tuple[list[Reading], float]:
            brought_back, played = audio.played_at(samples, 1 / speed, sample_rate=sample_rate)
            # as it then plays, and at the pitch it played at (a copy stretched in time alone)
            return read([0.0, 12 * math.log2(played)], brought_back), 1 / played

        def read_repeating() -> Reading:
            h = under_other_sound(
                self.reader,
                samples,
                hop_s=self.settings.embedding.query_hop_s,
                config=self.settings.embedding,
            )
            heard = self._sounding(samples, h.offsets_s)
            return Reading(h.vectors[heard], h.offsets_s[heard], h.fingerprint, h.weights)

        if every_hypothesis:
            readings = read(sorted(config.pitch_hypotheses_st))
            found = best_of(
                candidates(self.index, readings, self.catalog.prints, config=config),
                read_far(self.index, read, read_at, self.catalog.prints, config=config),
                read_under_talk(self.index, read_repeating(), self.catalog.prints, config=config),
            )
        else:
            found = read_as_needed(
                self.index,
                read,
                self.catalog.prints,
                threshold=self.threshold,
                versions=self.catalog.versions,
                read_at=read_at,
                read_repeating=read_repeating,
                config=config,
            )

        def upload_print() -> np.ndarray:
            if "print" not in as_played:  # no reading as it plays yet (no 0 among the pitches)
                read([0.0])
            return as_played["print"]

        return best_of(found, self._beside(samples, upload_print, found, read))

    def _beside(
        self,
        samples: np.ndarray,
        upload_print: Callable[[], np.ndarray],
        found: list[Match],
        read: Callable[..., list[Reading]],
    ) -> list[Match]:
        """The catalog tracks heard in `samples` once the best track confirmed in them (`found`,
        best first) is taken out (residual.py): two catalog tracks mixed, the one under the
        other. Only where another sound owns some of the upload's print along it
        (config.rest_min_owned on `upload_print()`, the upload's as it plays), its file can be
        read and something is left there; none otherwise."""
        config = self.settings.duplicates
        top = next((m for m in found if m.score >= self.threshold), None)
        if top is None or not config.second_track:
            return []
        track_print = self.catalog.prints([top.track_id]).get(top.track_id)
        if track_print is None:  # pruned meanwhile
            return []
        owned, owned_at_s = busiest(
            upload_print(), track_print, top, frames_per_s=print_frames_per_s(self.index)
        )
        if owned < config.rest_min_owned:
            return []
        row = self.catalog.get(top.track_id)
        if row is None:
            return []
        rest = rest_of(
            samples,
            top,
            Path(row.path),
            config=self.settings.audio,
            min_share=config.rest_min_share,
            probe_at_s=owned_at_s,
        )
        if rest is None:
            return []
        exclude = frozenset({top.track_id})
        return candidates(
            self.index,
            read([0.0], rest),
            self.catalog.prints,
            config=config,
            exclude=exclude,
        )

    def _sounding(self, samples: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
        """Which windows starting at `offsets_s` are sound, not a pause (all, where none is): a
        pause's windows had lined up with the pauses of catalog tracks, and 15 s of a catalog
        track before or after 20 s of digital silence went unmatched."""
        return levels.heard_windows(
            samples,
            offsets_s,
            self.settings.embedding.window_s,
            sample_rate=self.settings.audio.sample_rate,
            silence_dbfs=self.settings.audio.silence_dbfs,
        )
