"""The `mirsearch` command on a demo catalog: help, JSON lines, errors per file, exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mirsearch.cli import main
from mirsearch.demo import write_demo_catalog

COMMANDS = {
    "index",
    "search",
    "similar",
    "match",
    "dupes",
    "classify",
    "tracks",
    "genres",
    "stats",
    "train",
    "train-default",
    "evaluate",
    "db",
    "demo",
    "serve",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A MIRSEARCH_HOME with four demo tracks indexed through the CLI; (home, music, summary)."""
    home = tmp_path_factory.mktemp("cli-home")
    music = tmp_path_factory.mktemp("cli-music")
    write_demo_catalog(music, n_tracks=4)
    result = CliRunner().invoke(
        main, ["index", str(music), "--json"], env={"MIRSEARCH_HOME": str(home)}
    )
    assert result.exit_code == 0, result.output
    return home, music, json.loads(result.output.strip().splitlines()[-1])


def run(home, *args):
    return CliRunner().invoke(main, list(map(str, args)), env={"MIRSEARCH_HOME": str(home[0])})


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert all(command in result.output for command in COMMANDS)


def test_index_summary_contract(home):
    summary = home[2]
    assert {"indexed", "unchanged", "failed", "seconds", "audio_hours"} <= set(summary)
    assert summary["indexed"] == 4 and summary["failed"] == 0


def test_listings(home):
    tracks = lines(run(home, "tracks", "--json"))
    assert len(tracks) == 4 and {"id", "path", "status", "tempo_bpm", "key"} <= set(tracks[0])
    genres = lines(run(home, "genres", "--json"))
    assert genres and {"genre", "count"} == set(genres[0])
    stats = lines(run(home, "stats", "--json"))[0]
    assert stats["indexed"] == 4


def test_search_similar_match_classify_and_a_failing_file(home, tmp_path):
    clip = sorted(home[1].iterdir())[0]
    bad = tmp_path / "bad.ogg"
    bad.write_text("nope")
    found = lines(run(home, "search", clip, bad, "--k", "2", "--json"))
    assert len(found) == 2 and len(found[0]["results"]) == 2 and "error" in found[1]
    assert found[0]["results"][0]["path"] == str(clip)
    similar = lines(run(home, "similar", found[0]["results"][0]["track_id"], "--k", "2", "--json"))[
        0
    ]
    assert len(similar["results"]) == 2
    match = lines(run(home, "match", clip, "--json"))[0]
    assert match["matches"][0]["path"] == str(clip)
    classified = lines(run(home, "classify", clip, "--json"))[0]
    assert classified["genre"] in classified["probabilities"] and classified["similar"]


def test_nothing_worked_or_bad_arguments_exit_non_zero(home, tmp_path):
    bad = tmp_path / "bad.ogg"
    bad.write_text("nope")
    assert run(home, "search", bad, "--json").exit_code == 1
    assert run(home, "search", bad, "--k", "zero").exit_code == 2
    assert run(home, "search", bad, "--k", "0").exit_code == 1
    assert run(home, "similar", 999, "--json").exit_code == 1


def test_bad_engine_options_and_settings_are_usage_errors(home, tmp_path):
    result = run(home, "index", tmp_path, "--address", "auto")
    assert result.exit_code == 2 and "--address goes with --engine ray" in result.output
    assert run(home, "index", tmp_path, "--engine", "spark").exit_code == 2
    result = CliRunner().invoke(
        main, ["stats"], env={"MIRSEARCH_HOME": str(home[0]), "MIRSEARCH_INDEX_KIND": "lsh"}
    )
    assert result.exit_code == 2 and "MIRSEARCH_INDEX_KIND is 'lsh'" in result.output
