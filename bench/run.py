"""`make bench`: every benchmark in one run → bench/results.json and the README's table.

Runs the throughput, search and retrieval benchmarks now, and folds in the latest figures of the
longer evaluations (`make eval-dupes` → bench/dupes.json, `make eval` → bench/genre_eval.json and
bench/heldout/genre_eval.json). Each benchmark says on stderr when it starts and ends, and its
figures are kept in bench/results.partial.json as it ends: one that fails does not stop the
others, and `--resume` (`make bench BENCH_ARGS=--resume`) runs only what an interrupted or failed
run left to do (the run takes ~48 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mirsearch.config import IndexConfig
from mirsearch.index_kinds import window_kind

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import background  # noqa: E402
import eval_retrieval  # noqa: E402
import filters  # noqa: E402
import latency  # noqa: E402
import long_files  # noqa: E402
import olaf  # noqa: E402
import profile_index  # noqa: E402
import scale  # noqa: E402
import scale_recall  # noqa: E402
import search as search_bench  # noqa: E402
import speed_range  # noqa: E402
import throughput  # noqa: E402

README = HERE.parent / "README.md"
# the benchmarks of a run so far, each written as it ends (`--resume` goes on from them)
PARTIAL = HERE / "results.partial.json"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _load(name: str) -> dict | None:
    path = HERE / name
    return json.loads(path.read_text()) if path.is_file() else None


def _evaluations() -> dict:
    """The latest figures of the longer evaluations (None where one has not been run)."""
    return {
        "dupes": _load("dupes.json"),
        "genre": _load("genre_eval.json"),
        "genre_heldout": _load("heldout/genre_eval.json"),
        "tags": _load("tags.json"),
    }


def table(results: dict) -> str:
    t, s, r = results["throughput"], results["search"], results["retrieval"]
    win, trk = s["windows"], s["tracks"]
    rows = [
        ("Decode (PyAV → mono 16 kHz)", f"{t['decode']['decode_x_realtime']}× real time"),
        ("Decode + descriptors + log-mel", f"{t['decode']['decode_features_x_realtime']}×"),
        (
            "Decode + embed, shipped student, both branches (2 one-thread workers)",
            f"{t['embed']['decode_embed_student_x_realtime']}×",
        ),
        (
            "Decode + embed, its matching branch alone: the network shipped before (same run)",
            f"{t['embed']['decode_embed_matching_branch_x_realtime']}×",
        ),
        (
            "Decode + embed, VGG-style reference (same run)",
            f"{t['embed']['decode_embed_vgg_reference_x_realtime']}×",
        ),
        (
            f"`mirsearch index` on ../shared/audio ({t['index']['tracks']} tracks, default: "
            f"{t['index']['workers']} workers)",
            f"{t['index']['first_run_s']} s ({t['index']['index_x_realtime']}×); "
            f"unchanged re-run {t['index']['second_run_s']} s",
        ),
    ]
    versus = t["index"].get("against_matching_branch")
    if versus:
        rows.append(
            (
                "`mirsearch index`, fresh catalog, shipped student / its matching branch alone "
                "(same run, best of two each)",
                f"{versus['student_s']} s / {versus['matching_branch_s']} s: the student at "
                f"{versus['student_speed_share']:.0%} of the speed",
            )
        )
    size = t["index"].get("footprint")
    if size:
        rows.append(
            (
                "Stored per hour of catalog audio: rows + prints + window vectors "
                f"({size['window_index_kind']}) = total",
                f"{size['rows_mb_per_hour']:.2f} + {size['prints_mb_per_hour']:.2f} + "
                f"{size['vectors_mb_per_hour']:.2f} = **{size['total_mb_per_hour']:.2f} MB**",
            )
        )
    p5 = r["precision_at_5_same_package"]
    rows += [
        (
            "10 s clip → source track at rank 1 (plain / MP3 64k)",
            f"{r['clip_rank1_10s']['none']:.1%} / {r['clip_rank1_10s']['mp3_64k']:.1%} "
            f"of {r['clip_rank1_10s']['clips']}",
        ),
        (
            "Precision@5 same package: embeddings / MFCC baseline (packages unseen in training)",
            f"{p5['embeddings']:.3f} / {p5['mfcc_baseline']:.3f} "
            f"({p5['unseen']['embeddings']:.3f} / {p5['unseen']['mfcc_baseline']:.3f}, "
            f"{p5['unseen']['tracks']} of {p5['tracks']} tracks)",
        ),
    ]
    lat = results.get("latency")
    if lat:
        for name in ("search", "match"):
            rows.append(
                (
                    f"`{name}` of a 10 s clip file, shared catalog ({lat['tracks']} tracks), "
                    "end to end, p50 / p95",
                    f"{lat[name]['p50_ms']:.0f} / {lat[name]['p95_ms']:.0f} ms",
                )
            )
        per_length = lat.get("match_per_clip_length")
        if per_length:
            rows.append(
                (
                    "`match` per clip, model and index loaded once, shared catalog: "
                    + " · ".join(per_length)
                    + " clips, p50 / p95",
                    " · ".join(
                        f"{v['p50_ms']:.0f} / {v['p95_ms']:.0f} ms" for v in per_length.values()
                    ),
                )
            )
        rows += scale_rows(results)
        rows += scale_recall_rows(results)
        rows += filter_rows(results)
        server = lat["server"]
        workers = server["server_processes"] - 1  # gunicorn's master and its workers
        rows.append(
            (
                f"`mirsearch serve` ({workers} worker process{'es' if workers > 1 else ''}) "
                f"under {server['clients']} concurrent clients on the same machine "
                f"({server['requests']} requests): requests a second; search / match / track "
                "p50 / p95",
                f"{server['requests_per_s']:.1f}/s; "
                + " · ".join(
                    f"{server[e]['p50_ms']:.0f} / {server[e]['p95_ms']:.0f} ms"
                    for e in ("search", "match", "track")
                )
                + f"; {server['server_errors']} 5xx, peak RSS "
                f"{server['server_worker_peak_rss_mb']} MB a worker "
                f"({server['server_peak_rss_mb']} MB all processes, shared pages in each)",
            )
        )
    for key, label in (("flat", "exact"), ("sq8", "exact, 8-bit"), ("hnsw", "HNSW")):
        if key in win:
            w = win[key]
            rows.append(
                (
                    f"Search, 10,000 tracks ({label}), p50 / p95",
                    f"{w['p50_ms']:.1f} / {w['p95_ms']:.1f} ms",
                )
            )
            if "match" in w:
                rows.append(
                    (
                        f"Match, 10,000 tracks ({label}), windows and prints, every pitch "
                        "hypothesis, p50 / p95",
                        f"{w['match']['p50_ms']:.1f} / {w['match']['p95_ms']:.1f} ms",
                    )
                )
    for key, label in (("flat", "flat"), ("hnsw", "HNSW"), ("ivfpq", "IVF-PQ")):
        if key in trk:
            x = trk[key]
            rows.append(
                (
                    f"Track search, 1,000,000 tracks ({label}): p50 / p95, bytes/track, recall@10",
                    f"{x['p50_ms']:.2f} / {x['p95_ms']:.2f} ms, {x['bytes_per_track']} B, "
                    f"{x.get('recall_at_10', 1.0):.3f}",
                )
            )
    rows += olaf_rows(results)
    profile = results.get("profile")
    if profile:
        shares = sorted(profile["stages"].items(), key=lambda kv: -kv[1]["share"])
        rows.append(
            (
                "Where `mirsearch index` spends its CPU (one process, one thread, "
                "bench/profile_index.py)",
                f"{profile['x_realtime_per_cpu_second']}× real time per CPU second: "
                + ", ".join(
                    f"{name} {v['share']:.0%}" for name, v in shares if v["share"] >= 0.005
                ),
            )
        )
    dupes = results.get("dupes")
    if dupes:
        a = dupes["all"]
        rows.append(
            (
                "Near-duplicates (`make eval-dupes`): recall all / false positives",
                f"{a['recall_all']:.1%} / {a['false_positive_rate']:.2%} of "
                f"{a['negative_queries']} negative queries",
            )
        )
    rows += background_rows(results)
    rows += speed_range_rows(results)
    rows += long_file_rows(results)
    genre = results.get("genre")
    if genre and "cv" in genre:
        cv = genre["cv"]
        rows.append(
            (
                f"Genre ../shared/genres, {len(genre['folds'])}-fold grouped CV accuracy: "
                + " / ".join(cv),
                " / ".join(
                    f"{v['accuracy']['mean']:.3f} ± {v['accuracy']['std']:.3f}" for v in cv.values()
                ),
            )
        )
    heldout = (results.get("genre_heldout") or {}).get("heldout")
    if heldout:
        methods = [m for m in heldout if m not in ("column", "value")]
        rows.append(
            (
                "Genre, held-out soundfont (TimGM6mb): " + " / ".join(methods),
                " / ".join(f"{heldout[m]['accuracy']:.3f}" for m in methods),
            )
        )
    tags = results.get("tags")
    if tags:
        versus = tags["student_vs_teacher"]
        rows.append(
            (
                "Student vs teachers on unseen packages: tag macro ROC-AUC / same top genre",
                f"{versus['macro_roc_auc']:.3f} / {versus['same_top_genre']:.0%} "
                f"({versus['windows']} windows, {versus['tracks']} tracks)",
            )
        )
    reruns = "".join(  # parts rerun since, on their own or by `--resume` with the rest kept
        f" `bench/{name}.py` rerun on {when}." for name, when in results.get("reruns", {}).items()
    )
    head = (
        f"Measured by `make bench` on {results['date']}, {results['machine']}.{reruns}\n\n"
        "| measure | result |\n|---|---|\n"
    )
    return head + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"


def background_rows(results: dict) -> list[tuple[str, str]]:
    """Catalog music under other sound (bench/background.py), per level, Olaf's beside where it
    ran on the same mixes."""
    bed = results.get("background")
    if not bed:
        return []
    levels = " · ".join(f"{db} dB" for db in bed["under_other_music"])
    side = bed.get("olaf") or {}  # Olaf's figures, where it was built, of the cases it answered
    olaf = "; Olaf on the same mixes: "

    def rates(source: dict, case: str, key: str) -> str:
        return " · ".join(f"{v[key]:.0%} / {v['wrong']:.0%}" for v in source[case].values())

    rows = []
    for case, title, key in (
        (
            "under_other_music",
            f"Catalog music under another recording ({bed['trials']} seeded {bed['clip_s']:g} s "
            f"mixes per level, {levels}): `match` lists it / lists a wrong track "
            "(bench/background.py)",
            "bed_found",
        ),
        (
            "two_catalog_tracks",
            f"Two catalog tracks in one upload, the second at {levels}: both listed / a wrong "
            "track listed",
            "both_listed",
        ),
        (
            "under_talk",
            f"Catalog music under talk (a voice-over read by espeak-ng), {levels}: listed / a "
            "wrong track listed",
            "bed_found",
        ),
        (
            "under_part",
            f"A catalog track under part of another: {background.PART_S:g} s of it under the "
            f"start, middle or end of {background.WHOLE_S:g} s of the other, at {levels}: both "
            "listed / a wrong track listed",
            "both_listed",
        ),
    ):
        if case not in bed or "note" in bed[case]:  # measured since, or not measurable there
            rows.append((title, bed.get(case, {}).get("note", "not measured in this run")))
            continue
        figures = rates(bed, case, key)
        rows.append((title, figures + (olaf + rates(side, case, key) if case in side else "")))
    return rows


def speed_range_rows(results: dict) -> list[tuple[str, str]]:
    """Copies at another speed, tempo or key (bench/speed_range.py): found per value, Olaf's
    beside where it ran on the same uploads, and what the far readings cost an upload of other
    music."""
    fast = results.get("speed_range")
    if not fast:
        return []
    side = fast.get("olaf") or {}

    def rates(found: dict) -> str:
        return " · ".join(f"{speed} {share:.0%}" for speed, share in found.items())

    def found(key: str) -> str:
        ours = rates({k: v["found"] for k, v in fast[key].items()})
        return ours + (
            "; Olaf on the same uploads: " + rates(side[key]) if side.get("built") else ""
        )

    clips = f"{fast['trials']} seeded {fast['clip_s']:g} s clips a"
    other = fast["other_music"]
    return [
        (
            f"Copies resampled to another speed (tempo and pitch together; {clips} speed): "
            "`match` lists the source first, at its speed within 0.01 (bench/speed_range.py)",
            found("found"),
        ),
        (
            f"Copies stretched in time at their own pitch (phase vocoder; {clips} tempo): "
            "listed first, at their speed within 0.01",
            found("found_tempo"),
        ),
        (
            f"Copies moved in key at their own tempo (semitones; {clips} key): listed first, "
            "at speed 1.0 within 0.01",
            found("found_key"),
        ),
        (
            f"The far readings' cost ({len(fast['key_readings_st'])} in key, "
            f"{len(fast['speed_readings'])} at speeds; {other['uploads']} uploads of other music, "
            "taking turns): match p50 with / without (MIRSEARCH_SPEED_READINGS=0); any track "
            "listed for them with / without",
            f"{other['ms_p50_with']} / {other['ms_p50_without']} ms ({other['cost_ratio']}× the "
            f"time); {other['false_alarms_with']:.0%} / {other['false_alarms_without']:.0%}",
        ),
    ]


def long_file_rows(results: dict) -> list[tuple[str, str]]:
    """Index and match 10, 30 and 60 minutes of audio, a process each (bench/long_files.py)."""
    long = results.get("long_files")
    if not long:
        return []
    lengths = [f"{m}min" for m in long["lengths_min"]]
    floor = long["floor_match_10s_clip"]["peak_rss_mb"]
    where = f"{' / '.join(f'{m}' for m in long['lengths_min'])} min of catalog tracks"
    return [
        (
            f"`mirsearch index` of one file of {where} (one worker): wall, peak RSS "
            "(bench/long_files.py)",
            " · ".join(
                f"{long[k]['index']['wall_s']:.1f} s, {long[k]['index']['peak_rss_mb']} MB"
                for k in lengths
            ),
        ),
        (
            f"`mirsearch match` of an upload of {where}: wall, peak RSS, catalog tracks in it "
            f"listed (a 10 s clip: {floor} MB, the floor of the process, model and index)",
            " · ".join(_long_match(long[k]["match"]) for k in lengths),
        ),
    ]


def _long_match(match: dict) -> str:
    """One length's `match` figures: what it listed, or that it was refused (over the query
    length limit, from the file's header)."""
    cost = f"{match['wall_s']:.1f} s, {match['peak_rss_mb']} MB, "
    if "refused" in match:
        return cost + "refused: longer than a query may be (30 min)"
    extra = f" (+{match['listed_not_in_it']} not in it)" if match["listed_not_in_it"] else ""
    return cost + f"{match['listed_of_them']} of {match['tracks_in_it']}{extra}"


