"""Where `mirsearch index` spends its time: one process, CPU time per stage.

Indexes a folder (../shared/audio by default) into a temporary home with one worker and one torch
thread (as each worker runs when `mirsearch index` fills the machine), every stage in this
process, with each stage's function wrapped in a CPU-time counter (process time, so the machine's
other load does not blur it; a wrapper per call, not a profiler's per-line overhead): hashing,
decoding (PyAV + resampling), descriptors, the log-mel front end, the network, the verification
prints, the duplicate check on ingest, and the catalog and index writes. Writes
bench/profile_index.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from mirsearch import analysis, audio, commits, embeddings, features, nn, records, student
from mirsearch.config import Settings
from mirsearch.index import VectorIndex
from mirsearch.indexer import Indexer

OUT = Path(__file__).resolve().parent / "profile_index.json"
# stage → the (owner, attribute) pairs of the functions whose calls it times
STAGES = {
    "hash the file (sha256)": [(analysis, "file_sha256")],
    "decode (PyAV, resample to 16 kHz)": [(audio, "load")],
    "descriptors (tempo, key, MFCC...)": [(features, "describe")],
    "log-mel front end": [(nn.GenreNet, "front_end")],
    # a student runs both branches in one call; a plain network embeds its windows alone
    "network (window embeddings)": [
        (student.Student, "both_windows"),
        (nn.GenreNet, "embed_windows"),
    ],
    "verification print": [(embeddings, "make_print")],
    "duplicate check on ingest": [(records, "_flag_duplicate")],
    "vector index save": [(VectorIndex, "save")],
    # each result's rows, vectors and print (records.record); not the batch (Commits.batch),
    # which also draws the next results, analysed right there when there is one worker
    "commit (catalog rows, index add)": [(commits, "record")],
}
NESTED_IN_COMMIT = ("duplicate check on ingest",)


def _timed(function, totals: dict, stage: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            totals[stage] += time.process_time() - started

    return wrapper


def profile(folder: Path) -> dict:
    torch.set_num_threads(1)
    totals: dict[str, float] = defaultdict(float)
    wrapped = [(stage, owner, name) for stage, pairs in STAGES.items() for owner, name in pairs]
    originals = {(owner, name): getattr(owner, name) for _, owner, name in wrapped}
    for stage, owner, name in wrapped:
        setattr(owner, name, _timed(originals[owner, name], totals, stage))
    try:
        with tempfile.TemporaryDirectory() as home:
            indexing = Indexer(Settings.from_env(home=Path(home)))
            started = time.process_time()
            summary = indexing.run([folder], workers=1)
            cpu_s = time.process_time() - started
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
    commit = "commit (catalog rows, index add)"
    totals[commit] -= sum(totals[s] for s in NESTED_IN_COMMIT)
    totals["everything else (walk, plan, model load, rhythm, tags)"] = cpu_s - sum(totals.values())
    audio_s = summary.audio_hours * 3600
    return {
        "files": summary.indexed,
        "audio_hours": round(summary.audio_hours, 3),
        "cpu_s": round(cpu_s, 1),
        "x_realtime_per_cpu_second": round(audio_s / cpu_s, 1),
        "stages": {
            stage: {"cpu_s": round(s, 2), "share": round(s / cpu_s, 3)}
            for stage, s in totals.items()
        },
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("../shared/audio"))
    args = parser.parse_args()
    report = profile(args.folder)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
