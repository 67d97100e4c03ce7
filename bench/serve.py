"""Load on the real server: `mirsearch serve` on a catalog, driven by concurrent HTTP clients.

Each client runs rounds of three requests: a clip search, a clip match (both multipart uploads)
and a track lookup. Reports latency p50/p95 per endpoint, throughput, every status code and
connection error, answers that name the wrong track (when the clips' sources are given), and the
server's peak RSS (VmHWM). Used by `make bench` and by tests/test_load.py, which asserts zero
errors, zero 5xx and zero wrong answers.

    python bench/serve.py --home var --clients 50 --rounds 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

STARTUP_S = 180.0  # the server loads the model and the index before answering


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int) -> subprocess.Popen:
    """`mirsearch serve` on 127.0.0.1:port over the catalog at `home`, once it answers."""
    env = {**os.environ, "MIRSEARCH_HOME": str(home)}
    command = [str(Path(sys.executable).parent / "mirsearch"), "serve", "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read()[-2000:]}")
        try:
            status, _ = request(port, "GET", "/api/health")
            if status == 200:
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError(f"the server did not answer within {STARTUP_S:.0f} s")


def request(port: int, method: str, path: str, upload: tuple[str, bytes] | None = None):
    """(status, parsed JSON body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        headers, body = {}, None
        if upload is not None:
            boundary = uuid.uuid4().hex
            name, data = upload
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                ).encode()
                + data
                + f"\r\n--{boundary}--\r\n".encode()
            )
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it (the server's gunicorn workers)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def drive(
    port: int,
    clips: list[Path],
    track_ids: list[int],
    *,
    clients: int,
    rounds: int,
    sources: dict[str, str] | None = None,
):
    """Every client runs `rounds` of search, match and track lookup; returns the report.

    `sources` (clip file name → catalog path) makes the first search result and the first
    match of each clip, and every track lookup, checked for the right track.
    """
    uploads = [(p.name, p.read_bytes()) for p in clips]
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: Counter = Counter()
    errors: list[str] = []
    bad_bodies: list[str] = []
    wrong: list[str] = []
    expected = {"search": "results", "match": "matches", "track": "track_id"}

    def one(endpoint: str, method: str, path: str, upload=None, want=None) -> None:
        started = time.perf_counter()
        try:
            status, body = request(port, method, path, upload)
        except Exception as exc:  # a refused or dropped connection is what the test counts
            errors.append(f"{endpoint}: {type(exc).__name__}: {exc}")
            return
        latencies[endpoint].append((time.perf_counter() - started) * 1000)
        statuses[status] += 1
        if status != 200 or not isinstance(body, dict) or expected[endpoint] not in body:
            bad_bodies.append(f"{endpoint} {status}: {str(body)[:200]}")
            return
        answer = body[expected[endpoint]]
        got = answer if endpoint == "track" else answer[0]["path"] if answer else None
        if want is not None and got != want:
            wrong.append(f"{endpoint} {path} {upload[0] if upload else ''}: {got}, not {want}")

    def client(i: int) -> None:
        for r in range(rounds):
            clip = uploads[(i + r) % len(uploads)]
            source = (sources or {}).get(clip[0])
            one("search", "POST", "/api/search?k=5", clip, source)
            one("match", "POST", "/api/match", clip, source)
            track_id = track_ids[(i + r) % len(track_ids)]
            one("track", "GET", f"/api/tracks/{track_id}", want=track_id)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall_s = time.perf_counter() - started
    total = sum(statuses.values()) + len(errors)
    return {
        "clients": clients,
        "requests": total,
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(total / wall_s, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "connection_errors": errors[:20],
        "unexpected_responses": bad_bodies[:20],
        "wrong_answers": len(wrong),
        "wrong_answer_examples": wrong[:20],
        **{
            endpoint: {
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p95_ms": round(float(np.percentile(ms, 95)), 1),
            }
            for endpoint, ms in latencies.items()
        },
    }


def run(
    home: Path,
    clips: list[Path],
    *,
    clients: int = 50,
    rounds: int = 2,
    sources: dict[str, str] | None = None,
) -> dict:
    """Start the server on `home`, drive it, stop it; the report with the server's processes and
    their peak RSS (pages they share, torch's libraries among them, counted in each)."""
    port = free_port()
    server = start_server(home, port)
    try:
        _, listing = request(port, "GET", "/api/tracks?per_page=100")
        track_ids = [t["track_id"] for t in listing["tracks"]]
        report = drive(port, clips, track_ids, clients=clients, rounds=rounds, sources=sources)
        peaks = [peak_rss_mb(pid) for pid in process_tree(server.pid)]
        report["server_processes"] = len(peaks)  # gunicorn's master and its workers
        report["server_peak_rss_mb"] = round(sum(peaks), 1)  # each process's peak, summed
        report["server_worker_peak_rss_mb"] = max(peaks)  # the largest process's
        return report
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("var"), help="an indexed MIRSEARCH_HOME")
    parser.add_argument("--clip", type=Path, action="append", required=True, help="(repeatable)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    report = run(args.home, args.clip, clients=args.clients, rounds=args.rounds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