def scale_rows(results: dict) -> list[tuple[str, str]]:
    """`match` per clip length at the shared catalog and padded to larger catalogs (one run)."""
    at_scale = results.get("scale")
    rows = []
    for point in (at_scale or {}).get("points", []):
        lengths = point["match"]
        where = "shared catalog"
        if "build_s" in point:
            where = (
                f"padded to {point['tracks']:,} tracks (synthetic, built in {point['build_s']} s)"
            )
        timings = " · ".join(f"{v['p50_ms']:.0f} / {v['p95_ms']:.0f} ms" for v in lengths.values())
        found = " · ".join(f"{v['source_first']:.0%}" for v in lengths.values())
        mapped, whole = point["index_load"]["mapped"], point["index_load"]["in_memory"]
        rows.append(
            (
                f"`match` per clip, model and index loaded once, {where}, "
                f"{point['windows']:,} windows ({point['window_index_kind']}): "
                f"{' · '.join(lengths)} clips ({point['clips_per_length']} each) p50 / p95; "
                "source track first; window index + catalog database; a fresh process opening "
                "the index mapped (as queries do) / read whole: seconds, private memory after a "
                "search (bench/scale.py, one run)",
                f"{timings}; {found}; "
                f"{_mb(point['window_index_bytes'])} + {_mb(point['catalog_db_bytes'])}; "
                f"{mapped['load_s']:.2f} s, {mapped['private_mb']:,.0f} MB / "
                f"{whole['load_s']:.2f} s, {whole['private_mb']:,.0f} MB",
            )
        )
        searched = point.get("genre_search")
        if searched and "genres" in searched:
            per_genre = " · ".join(
                f"{g['genre']} ({g['genre_tracks']:,} tracks, {g['window_share']:.1%} of the "
                f"windows): {g['applied_to_hits']['p50_ms']:,.0f} / "
                f"{g['inside_faiss']['p50_ms']:,.0f} ms, {g['same_results']:.0%} of the "
                "results shared"
                for g in searched["genres"]
            )
            rows.append(
                (
                    f"`search` of a 10 s clip filtered to a genre, {where}: the most common genre "
                    "and the rarest past exact search, the filter applied to a wider search's "
                    "hits (default) / inside FAISS with the genre's window ids listed, p50; "
                    "unfiltered p50 (bench/scale.py, one run)",
                    f"{per_genre}; unfiltered {searched['unfiltered']['p50_ms']:,.0f} ms",
                )
            )
    return rows


