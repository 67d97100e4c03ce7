"""Throughput on real music, as multiples of real time: decode, features, embeddings, indexing.

Measured in one run so the ratios compare: decode alone; decode + descriptors + log-mel (issue 1);
decode + embeddings with the shipped CNN and with the VGG-style reference network (two one-thread
worker processes); and `mirsearch index` on the whole folder (first run and the unchanged
second run), and `mirsearch index` with the shipped student against its matching branch alone.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from sqlalchemy import text

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.checkpoints import build, save_checkpoint
from mirsearch.config import FeatureConfig, Settings
from mirsearch.embeddings import Embedder, for_inference
from mirsearch.features import describe, log_mel
from mirsearch.files import discover
from mirsearch.student import Student


def _rate(audio_s: float, wall_s: float) -> float:
    return round(audio_s / wall_s, 1)


def decoding(files: list[Path]) -> dict:
    started, audio_s = time.perf_counter(), 0.0
    for path in files:
        audio_s += load(path).info.duration_s
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    for path in files:
        decoded = load(path)
        mel_db = log_mel(torch.from_numpy(decoded.samples), FeatureConfig())
        describe(decoded.samples, decoded.sample_rate, mel_db=mel_db)
    features_s = time.perf_counter() - started
    return {
        "audio_hours": round(audio_s / 3600, 3),
        "decode_x_realtime": _rate(audio_s, decode_s),
        "decode_features_x_realtime": _rate(audio_s, features_s),
    }


_network = None
_bfloat16 = False  # as the Embedder runs it: bfloat16 where the CPU computes it natively
NETWORKS = ("student", "matching_branch", "vgg_reference")


def _load_network(name: str) -> None:
    """Worker initialiser: one torch thread and one of NETWORKS: the shipped student (both
    branches, as indexing runs it), its matching branch alone (the network shipped before the
    student) or the VGG-style reference."""
    global _network, _bfloat16
    torch.set_num_threads(1)
    shipped = Embedder()
    _bfloat16 = shipped.bfloat16
    if name == "student":
        _network = shipped.model
    elif name == "matching_branch":
        _network = shipped.model.matcher
    else:
        _network = for_inference(
            build(
                "vgg", n_classes=len(shipped.labels), feature_config=asdict(shipped.feature_config)
            )
        )


def _decode_embed(path: Path) -> float:
    decoded = load(path)
    with torch.inference_mode():
        mel = _network.front_end(torch.from_numpy(decoded.samples))
        with torch.autocast("cpu", torch.bfloat16, enabled=_bfloat16):  # as Embedder.analyse
            if isinstance(_network, Student):
                _network.both_windows(mel, window_s=3.0, hop_s=1.5)
            else:
                _network.embed_windows(mel, window_s=3.0, hop_s=1.5)
    return decoded.info.duration_s


def embedding(files: list[Path], *, workers: int = 2) -> dict:
    """Decode + embed (window 3 s, hop 1.5 s): `workers` processes of one thread, in the
    precision the Embedder uses, as `mirsearch index --workers 2` runs, for each of NETWORKS in
    turn."""
    largest_first = sorted(files, key=lambda p: -p.stat().st_size)
    out = {}
    for name in NETWORKS:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_load_network, initargs=(name,)) as pool:
            pool.map(_decode_embed, largest_first[-workers:])  # warm-up: workers load the model
            started = time.perf_counter()
            audio_s = sum(pool.imap_unordered(_decode_embed, largest_first))
            out[f"decode_embed_{name}_x_realtime"] = _rate(audio_s, time.perf_counter() - started)
    out["workers"] = workers
    out["threads_per_worker"] = 1
    return out


def indexing(folder: Path, *, workers: int | None = None) -> dict:
    """`mirsearch index` with default settings (one worker per core), twice, and the footprint
    of what it stored; then the shipped student against its matching branch alone (the network
    shipped before the student), two fresh catalogs each, interleaved, best of two."""
    with tempfile.TemporaryDirectory() as home:
        engine = Engine(Settings.from_env({}, home=Path(home)))
        first = engine.index_paths([folder], workers=workers)
        second = engine.index_paths([folder], workers=workers)
        stored = footprint(engine)
    audio_s = first.audio_hours * 3600
    return {
        "workers": workers or os.cpu_count(),
        "tracks": first.indexed,
        "first_run_s": round(first.seconds, 2),
        "index_x_realtime": _rate(audio_s, first.seconds),
        "second_run_s": round(second.seconds, 3),
        "second_run_unchanged": second.unchanged,
        "footprint": stored | per_hour(stored, first.audio_hours),
        "against_matching_branch": against_matching_branch(folder, workers=workers),
    }


def against_matching_branch(folder: Path, *, workers: int | None) -> dict:
    """Seconds of `mirsearch index` into a fresh catalog with the shipped student and with a
    checkpoint of its matching branch alone, and the student's share of that speed."""
    seconds: dict[str, list[float]] = {"student": [], "matching_branch": []}
    with tempfile.TemporaryDirectory() as scratch:
        shipped = Embedder()
        matcher = save_checkpoint(
            Path(scratch) / "matching_branch.pt",
            model=shipped.checkpoint.model.matcher,
            arch="cnn",
            arch_args=shipped.checkpoint.card.arch_args["matcher_args"]
            | {"feature_config": asdict(shipped.feature_config)},
            labels=[
                f"class {i}" for i in range(shipped.checkpoint.model.matcher.head[-1].out_features)
            ],
            window_s=shipped.checkpoint.card.window_s,
            metadata={"matcher_sha256": shipped.card.matching_hash},
        )
        env = {"student": {}, "matching_branch": {"MIRSEARCH_MODEL": str(matcher)}}
        for round_ in range(2):
            for name, variables in env.items():
                home = Path(scratch) / f"{name}-{round_}"
                engine = Engine(Settings.from_env(variables, home=home))
                seconds[name].append(engine.index_paths([folder], workers=workers).seconds)
                engine.catalog.close()
    best = {name: min(times) for name, times in seconds.items()}
    return {f"{name}_s": round(s, 2) for name, s in best.items()} | {
        "student_speed_share": round(best["matching_branch"] / best["student"], 3)
    }


