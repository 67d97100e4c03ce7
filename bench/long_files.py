"""Long files: time and peak memory of `mirsearch index` and `mirsearch match` on 10, 30 and 60
minutes of audio (a DJ mix, a live set, a radio show), each in a process of its own.

../shared/audio is indexed into a temporary home. Each long file is whole catalog tracks in a
seeded order, cut at the length, written as a 16 kHz WAV file. `mirsearch match --json` of it
against that catalog reports which of the tracks in it were listed (a version of a track, the
manifest's pair_group, counts as that track) and how many listed tracks are not in it; a file
longer than a query may be (SearchConfig.max_query_s, 30 min) is refused from its header, and
what that refusal costs is measured instead. `mirsearch index --workers 1` indexes each alone
into a fresh home. Peak memory is the process's
maximum resident set (getrusage, started from a small process of its own), so what loading
the libraries, the model and the index takes (~0.6 GB with torch, for `index`; `match` reads
without it) is in every figure, and a 10 s clip's `match` is measured beside them as its floor.
Writes bench/long_files.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from olaf import _mirsearch

from mirsearch.audio import load
from mirsearch.config import SearchConfig
from mirsearch.encoding import write

OUT = Path(__file__).resolve().parent / "long_files.json"
LENGTHS_MIN = (10, 30, 60)
RATE = 16_000


# Runs a command and prints its peak RSS in kB (getrusage of its children): the command is
# started from this small process, as a child forked from the benchmark's own (gigabytes after
# the benchmarks before it) would carry that process's peak into its own figure.
PEAK_OF = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def measured(command: list[str], env: dict[str, str], out: Path, *, status: int = 0) -> dict:
    """Run `command` with its standard output in `out`, expecting exit `status`: wall seconds
    and peak RSS (MB)."""
    started = time.perf_counter()
    with open(out, "w") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", PEAK_OF, *command],
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    if done.returncode != status:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr}")
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(int(done.stderr.split()[-1]) / 1024),
    }


def long_file(rows: list[dict], audio_dir: Path, minutes: float, folder: Path, seed: int):
    """Whole catalog tracks in a seeded order up to `minutes`: the WAV file and the groups
    (pair_group, else path) of the tracks in it."""
    order = np.random.default_rng(seed).permutation(len(rows))
    pieces, groups, n = [], set(), int(minutes * 60 * RATE)
    for i in order:
        if sum(p.size for p in pieces) >= n:
            break
        pieces.append(load(audio_dir / rows[i]["path"]).samples)
        groups.add(rows[i]["pair_group"] or rows[i]["path"])
    samples = np.concatenate(pieces)[:n]
    return write(folder / f"long-{minutes:g}min.wav", samples, RATE), groups


def run(audio_dir: Path, *, seed: int = 0) -> dict:
    manifest = (audio_dir / "manifest.tsv").read_text().splitlines()
    rows = list(csv.DictReader(manifest, delimiter="\t"))
    group_of = {r["path"]: r["pair_group"] or r["path"] for r in rows}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        catalog = os.environ | {"MIRSEARCH_HOME": str(scratch / "catalog")}
        measured([*_mirsearch(), "index", str(audio_dir)], catalog, scratch / "index.txt")
        clip = write(
            scratch / "clip.wav", load(audio_dir / rows[0]["path"]).samples[:160_000], RATE
        )
        floor = measured([*_mirsearch(), "match", str(clip)], catalog, scratch / "clip.txt")
        out = {"floor_match_10s_clip": floor, "lengths_min": list(LENGTHS_MIN)}
        for minutes in LENGTHS_MIN:
            path, groups = long_file(rows, audio_dir, minutes, scratch, seed)
            answer = scratch / f"match-{minutes}.jsonl"
            command = [*_mirsearch(), "match", "--json", str(path)]
            too_long = minutes * 60 > SearchConfig.max_query_s
            match = measured(command, catalog, answer, status=int(too_long))
            line = json.loads(answer.read_text().splitlines()[0])
            if too_long:
                match |= {"refused": line["error"]}
            else:
                listed = {group_of[Path(m["path"]).name] for m in line["matches"]}
                match |= {
                    "tracks_in_it": len(groups),
                    "listed_of_them": len(listed & groups),
                    "listed_not_in_it": len(listed - groups),
                }
            alone = os.environ | {"MIRSEARCH_HOME": str(scratch / f"alone-{minutes}")}
            command = [*_mirsearch(), "index", "--workers", "1", str(path)]
            index = measured(command, alone, scratch / f"index-{minutes}.txt")
            out[f"{minutes}min"] = {
                "index": index | {"x_realtime": round(minutes * 60 / index["wall_s"], 1)},
                "match": match,
            }
            path.unlink()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    args = parser.parse_args()
    result = run(args.audio_dir)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
