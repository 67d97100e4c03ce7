"""The Python API the CLI and the web site call: one Engine answers every query."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mirsearch import audio, levels
from mirsearch.config import MAX_SIMILAR, DuplicateConfig, EmbeddingConfig
from mirsearch.errors import (
    AudioError,
    IndexMismatchError,
    InvalidParameterError,
    NotFoundError,
    TooLongError,
    TooShortError,
)
from mirsearch.groups import find_groups
from mirsearch.resources import Resources
from mirsearch.results import Classification, Examination, MatchResult, Result, group_report
from mirsearch.schema import MAX_TRACK_ID, Track
from mirsearch.scoring import Match, ranked
from mirsearch.search import Hit, rank
from mirsearch.search import similar as similar_tracks
from mirsearch.uploads import UploadCheck
from mirsearch.vocabulary import top_tags

if TYPE_CHECKING:  # imported where used: `similar` and `dupes` never load torch
    from mirsearch.embeddings import Analysis


log = logging.getLogger(__name__)

GENRES_NAMED = 30  # the catalog's most common genres an unknown one's message names
CLASSIFY_MIN_S = 1.0  # a genre and tags are read off a clip this long or longer (a query: 3 s)
SOUND_STEP_S = 0.1  # a query's sound is measured in steps of this length (its pauses left out)


class Engine(Resources):
    """The queries the CLI and the site ask, answered with the shared Resources."""

    # -- queries -------------------------------------------------------------------------------

    def _decoded_query(
        self, path: Path, *, min_duration_s: float | None = None, stream: int | None = None
    ) -> audio.Decoded:
        """An uploaded clip decoded, with what its file declared; refused when shorter than a query
        needs, or longer than a query may be (SearchConfig.max_query_s) before it is decoded
        whole. `stream`: that audio stream of it (from 0), not the one FFmpeg would choose."""
        limit_s = min(self.settings.search.max_query_s, self.settings.audio.max_duration_s)
        try:
            decoded = audio.load(
                Path(path),
                config=replace(self.settings.audio, max_duration_s=limit_s),
                stream=stream,
            )
        except TooLongError as exc:
            length = f"{exc.duration_s / 60:.1f} min long, " if exc.duration_s else ""
            raise TooLongError(
                f"{path}: {length}longer than a query may be, {limit_s / 60:g} min "
                "(SearchConfig.max_query_s): cut the clip, or index the recording to see what "
                "it duplicates (`mirsearch dupes`)"
            ) from exc
        minimum = self.settings.search.min_query_s if min_duration_s is None else min_duration_s
        if decoded.info.duration_s < minimum:
            raise TooShortError(
                f"{path}: the clip is {decoded.info.duration_s:.2f} s long; "
                f"queries need at least {minimum:.0f} s of audio"
            )
        return decoded

    def search(
        self, path: Path, *, k: int | None = None, genres: Sequence[str] = ()
    ) -> list[Result]:
        """The catalog tracks that sound most like the clip at `path`, best first. The parameters
        and the file are checked before the model is loaded: a mistake is told at once."""
        k = self._check_k(k)
        allowed = self.allowed_tracks(genres)
        _, analysis = self._heard_query(path)
        return self._rank(analysis, k=k, allowed=allowed)

    def _heard_query(self, path: Path) -> tuple[audio.Decoded, Analysis]:
        """A query decoded, refused if it holds too little sound (`_require_sound`), and
        embedded at the dense query hop: what `search` and `examine` rank."""
        decoded = self._decoded_query(path)
        self._require_sound(path, decoded)
        analysis = self.embedder.analyse(decoded.samples, hop_s=self.settings.embedding.query_hop_s)
        return decoded, analysis

    def _require_sound(self, path: Path, decoded: audio.Decoded) -> None:
        """Refuse a query with less than SearchConfig.min_query_s of sound: its length less its
        pauses (levels.sounding_windows). 2 s of music after 8 s of digital silence had passed the
        minimum on the file's length and been ranked on those 2 s (its source 16th), where the
        bare 2 s is refused."""
        minimum = self.settings.search.min_query_s
        rate = self.settings.audio.sample_rate
        heard = levels.sounding_windows(
            decoded.samples,
            np.arange(0.0, decoded.samples.size / rate, SOUND_STEP_S),
            SOUND_STEP_S,
            sample_rate=rate,
            silence_dbfs=self.settings.audio.silence_dbfs,
        )
        sound_s = decoded.info.duration_s - np.count_nonzero(~heard) * SOUND_STEP_S
        if sound_s < minimum:
            raise TooShortError(
                f"{path}: only {sound_s:.1f} s of the clip is sound; "
                f"queries need at least {minimum:.0f} s of sound"
            )

    def _rank(self, analysis: Analysis, *, k: int, allowed: set[int] | None) -> list[Result]:
        index = self._require_index()
        heard = analysis.sounding  # a silent lead-in would lower every track's aligned score
        hits = rank(
            index,
            analysis.vectors[heard],
            analysis.offsets_s[heard],
            analysis.track_vector,
            k=k,
            allowed_tracks=allowed,
            config=self.settings.search,
        )
        return self._results(hits)

    def similar(
        self, track_id: int, *, k: int | None = None, genres: Sequence[str] = ()
    ) -> list[Result]:
        """More like this: catalog tracks that sound like catalog track `track_id`."""
        k = self._check_k(k)
        row, waveform = self.track(track_id), self.catalog.waveform(track_id)
        index = self._require_index()
        if not index.contains(track_id):
            raise NotFoundError(f"track {track_id} has no embeddings (status is not 'indexed')")
        hits = similar_tracks(
            index,
            track_id,
            k=k,
            allowed_tracks=self.allowed_tracks(genres),
            config=self.settings.search,
            sounding=waveform.sounding(row.n_windows) if waveform else None,
        )
        return self._results(hits)

    def classify(self, path: Path, *, similar_k: int = 5, timeline: bool = False) -> Classification:
        """Genre probabilities and tags of a file and, once a catalog exists, its most similar
        tracks, not those holding the file itself (the same bytes: a catalog file classified had
        been listed first as similar to itself); with `timeline`, the genre of each window that
        is sound (a silent one has none)."""
        _whole("similar", similar_k, 0, MAX_SIMILAR)
        samples = self._decoded_query(path, min_duration_s=CLASSIFY_MIN_S).samples
        analysis = self.embedder.analyse(samples, hop_s=self.settings.embedding.query_hop_s)
        return self._classification(analysis, similar_k=similar_k, timeline=timeline, file=path)

    def examine(
        self, path: Path, *, k: int | None = None, genres: Sequence[str] = ()
    ) -> Examination:
        """What the site shows of an upload, from one decoding and one analysis: the tracks
        that sound like it (`search`), the catalog tracks it contains (`match`) and its genres
        and tags (`classify`, without similar tracks: those are the search's). The parameters
        are checked before the file is read."""
        k = self._check_k(k)
        allowed = self.allowed_tracks(genres)
        decoded, analysis = self._heard_query(path)
        return Examination(
            results=self._rank(analysis, k=k, allowed=allowed),
            matches=self._matches_of_streams(path, decoded),
            classification=self._classification(analysis, similar_k=0, timeline=False),
        )

    def _classification(
        self,
        analysis: Analysis,
        *,
        similar_k: int,
        timeline: bool,
        file: Path | None = None,
    ) -> Classification:
        """`file`: the file analysed, whose catalog tracks (the same bytes) are not similar."""
        labels = self.embedder.labels
        probabilities = {
            g: round(float(p), 4) for g, p in zip(labels, analysis.probabilities, strict=True)
        }
        genre = max(probabilities, key=probabilities.get)
        try:
            index = self.index() if similar_k > 0 else None  # genres alone never need the index
        except IndexMismatchError as exc:
            raise IndexMismatchError(
                f"{exc} (the genre and tags alone need no index: ask for 0 similar tracks)"
            ) from exc
        similar = []
        if index is not None and index.n_tracks:
            from mirsearch.analysis import file_sha256  # here: `match` starts without it

            itself = self.catalog.holding(file_sha256(file)) if file else set()
            k = min(similar_k + len(itself), index.n_tracks)
            ranked_tracks = self._rank(analysis, k=k, allowed=None)
            similar = [r for r in ranked_tracks if r.track_id not in itself][:similar_k]
        windows = []
        if timeline:
            heard = analysis.sounding
            for offset, row in zip(
                analysis.offsets_s[heard], analysis.window_probabilities[heard], strict=True
            ):
                best = int(row.argmax())
                windows.append(
                    {
                        "offset_s": round(float(offset), 2),
                        "genre": labels[best],
                        "probability": round(float(row[best]), 4),
                    }
                )
        tags = top_tags(analysis.tag_probabilities, self.embedder.tag_labels)
        return Classification(genre, probabilities, tags, similar, windows)

    def match_candidates(
        self, samples: np.ndarray, *, every_hypothesis: bool = False
    ) -> list[Match]:
        """The catalog tracks the signal's windows align with best, verified and scored (not
        thresholded): uploads.UploadCheck.candidates."""
        index = self._require_index()  # an empty catalog is told before the model loads
        check = UploadCheck(self.reader, index, self.catalog, self.settings, self.match_threshold)
        return check.candidates(samples, every_hypothesis=every_hypothesis)

    def match(self, path: Path) -> list[MatchResult]:
        """The catalog tracks that the upload at `path` contains (near-duplicates), best first.
        A clip too short to hold DuplicateConfig.min_windows query windows is refused: it had
        been answered "no duplicate" whatever it held."""
        return self._matches_of_streams(
            path,
            self._decoded_query(
                path, min_duration_s=match_min_s(self.settings.embedding, self.settings.duplicates)
            ),
        )

    def _matches_of_streams(self, path: Path, decoded: audio.Decoded) -> list[MatchResult]:
        """The matches of the audio stream `decoded` read and, in a file of several (a video's
        dubs, a commentary), those only its others give, up to audio.MAX_STREAMS: music behind a
        sounding first stream had gone unchecked, a way round a copyright check."""
        found = {m.track_id: m for m in self._matches(decoded.samples)}
        for stream in range(min(decoded.info.streams, audio.MAX_STREAMS)):
            if stream == decoded.info.stream:
                continue
            try:
                other = self._decoded_query(path, stream=stream)
            except AudioError as exc:  # silent, too short, undecodable: nothing in it to match
                log.info("%s: audio stream %d not matched: %s", path, stream + 1, exc)
                continue
            for m in self._matches(other.samples):
                found.setdefault(m.track_id, m)
        return list(found.values())

    def _matches(self, samples: np.ndarray) -> list[MatchResult]:
        threshold = self.match_threshold
        matches = ranked([m for m in self.match_candidates(samples) if m.score >= threshold])
        rows = self.catalog.get_many([m.track_id for m in matches])
        return [MatchResult.of(m, rows[m.track_id]) for m in matches if m.track_id in rows]

    def dupes(self) -> list[dict]:
        """Every near-duplicate group in the catalog, with its evidence: read from the flags
        indexing stored (groups.find_groups), nothing searched again."""
        return self.dupes_page()[0]

    def dupes_page(self, *, page: int = 1, per_page: int | None = None) -> tuple[list[dict], int]:
        """The near-duplicate groups on `page` of `per_page` (None: all of them), and how many
        there are: the rows of the tracks of that page's groups alone are read (621 groups of
        2,583 tracks had been 456 KB a request)."""
        flagged = self.catalog.flagged()  # its matches name indexed tracks only
        named = {t for t, _ in flagged} | {m["track_id"] for _, matches in flagged for m in matches}
        groups = find_groups(flagged, named)
        if per_page is not None:
            groups_on_page = groups[(page - 1) * per_page : page * per_page]
        else:
            groups_on_page = groups
        rows = self.catalog.get_many({t for g in groups_on_page for t in g.track_ids})
        return [group_report(g, rows) for g in groups_on_page], len(groups)

    # -- catalog --------------------------------------------------------------------------------

    def track(self, track_id: int) -> Track:
        if not _is_whole(track_id):
            raise InvalidParameterError(f"a track id is a whole number, got {track_id!r}")
        row = self.catalog.get(track_id) if 0 <= track_id <= MAX_TRACK_ID else None
        if row is None:
            raise NotFoundError(f"no track with id {track_id}")
        return row

    # -- helpers ----------------------------------------------------------------------------------

    def _check_k(self, k: int | None) -> int:
        k = self.settings.search.k if k is None else k
        return _whole("k", k, 1, self.settings.search.max_k)

    def allowed_tracks(self, genres: Sequence[str]) -> set[int] | None:
        """Ids of the tracks of `genres` (None: no filter; a blank one is none, as a form's empty
        choice, on the CLI too); InvalidParameterError if unknown."""
        if isinstance(genres, str):  # one genre, not its letters
            genres = [genres]
        genres = [g for g in genres or () if g.strip()]
        if not genres:
            return None
        # each genre's tracks: none, an unknown genre; the catalog's genre counts, read only to
        # name the known ones then (they had been counted for every query)
        found = {g: self.catalog.track_ids_for_genres([g]) for g in dict.fromkeys(genres)}
        unknown = [g for g, tracks in found.items() if not tracks]
        if unknown:
            known = [name for name, _ in self.catalog.genres()]
            listed = ", ".join(sorted(known[:GENRES_NAMED])) or "none"
            if len(known) > GENRES_NAMED:  # hundreds of tag genres had made a wall of text
                listed += f" and {len(known) - GENRES_NAMED:,} more (`mirsearch genres`)"
            raise InvalidParameterError(
                f"unknown genre {', '.join(map(repr, unknown))}; the catalog has: {listed}"
            )
        return set().union(*found.values())

    def _results(self, hits: list[Hit]) -> list[Result]:
        rows = self.catalog.get_many([h.track_id for h in hits])
        return [Result.of(h, rows[h.track_id]) for h in hits if h.track_id in rows]


def _is_whole(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _whole(name: str, value, low: int, high: int) -> int:
    """`value` if it is a whole number from `low` to `high`; else InvalidParameterError."""
    if not _is_whole(value) or not low <= value <= high:
        raise InvalidParameterError(f"{name} must be between {low} and {high}, got {value!r}")
    return int(value)


def match_min_s(embedding: EmbeddingConfig, duplicates: DuplicateConfig) -> float:
    """The shortest clip a duplicate check can confirm anything in: min_windows windows at the
    query hop (4 s by default)."""
    return embedding.window_s + (duplicates.min_windows - 1) * embedding.query_hop_s
