"""bench/run.py, the `make bench` driver: a benchmark that fails costs no other's figures, and a
resumed run does only what is left."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """bench/run.py with its files in tmp_path, the README left alone, a manifest to find."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    monkeypatch.setattr(module, "PARTIAL", tmp_path / "results.partial.json")
    monkeypatch.setattr(module, "refresh_tables", lambda results: None)
    monkeypatch.setattr(module, "table", lambda results: "")
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "manifest.tsv").write_text("")
    return module


def test_a_failed_benchmark_keeps_the_others_and_a_resumed_run_does_only_the_rest(
    bench, tmp_path, monkeypatch
):
    calls = []

    def section(name, *, fails=False):
        def run():
            calls.append(name)
            if fails:
                raise RuntimeError(f"{name} broke")
            return {"figure": name}

        return run

    broken = {"a": section("a"), "b": section("b", fails=True), "c": section("c")}
    monkeypatch.setattr(bench, "_sections", lambda audio_dir: broken)
    monkeypatch.setattr(sys, "argv", ["run.py", "--shared", str(tmp_path)])
    with pytest.raises(SystemExit, match="b failed .*BENCH_ARGS=--resume"):
        bench.main()
    assert calls == ["a", "b", "c"]  # c ran although b failed
    kept = json.loads((tmp_path / "results.partial.json").read_text())
    assert kept["a"] == {"figure": "a"} and kept["c"] == {"figure": "c"} and "b" not in kept
    assert not (tmp_path / "results.json").exists()  # no table from a run with a hole in it

    calls.clear()
    mended = {"a": section("a"), "b": section("b"), "c": section("c")}
    monkeypatch.setattr(bench, "_sections", lambda audio_dir: mended)
    monkeypatch.setattr(sys, "argv", ["run.py", "--shared", str(tmp_path), "--resume"])
    bench.main()
    assert calls == ["b"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [results[k]["figure"] for k in "abc"] == ["a", "b", "c"]
    assert results["date"] == kept["date"]
    assert not (tmp_path / "results.partial.json").exists()


def test_without_resume_a_run_starts_afresh(bench, tmp_path, monkeypatch):
    (tmp_path / "results.partial.json").write_text(json.dumps({"a": {"figure": "old"}}))
    monkeypatch.setattr(bench, "_sections", lambda audio_dir: {"a": lambda: {"figure": "new"}})
    monkeypatch.setattr(sys, "argv", ["run.py", "--shared", str(tmp_path)])
    bench.main()
    assert json.loads((tmp_path / "results.json").read_text())["a"] == {"figure": "new"}


def test_olafs_answers_are_read_per_query_whatever_order_its_threads_print_them(monkeypatch):
    """bench/olaf.py reads which reference files Olaf names for each query (every one, for
    bench/background.py; the one with the most matching landmarks, for the speed rounds)."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    import olaf

    header = (
        "query_index, total_queries, query_path, query_offset, match_count, query_start, "
        "query_stop, path, match_identifier, reference_start, reference_stop"
    )
    printed = "\n".join(
        [
            header,
            "2, 3, /q/b.wav, 0, 12, 1.0, 9.0, /music/y.ogg, 4, 1.2, 9.1",
            "1, 3, /q/a.wav, 0, 30, 0.5, 9.5, /music/x.ogg, 7, 0.4, 9.6",
            "2, 3, /q/b.wav, 0, 40, 0.0, 9.9, /music/z.ogg, 1, 0.1, 9.8",
            "1, 3, /q/a.wav, 0, 9, 2.0, 5.0, /mus" + header,  # a row cut by another's header
            "3, 3, /q/c.wav, 0, 0, 0, 0, , 0, 0, 0",  # no match
        ]
    )
    assert olaf.olaf_listed_paths(printed, 3) == [
        {"/music/x.ogg"},
        {"/music/y.ogg", "/music/z.ogg"},
        set(),
    ]
    assert olaf.olaf_top_paths(printed, 3) == ["/music/x.ogg", "/music/z.ogg", None]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_a_one_core_batch_and_what_it_starts_run_on_one_cpu(monkeypatch):
    """bench/olaf.py's one-core queries hold each command, and the processes it starts (a pool's
    workers, Olaf's ffmpeg), to one CPU; unpinned, they may use every one."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    import olaf

    child = "import os, subprocess, sys; print(len(os.sched_getaffinity(0)))"
    grandchild = [sys.executable, "-c", child]
    command = [sys.executable, "-c", f"{child}; subprocess.run({grandchild!r})"]
    _, pinned = olaf._timed(command, dict(os.environ), cores=1)
    assert pinned.split() == ["1", "1"]
    _, free = olaf._timed(command, dict(os.environ))
    assert free.split() == [str(len(os.sched_getaffinity(0)))] * 2


def test_eval_dupes_counts_as_heard_the_files_the_shipped_model_trained_on(monkeypatch):
    """Its "unseen by the model" table had read a key the shipped card lacks: every query counted
    as unseen, and the README quoted the whole table as music the model never heard."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    import eval_dupes

    from mirsearch.model_card import read_card

    heard = eval_dupes.heard(read_card(None).metadata)
    assert "wesnoth__battle-epic.ogg" in heard and "hedgewars__rock.ogg" not in heard
    assert len(heard) > 400  # the fetched training music besides
    assert eval_dupes.heard({"contrastive_files": ["a.ogg"]}) == {"a.ogg"}


def test_descriptors_judge_a_key_by_its_notes_and_a_tempo_by_its_octaves(monkeypatch):
    """bench/descriptors.py, whose figures docs/tempo-and-key.md quotes: the manifest's flats are
    the sharps `estimate_key` names, a relative key holds the same notes, a tempo half or double
    counts as an octave only."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    import descriptors

    assert descriptors.relative("C major") == "A minor"
    assert descriptors.relative("F# minor") == "A major"
    row = {"tempo_bpm": "100", "key": "Bb minor"}
    assert descriptors.judged(row, 99.0, "A# minor") == {
        "tempo": True,
        "tempo_or_octave": True,
        "key": True,
        "key_or_relative": True,
        "tonic": True,
    }
    doubled = descriptors.judged(row, 201.0, "C# major")
    assert not doubled["tempo"] and doubled["tempo_or_octave"]
    assert not doubled["key"] and doubled["key_or_relative"] and not doubled["tonic"]
    other_mode = descriptors.judged(row, 150.0, "A# major")
    assert other_mode["tonic"] and not (other_mode["key"] or other_mode["key_or_relative"])
    wrong = descriptors.judged(row, 150.0, "E major")
    assert not (wrong["tempo_or_octave"] or wrong["key_or_relative"] or wrong["tonic"])


def test_the_long_files_row_says_a_match_over_the_query_limit_was_refused(bench):
    """An hour's upload is refused from its header (SearchConfig.max_query_s): the benchmark had
    failed on it, and the README row quoted an hour's match from before the limit."""
    listed = {"wall_s": 3.3, "peak_rss_mb": 508, "tracks_in_it": 11, "listed_of_them": 11}
    refused = {"wall_s": 0.46, "peak_rss_mb": 92, "refused": "60.0 min long, longer than ..."}
    index = {"wall_s": 3.8, "peak_rss_mb": 1049}
    long = {
        "floor_match_10s_clip": {"wall_s": 0.6, "peak_rss_mb": 121},
        "lengths_min": [30, 60],
        "30min": {"index": index, "match": listed | {"listed_not_in_it": 1}},
        "60min": {"index": index, "match": refused},
    }
    (_, indexing), (_, matching) = bench.long_file_rows({"long_files": long})
    assert indexing == "3.8 s, 1049 MB · 3.8 s, 1049 MB"
    assert matching == (
        "3.3 s, 508 MB, 11 of 11 (+1 not in it) · "
        "0.5 s, 92 MB, refused: longer than a query may be (30 min)"
    )


def test_the_speed_range_rows_give_each_changes_share_olafs_beside_and_the_cost(bench):
    found = {"0.8": {"found": 1.0, "median_speed_error": 0.001}, "1.25": {"found": 0.9375}}
    tempos = {"1.2": {"found": 0.75, "median_speed_error": 0.002}}
    keys = {"-3": {"found": 0.5, "median_speed_error": 0.0}}
    other = {
        "uploads": 24,
        "ms_p50_with": 131.0,
        "ms_p50_without": 56.5,
        "cost_ratio": 2.31,
        "false_alarms_with": 0.0,
        "false_alarms_without": 0.0,
    }
    fast = {"clip_s": 10.0, "trials": 16, "speed_readings": [0.73, 0.84, 1.19, 1.36]}
    fast |= {"key_readings_st": [-3.0, 3.0]}
    fast |= {"found": found, "found_tempo": tempos, "found_key": keys, "other_music": other}
    olaf = {
        "built": True,
        "found": {"0.8": 0.0, "1.25": 0.0625},
        "found_tempo": {"1.2": 0.125},
        "found_key": {"-3": 0.0},
    }
    rows = bench.speed_range_rows({"speed_range": fast | {"olaf": olaf}})
    [(title, shares), (tempo_title, tempo), (key_title, key), (cost_title, cost)] = rows
    assert "(2 in key, 4 at speeds; 24 uploads" in cost_title
    assert "16 seeded 10 s clips a speed" in title and "a tempo" in tempo_title
    assert "a key" in key_title
    assert shares == "0.8 100% · 1.25 94%; Olaf on the same uploads: 0.8 0% · 1.25 6%"
    assert tempo == "1.2 75%; Olaf on the same uploads: 1.2 12%"
    assert key == "-3 50%; Olaf on the same uploads: -3 0%"
    assert cost == "131.0 / 56.5 ms (2.31× the time); 0% / 0%"
    [(_, alone), (_, tempo_alone), _, _] = bench.speed_range_rows(
        {"speed_range": fast | {"olaf": {"built": False}}}
    )
    assert alone == "0.8 100% · 1.25 94%" and tempo_alone == "1.2 75%"
    assert bench.speed_range_rows({}) == []


def test_precision_at_5_asks_only_tracks_whose_soundtrack_holds_another(monkeypatch):
    """bench/eval_retrieval.py: a track alone in its package (two of the --likeness soundtracks
    hold one) is searched among but never asked, as no answer of its could be right."""
    monkeypatch.syspath_prepend(str(RUN.parent))
    import eval_retrieval

    package = {1: "a", 2: "a", 3: "a", 4: "b", 5: "c"}
    answers = {1: [2, 4], 2: [5, 4], 3: [1, 2], 4: [1, 2], 5: [1, 2]}  # 1/2, 0/2, 2/2 right
    mfcc = {1: [1, 0], 2: [1, 0.1], 3: [0.9, 0], 4: [0, 1], 5: [-1, 0]}
    asked = []

    class Row:
        def __init__(self, t):
            self.descriptors = {"mfcc_mean": mfcc[t], "mfcc_std": [0.0]}

    class Engine:
        class catalog:
            get_many = staticmethod(lambda ids: {t: Row(t) for t in ids})

        def similar(self, track_id, k):
            asked.append(track_id)
            return [type("Hit", (), {"track_id": t}) for t in answers[track_id]]

    p5 = eval_retrieval.precision_at_5(Engine(), package)
    assert asked == [1, 2, 3] and p5["tracks"] == 3  # 4 and 5 have no partner to find
    assert p5["embeddings"] == 0.5
    asked.clear()
    only = eval_retrieval.precision_at_5(Engine(), package, [3, 5])
    assert asked == [3] and only["tracks"] == 1 and only["embeddings"] == 1.0
    assert eval_retrieval.precision_at_5(Engine(), package, [4, 5]) == {"tracks": 0}


def test_the_background_rows_give_the_talk_case_or_why_it_is_missing(bench):
    """A run without espeak-ng says so in the voice-over's row; results from before that case
    (or the one of a track under part of another) say it was not measured; Olaf's figures sit
    beside each case it answered."""
    level = {"0": {"bed_found": 0.5, "wrong": 0.0}, "-6": {"bed_found": 0.1, "wrong": 0.0}}
    two = {k: v | {"both_listed": 0.2} for k, v in level.items()}
    bed = {"trials": 30, "clip_s": 10.0, "under_other_music": level, "two_catalog_tracks": two}
    talk = {"0": {"bed_found": 0.2, "wrong": 0.0}, "-6": {"bed_found": 0.0, "wrong": 0.1}}
    olaf = {"built": True, "under_other_music": level, "two_catalog_tracks": two}
    rows = bench.background_rows({"background": bed | {"under_talk": talk, "olaf": olaf}})
    (music_title, music), (_, both), (talk_title, voice), (part_title, part) = rows
    assert "0 dB · -6 dB" in music_title and "espeak-ng" in talk_title
    assert "6 s of it under the start, middle or end of 20 s" in part_title
    assert part == "not measured in this run"  # results from before that case
    assert music == "50% / 0% · 10% / 0%; Olaf on the same mixes: 50% / 0% · 10% / 0%"
    assert both.startswith("20% / 0% · 20% / 0%; Olaf")
    assert voice == "20% / 0% · 0% / 10%"  # Olaf had not answered these mixes
    olaf |= {"under_talk": {"0": {"bed_found": 0.3, "wrong": 0.0}}}
    rows = bench.background_rows({"background": bed | {"under_talk": talk, "olaf": olaf}})
    assert rows[2][1] == "20% / 0% · 0% / 10%; Olaf on the same mixes: 30% / 0%"
    missing = {"note": "espeak-ng is not installed"}
    assert bench.background_rows({"background": bed | {"under_talk": missing}})[2][1] == (
        "espeak-ng is not installed"
    )
    assert bench.background_rows({"background": bed})[2][1] == "not measured in this run"
    under = {k: v | {"both_listed": 0.6} for k, v in level.items()}
    assert bench.background_rows({"background": bed | {"under_part": under}})[3][1] == (
        "60% / 0% · 60% / 0%"
    )
    assert bench.background_rows({}) == []


def test_the_filter_rows_give_each_backend_or_why_postgresql_is_missing(bench):
    """Each padded size gives a genre row and a text row per backend; the shared catalog's own
    point (the first) none; a run without PostgreSQL says why in a row of its own."""
    figures = {"p50_ms": 3.25, "p95_ms": 4.0}
    asked = ("tracks_of_common_genre", "tracks_of_rare_genre", "genre_list")
    texts = ("text_of_a_title", "text_of_one_path")
    point = {
        "tracks": 10_000,
        "common_genre": ["rock", 4_000],
        "rare_genre": ["world", 12],
        "texts": {"text_of_a_title": ["a song", 210], "text_of_one_path": ["9.wav", 1]},
        "text_index_bytes": 420_000,
        "indexed": dict.fromkeys((*asked, *texts, "first_page_of_genre"), figures),
        "scanned": dict.fromkeys((*asked, *texts), figures | {"p50_ms": 140.4}),
    }
    both = {"points": [point, point], "postgresql": {"points": [point, point]}}
    rows = bench.filter_rows({"catalog_filters": both})
    assert [title.split(":")[0].split("padded ")[1] for title, _ in rows] == [
        "to 10,000 tracks (SQLite)",
        "to 10,000 tracks (SQLite)",
        "to 10,000 tracks (PostgreSQL)",
        "to 10,000 tracks (PostgreSQL)",
    ]
    assert (
        rows[0][1]
        == "3.2 / 140 ms · 3.2 / 140 ms · 3.2 / 140 ms; a page of the common genre 3.2 ms"
    )
    assert rows[1][1] == "3.2 / 140 ms · 3.2 / 140 ms; 0.4 MB"
    alone = {"points": [point, point], "postgresql": {"unavailable": "PostgreSQL is not installed"}}
    rows = bench.filter_rows({"catalog_filters": alone})
    assert len(rows) == 3 and rows[-1][1] == "not measured: PostgreSQL is not installed"
    assert bench.filter_rows({}) == []
    short = {"text_of_short_words": ["1", 0]}  # asked since 2026-12-05, as a third text
    point |= {
        "texts": point["texts"] | short,
        "indexed": point["indexed"] | dict.fromkeys(short, figures),
        "scanned": point["scanned"] | dict.fromkeys(short, figures),
    }
    ((title, figures_of_texts),) = bench.filter_rows(
        {"catalog_filters": {"points": [point, point]}}
    )[1:]
    assert "· words of under 3 characters ('1', 0: every row read), p50" in title
    assert figures_of_texts == "3.2 / 140 ms · 3.2 / 140 ms · 3.2 / 3.2 ms; 0.4 MB"