def filter_rows(results: dict) -> list[tuple[str, str]]:
    """Genre and text questions at padded catalog sizes, by index and by the row scan, on SQLite
    and on PostgreSQL (bench/filters.py)."""
    filters = results.get("catalog_filters") or {}
    rows = []
    for backend, points in (
        ("SQLite", filters.get("points", [])),
        ("PostgreSQL", (filters.get("postgresql") or {}).get("points", [])),
    ):
        for point in points[1:]:
            rows += _filter_rows(point, backend)
    if "unavailable" in (filters.get("postgresql") or {}):
        rows.append(
            (
                "Genre and text questions on PostgreSQL (bench/filters.py)",
                f"not measured: {filters['postgresql']['unavailable']}",
            )
        )
    return rows


TEXTS_ASKED = {  # bench/filters.py's texts, as the text row names them
    "text_of_a_title": "the words of a title ({q!r}, {n:,} tracks)",
    "text_of_one_path": "a file name ({q!r}, {n:,})",
    "text_of_short_words": "words of under 3 characters ({q!r}, {n:,}: every row read)",
}


def _filter_rows(point: dict, backend: str) -> list[tuple[str, str]]:
    """The genre row and the text row of one catalog size."""

    def ms(figure: dict) -> str:
        return f"{figure['p50_ms']:.1f}" if figure["p50_ms"] < 10 else f"{figure['p50_ms']:.0f}"

    indexed, scanned = point["indexed"], point["scanned"]
    (common, n_common), (rare, n_rare) = point["common_genre"], point["rare_genre"]
    texts = point["texts"]
    asked_texts = [name for name in TEXTS_ASKED if name in texts]  # runs before 2026-12-05: two
    what = " · ".join(
        TEXTS_ASKED[name].format(q=texts[name][0], n=texts[name][1]) for name in asked_texts
    )
    asked = ("tracks_of_common_genre", "tracks_of_rare_genre", "genre_list")
    where = f"catalog padded to {point['tracks']:,} tracks ({backend})"
    return [
        (
            f"Genre filter, {where}: the ids of a common genre ({common}, {n_common:,} tracks) · "
            f"a rare one ({rare}, {n_rare:,}) · the genre list, p50, looked up in track_genres "
            "(the list: genre_counts) / by the row scan before them (same run; bench/filters.py)",
            " · ".join(f"{ms(indexed[q])} / {ms(scanned[q])} ms" for q in asked)
            + f"; a page of the common genre {ms(indexed['first_page_of_genre'])} ms",
        ),
        (
            f"Text search (`--q`), {where}: a page and the count of the tracks holding {what}, "
            "p50, from the text index / by the row scan before it (same run; bench/filters.py); "
            "the index's size",
            " · ".join(f"{ms(indexed[q])} / {ms(scanned[q])} ms" for q in asked_texts)
            + f"; {point['text_index_bytes'] / 1e6:.1f} MB",
        ),
    ]


