"""The near-duplicate flags read (flags.py, through the Catalog): the other versions of tracks,
and the copies whose stored matches still hold.

Every test taking `catalog` runs twice: on SQLite and on a fresh PostgreSQL database.
"""

from __future__ import annotations

from conftest import add_tracks


def test_versions_are_the_tracks_flagged_near_duplicates_either_way(catalog):
    ids = add_tracks(catalog, original={}, other={})
    copies = add_tracks(
        catalog,
        fast={"duplicate_of": ids["original"]},
        slow={"duplicate_of": ids["original"]},
        failed={"duplicate_of": ids["original"], "status": "failed"},
    )
    later = add_tracks(catalog, copy_of_fast={"duplicate_of": copies["fast"]})
    assert catalog.versions([ids["original"]]) == {copies["fast"], copies["slow"]}
    assert catalog.versions([copies["fast"]]) == {ids["original"], later["copy_of_fast"]}
    assert catalog.versions([ids["original"], copies["fast"]]) == {
        copies["slow"],
        later["copy_of_fast"],
    }
    assert catalog.versions([ids["other"]]) == catalog.versions([]) == set()


def test_flagged_are_the_indexed_copies_whose_matches_still_hold(catalog):
    """A copy waiting to be analysed again (a new index marks every track pending) keeps its
    duplicate_of and evidence in its row, but is not in the index: it is not listed, as `stats`
    does not count it; nor is a copy whose match's track now holds other content."""
    ids = add_tracks(catalog, original={"sha256": "aa"}, changed={"sha256": "cc"})

    def match(track: str, sha256: str) -> dict:
        return {"track_id": ids[track], "track_sha256": sha256, "score": 1.0}

    copies = add_tracks(
        catalog,
        copy={"duplicate_of": ids["original"], "duplicate_evidence": [match("original", "aa")]},
        waiting={
            "duplicate_of": ids["original"],
            "duplicate_evidence": [match("original", "aa")],
            "status": "pending",
        },
        stale={"duplicate_of": ids["changed"], "duplicate_evidence": [match("changed", "bb")]},
    )
    assert catalog.flagged() == [(copies["copy"], [match("original", "aa")])]