def footprint(engine: Engine) -> dict:
    """Bytes on disk: catalog rows (the SQLite file, compacted, less the prints), verification
    prints (their stored bytes), and the current generation's vector index files."""
    catalog_db = engine.settings.home / "catalog.db"
    with engine.catalog.engine.connect() as connection:
        prints = connection.execute(text("SELECT SUM(LENGTH(data)) FROM track_prints")).scalar()
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.catalog.close()
    with sqlite3.connect(catalog_db) as connection:
        connection.execute("VACUUM")
    generation = engine.catalog.index_state().generation
    index_dir = engine.settings.index_dir
    vectors = {
        name: (index_dir / f"{name}-{generation}.faiss").stat().st_size
        for name in ("windows", "tracks")
    }
    return {
        "rows_bytes": catalog_db.stat().st_size - int(prints or 0),
        "prints_bytes": int(prints or 0),
        "window_vectors_bytes": vectors["windows"],
        "track_vectors_bytes": vectors["tracks"],
        "window_index_kind": engine.index().meta.kind,
    }


def per_hour(stored: dict, audio_hours: float) -> dict:
    parts = {
        "rows": stored["rows_bytes"],
        "prints": stored["prints_bytes"],
        "vectors": stored["window_vectors_bytes"] + stored["track_vectors_bytes"],
    }
    mb = {f"{k}_mb_per_hour": round(v / 1e6 / audio_hours, 3) for k, v in parts.items()}
    return mb | {"total_mb_per_hour": round(sum(parts.values()) / 1e6 / audio_hours, 3)}


def run(audio_dir: Path) -> dict:
    files = discover([audio_dir])
    return {"decode": decoding(files), "embed": embedding(files), "index": indexing(audio_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    print(json.dumps(run(parser.parse_args().audio_dir), indent=2))


if __name__ == "__main__":
    main()