def scale_recall_rows(results: dict) -> list[tuple[str, str]]:
    """Near-duplicate recall on altered clips by window index kind, padded catalog (one run)."""
    by_kind = results.get("scale_recall")
    if not by_kind:
        return []
    ref = by_kind["catalog"]
    labels = {"sq8": "sq8 (exact)", "hnsw": "HNSW", "ivfpq": "IVF-PQ"}
    kinds = [k for k in labels if k in by_kind]
    where = (
        f"{by_kind['queries']} altered 5 and 10 s clips ({', '.join(by_kind['transforms'])}) of "
        f"the {ref['tracks']} tracks of the eval-dupes catalog"
    )
    return [
        (
            f"`match` recall, {where}: as indexed ({ref['windows']:,} windows) · padded to "
            f"{by_kind['tracks']:,} tracks ({by_kind['windows']:,} windows) served as "
            + " · ".join(labels[k] for k in kinds)
            + " (bench/scale_recall.py, one run)",
            " · ".join(f"{by_kind[k]['recall']:.1%}" for k in ["catalog", *kinds]),
        ),
        (
            "`match` per 10 s clip, p50 / p95, and window index bytes, the same padded catalog: "
            + " · ".join(labels[k] for k in kinds),
            " · ".join(
                f"{by_kind[k]['ms']['10s']['p50']:.0f} / {by_kind[k]['ms']['10s']['p95']:.0f} ms, "
                f"{_mb(by_kind[k]['window_index_bytes'])}"
                + (f" (built in {by_kind[k]['build_s']:.0f} s)" if by_kind[k]["build_s"] else "")
                for k in kinds
            ),
        ),
    ]


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f} MB" if n_bytes < 1e9 else f"{n_bytes / 1e9:.2f} GB"


