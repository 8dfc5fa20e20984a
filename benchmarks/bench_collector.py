"""What durability costs: the collector with fsync'd appends vs the same app storing nothing.

Both arms are real server processes on 127.0.0.1 with the same Bottle app, waitress and
thread count; the baseline swaps the `Store` for a `DiscardingStore` (same validation and
JSON encoding, no lock file, write or fsync). Clients are keep-alive HTTP connections
spread over several processes (so the client's GIL is not what is measured), each
sending fresh valid records as fast as it gets answers.

    .venv/bin/python benchmarks/bench_collector.py            # 1, 8, 32 clients
    .venv/bin/python benchmarks/bench_collector.py --clients 32 --requests 200

Prints submissions/s and p50/p99 latency per arm and the durable/baseline ratios; writes
benchmarks/results/collector.json.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from multilabelfy.collector import formats
from multilabelfy.collector.formats import Grant, Manifest, ManifestImage

REPO = Path(__file__).resolve().parents[1]
SHOWN = list(range(0, 400, 20))  # 20 proposals, as on the real pages
IMAGES = 200
CLIENT_PROCESSES = 4


def make_world(root: Path, annotators: int = 32) -> dict[str, str]:
    """SITE_DIR/manifest.json and PRIVATE_DIR/tokens.json; returns annotator -> token."""
    site, private = root / "site", root / "private"
    site.mkdir(), private.mkdir()
    keys = [f"1/img_{i:04d}.jpeg" for i in range(IMAGES)]
    manifest = Manifest(num_classes=1000, stages={"annotate": {1: [
        ManifestImage(k, f"annotate/1/{i:04d}.html", tuple(SHOWN), (), formats.shown_digest("annotate", k, SHOWN))
        for i, k in enumerate(keys)]}})
    formats.save_manifest(site, manifest)
    tokens = {f"annotator{i:02d}": formats.new_token() for i in range(annotators)}
    formats.save_tokens(private, {formats.token_hash(t): Grant(a, "annotate", 1) for a, t in tokens.items()})
    return tokens


def start_server(root: Path, store: Path, durable: bool, threads: int) -> tuple[subprocess.Popen, int, Path]:
    """A collector process on a free port: the real CLI, or this script's baseline server."""
    args = ["--site", str(root / "site"), "--private", str(root / "private"), "--store", str(store),
            "--host", "127.0.0.1", "--port", "0", "--threads", str(threads)]
    cmd = ([sys.executable, "-m", "multilabelfy.collector.cli", *args] if durable
           else [sys.executable, __file__, "--serve-discarding", *args])
    log = store.with_suffix(".log")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.findall(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return proc, int(found[0]), log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"server did not start:\n{log.read_text()}")


def _client(port: int, token: str, annotator: str, count: int, out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for i in range(count):
        key = f"1/img_{i % IMAGES:04d}.jpeg"
        body = json.dumps({"id": f"{annotator}-{i}-{time.time_ns()}", "stage": "annotate", "batch": 1,
                           "image": key, "labels": SHOWN[:2], "shown": formats.shown_digest("annotate", key, SHOWN),
                           "elapsed_ms": 4200, "client_time": "2026-12-03T10:00:00.000Z"})
        started = time.perf_counter()
        conn.request("POST", "/api/submissions", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        out.append(time.perf_counter() - started)
        if resp.status != 201:
            raise RuntimeError(f"unexpected status {resp.status}")
    conn.close()


def _client_process(port: int, clients: list[tuple[str, str]], count: int) -> tuple[float, float, list[float]]:
    """Runs some clients as threads; returns (start, end, latencies) in wall-clock seconds."""
    latencies: list[float] = []
    threads = [threading.Thread(target=_client, args=(port, token, name, count, latencies)) for name, token in clients]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return start, time.time(), latencies


def measure(port: int, tokens: dict[str, str], clients: int, per_client: int) -> dict[str, float]:
    chosen = list(tokens.items())[:clients]
    groups = [chosen[i::CLIENT_PROCESSES] for i in range(min(CLIENT_PROCESSES, clients))]
    with ProcessPoolExecutor(len(groups)) as pool:
        results = list(pool.map(_client_process, [port] * len(groups), groups, [per_client] * len(groups)))
    latencies = sorted(x for _, _, lat in results for x in lat)
    wall = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    return {"clients": clients, "requests": len(latencies), "per_s": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def serve_discarding(argv: list[str]) -> int:
    """The baseline server: the collector's own app and serve(), with a DiscardingStore."""
    from multilabelfy.collector.app import CollectorConfig, create_app
    from multilabelfy.collector.cli import build_parser, check_inputs, serve, setup_logging
    from multilabelfy.collector.store import DiscardingStore

    args = build_parser().parse_args(argv)
    check_inputs(args)
    setup_logging()
    store = DiscardingStore(args.store)
    store.open()
    config = CollectorConfig(site_dir=args.site, private_dir=args.private, store_path=args.store)
    serve(create_app(config, store), args.host, args.port, args.threads)
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-discarding":
        return serve_discarding(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients per run")
    parser.add_argument("--requests", type=int, default=3200, help="submissions per run (split over the clients)")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads (the CLI's default)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        root = Path(tmp)
        tokens = make_world(root, max(args.clients))
        for durable in (True, False):
            arm = "durable (fsync)" if durable else "no store"
            for clients in args.clients:
                store = root / f"{'durable' if durable else 'discard'}-{clients}.jsonl"
                proc, port, _ = start_server(root, store, durable, args.threads)
                try:
                    row = measure(port, tokens, clients, max(1, args.requests // clients))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                if durable:  # the benchmark doubles as a check: every answer is on disk
                    records, bad = formats.read_store(store)
                    assert len(records) == row["requests"] and not bad, "durable arm lost records"
                rows.append({"arm": arm, **row})
                print(f"{arm:16s} {clients:3d} clients: {row['per_s']:7.0f} submissions/s  "
                      f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms", flush=True)

    print("\n| clients | durable /s | no store /s | ratio | durable p50 / p99 ms | no store p50 / p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for clients in args.clients:
        d = next(r for r in rows if r["arm"].startswith("durable") and r["clients"] == clients)
        n = next(r for r in rows if r["arm"] == "no store" and r["clients"] == clients)
        print(f"| {clients} | {d['per_s']:.0f} | {n['per_s']:.0f} | {d['per_s'] / n['per_s']:.2f} | "
              f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f} | {n['p50_ms']:.1f} / {n['p99_ms']:.1f} |")
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "collector.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