def olaf_rows(results: dict) -> list[tuple[str, str]]:
    """Olaf beside mirsearch (bench/olaf.py): indexing and querying, or why it did not run."""
    side = results.get("olaf")
    if not side:
        return []
    if not side["built"]:
        return [("Olaf side by side (bench/olaf.py)", side["note"])]
    index, query = side["index"], side["query"]
    decode = results["throughput"]["decode"]["decode_x_realtime"]
    rounds = f"median of {side['rounds']} interleaved rounds"
    return [
        (
            f"Olaf side by side, indexing ../shared/audio ({side['files']} files), process start "
            f"to exit: `mirsearch index` ({index['mirsearch']['workers']} workers) / `olaf store` "
            f"({index['olaf']['threads']} threads), {rounds}; decoding alone (PyAV, above)",
            f"{index['mirsearch']['x_realtime']}× / {index['olaf']['x_realtime']}× real time "
            f"(mirsearch at {index['mirsearch_over_olaf']:.2f} of Olaf's speed; the rounds: "
            f"{_listed(index['rounds_mirsearch_over_olaf'], '.2f')}); {decode}×",
        ),
    ] + [
        (
            f"Olaf side by side, {batch['clips']} seeded {query['clip_s']:g} s clips in one "
            f"batch each held to {batch['cores']} core(s), per query with the process start "
            "shared: "
            f"`mirsearch match --workers {batch['cores']}` / `olaf query --threads "
            f"{batch['cores']}`, {rounds}, and how often each names the clip's source first",
            f"{batch['mirsearch']['ms_per_query']:.0f} ms, {batch['mirsearch']['source_first']:.0%}"
            f" / {batch['olaf']['ms_per_query']:.0f} ms, {batch['olaf']['source_first']:.0%} "
            f"(mirsearch {batch['mirsearch_over_olaf']:.1f}× Olaf's time; the rounds: "
            f"{_listed(batch['rounds_mirsearch_over_olaf'], '.1f')}×)",
        )
        for batch in (query["every_core"], query["one_core"], query["long_batch"])
    ]


def _listed(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def dupes_table(dupes: dict) -> str:
    """Recall per transform and clip length at the stored threshold, misses included."""
    clips = ["5s", "10s", "20s", "whole"]
    lines = [
        f"Threshold {dupes['threshold']} (stored), {dupes['indexed_tracks']} tracks indexed, "
        f"{dupes['negative_tracks']} kept out as negatives; {dupes['all']['positive_queries']} "
        f"positive and {dupes['all']['negative_queries']} negative queries; "
        f"{dupes['date']}. Clips start at seeded random offsets; 'whole' is the whole track, "
        "or a random 120 s of a longer one.\n",
        "| transform | " + " | ".join(clips) + " |",
        "|---|" + "---|" * len(clips),
    ]
    for transform, row in dupes["all"]["recall"].items():
        lines.append(f"| {transform} | " + " | ".join(f"{row.get(c, 0):.0%}" for c in clips) + " |")
    a, u, cv = dupes["all"], dupes["unseen_by_model"], dupes["cross_validated_threshold"]
    lines += [
        "",
        f"- All positives: recall {a['recall_all']:.1%}; false positives "
        f"{a['false_positive_rate']:.2%} of negative queries; wrong-track matches "
        f"{a['wrong_track_rate']:.2%}.",
        f"- Tracks the model never heard in training ({u['positive_queries']} positive and "
        f"{u['negative_queries']} negative queries): recall {u['recall_all']:.1%}, false "
        f"positives {u['false_positive_rate']:.2%}.",
        f"- Threshold set on half the negative tracks, measured on the other half (two folds): "
        f"false positives {cv['false_positive_rate']:.2%}, recall {cv['recall_all']:.1%}.",
        f"- Query time (decode excluded) p50 {dupes['query_ms_p50']:.0f} ms, "
        f"p95 {dupes['query_ms_p95']:.0f} ms.",
    ]
    if speed := a.get("speed"):
        changed, kept = speed["changed"], speed["kept"]
        lines.append(
            f"- Speed reported within 0.01 of the truth: {changed['within_0.01']:.0%} of the "
            f"{changed['found']} found copies played ±2 or ±5 % fast or slow (median error "
            f"{changed['median_error']:.3f}), {kept['within_0.01']:.0%} of the {kept['found']} "
            "others (at 1.0)."
        )
    return "\n".join(lines) + "\n"


SIZING_TRACKS = 10_000_000
SHARD_RAM_BYTES = 64 * 2**30  # one shard per machine with this much RAM for its index


def sizing_table(results: dict) -> str:
    """10 million tracks, from measured figures: vectors per track, bytes per vector, throughput,
    and what indexing ../shared/audio stored per hour of audio."""
    t, trk = results["throughput"], results["search"]["tracks"]
    audio_s = t["decode"]["audio_hours"] * 3600
    track_s = audio_s / t["index"]["tracks"]
    windows = track_s / 1.5  # one window vector every hop (1.5 s)
    per_core = t["index"]["index_x_realtime"] / t["index"]["workers"]
    core_hours = SIZING_TRACKS * track_s / per_core / 3600
    hours = SIZING_TRACKS * track_s / 3600
    lines = [
        f"Average track {track_s:.0f} s → {windows:.0f} window vectors and 1 track vector; "
        f"indexing at {per_core:.0f}× real time per core (measured: "
        f"{t['index']['index_x_realtime']}× on {t['index']['workers']} workers) → "
        f"**{core_hours / 100:,.0f} hours on 100 cores** ({core_hours:,.0f} core-hours)."
    ]
    size = t["index"].get("footprint")
    kinds = [("flat", "flat (exact)"), ("hnsw", "HNSW"), ("ivfpq", "IVF-PQ")]
    per_vector = {kind: trk[kind]["bytes_per_track"] for kind, _ in kinds if kind in trk}
    exact_max = IndexConfig().exact_max_vectors
    if size:
        per_vector["sq8"] = size["window_vectors_bytes"] / (t["index"]["tracks"] * windows)
        kinds.insert(1, ("sq8", f"sq8 (exact, 8-bit; the default up to {exact_max:,} windows)"))
    default = window_kind(IndexConfig(), int(SIZING_TRACKS * windows))
    if size and default in per_vector:
        rows_tb = hours * size["rows_mb_per_hour"] / 1e6
        prints_tb = hours * size["prints_mb_per_hour"] / 1e6
        vectors_tb = SIZING_TRACKS * windows * per_vector[default] / 1e12
        lines[0] += (
            f" Stored as measured on ../shared/audio ({size['total_mb_per_hour']:.2f} MB per hour "
            f"of audio, {size['window_index_kind']} windows), with the window index the default "
            f"settings give 10 million tracks ({default}): **{rows_tb + prints_tb + vectors_tb:.1f}"
            f" TB in all** — {rows_tb:.2f} TB of catalog rows, {prints_tb:.2f} TB of verification "
            f"prints, {vectors_tb:.2f} TB of window vectors ({per_vector[default]:.0f} B each "
            "with its id)."
        )
    lines += [
        "",
        "| vector index | bytes / vector (measured) | track index | window index | "
        f"shards of {SHARD_RAM_BYTES // 2**30} GiB RAM |",
        "|---|---|---|---|---|",
    ]
    for kind, label in kinds:
        if kind not in per_vector:
            continue
        if kind == default and kind != "sq8":
            label += f" (the default above {exact_max:,} windows)"
        track_bytes = SIZING_TRACKS * per_vector[kind]
        window_bytes_all = SIZING_TRACKS * windows * per_vector[kind]
        shards = int(np.ceil((track_bytes + window_bytes_all) / SHARD_RAM_BYTES))
        lines.append(
            f"| {label} | {per_vector[kind]:.0f} | {track_bytes / 1e9:.1f} GB | "
            f"{window_bytes_all / 1e9:,.0f} GB | {shards} |"
        )
    return "\n".join(lines) + "\n"


def update_readme(start: str, end: str, text: str) -> None:
    readme = README.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(readme):
        README.write_text(pattern.sub(lambda _: f"{start}\n{text}{end}", readme))


def _sections(audio_dir: Path) -> dict[str, Callable[[], dict]]:
    """The benchmarks of a run, in order, by their key in results.json."""
    return {
        "throughput": lambda: throughput.run(audio_dir),
        "latency": lambda: latency.run(audio_dir),
        "scale": lambda: scale.run(audio_dir),
        "scale_recall": lambda: scale_recall.run(audio_dir),
        "catalog_filters": lambda: filters.run(audio_dir),
        "olaf": lambda: olaf.run(audio_dir),
        "search": search_bench.run,
        "retrieval": lambda: eval_retrieval.run(audio_dir),
        "profile": lambda: profile_index.profile(audio_dir),
        "background": lambda: background.run(audio_dir),
        "speed_range": lambda: speed_range.run(audio_dir),
        "long_files": lambda: long_files.run(audio_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="rewrite the README tables from the JSON already in bench/",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"keep the benchmarks an interrupted or failed run finished ({PARTIAL.name}) "
        "and run the others",
    )
    args = parser.parse_args()
    if args.tables_only:
        refresh_tables(_load("results.json"))
        return
    audio_dir = args.shared / "audio"
    if not (audio_dir / "manifest.tsv").is_file():
        sys.exit(f"{audio_dir}/manifest.tsv not found: the benchmarks run on ../shared/audio")
    results = (_load(PARTIAL.name) if args.resume else None) or {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, no GPU",
    }
    failed = []
    for name, run in _sections(audio_dir).items():
        if name in results:
            print(f"bench: {name}: kept from the run before", file=sys.stderr, flush=True)
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            results[name] = run()
        except Exception:  # one broken benchmark must not cost the others' figures
            traceback.print_exc()
            failed.append(name)
            continue
        took = time.perf_counter() - started
        print(f"bench: {name} done in {took:.0f} s", file=sys.stderr, flush=True)
        PARTIAL.write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        sys.exit(
            f"bench: {', '.join(failed)} failed (above); the others are kept in {PARTIAL}: "
            "mend it and run `make bench BENCH_ARGS=--resume`"
        )
    results |= _evaluations()
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    PARTIAL.unlink(missing_ok=True)
    refresh_tables(results)
    print(table(results))


def refresh_tables(results: dict | None) -> None:
    """Rewrite the README tables, with the latest eval-dupes and genre figures folded in."""
    if results:
        results |= _evaluations()
        update_readme(START, END, table(results))
        update_readme("<!-- sizing:start -->", "<!-- sizing:end -->", sizing_table(results))
    dupes = _load("dupes.json")
    if dupes:
        update_readme("<!-- dupes:start -->", "<!-- dupes:end -->", dupes_table(dupes))


if __name__ == "__main__":
    main()
