"""Round-trip latency of the running server over OSC and WebSocket, next to the engine's own query time.

    .venv/bin/python benchmarks/server.py [--size tiny] [--windows 10000] [--queries 40] [--clients 8] [--json]

Builds a random-init checkpoint and a library of `--windows` search windows (as benchmarks/query.py
does), starts `stemserver serve` on free loopback ports, and measures, over the same 8 s mixes:

- engine: `Engine.query` in this process (what the server does per query, without any protocol);
- osc: a file-path query (`/stemserver/query/file`, the Max/REAPER path: the server decodes a WAV)
  from send to the done message; ws: a JSON + binary PCM query from send to the result;
- for one client (sequential) and for `--clients` concurrent clients, p50/p95/p99 in ms;
- overhead ratio: round-trip p50 (one client) / engine p50, measured in the same run;
- saturation: queries/s completed with the concurrent clients, and how many got `busy`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile
from common import emit  # noqa: E402
from pythonosc.osc_packet import OscPacket
from websockets.sync.client import connect

from stemserver.config import Settings, TextSettings
from stemserver.engine import Engine, Query
from stemserver.files import sha256_file
from stemserver.index import IndexSettings, build_index, window_starts
from stemserver.library import Library
from stemserver.server.osc import osc_message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query import MIX_RATE, QUERY_SECONDS, STEM_SECONDS, mixes, stem_columns_like, write_checkpoint  # noqa: E402
from search import SyntheticVectors, write_library  # noqa: E402


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99))}


def build(root: Path, size: str, windows: int, seed: int) -> tuple[Path, Path]:
    checkpoint = root / f"{size}.safetensors"
    config = write_checkpoint(checkpoint, size, seed)
    vectors = SyntheticVectors(config.embed_dim, seed=seed)
    defaults = IndexSettings()
    columns = int(STEM_SECONDS / config.seconds_per_column)
    n_files = math.ceil(windows / len(window_starts(columns, defaults.window_columns, defaults.hop_columns)))
    write_library(root, n_files, lambda i: stem_columns_like(config, vectors, vectors.centres, i),
                  sha256_file(checkpoint))
    with Library(root / "library") as library:
        build_index(library, defaults, progress=False)
    return checkpoint, root / "library"


def osc_round_trip(server: tuple, path: Path, request_id: int) -> tuple[float, str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(120)
        start = time.perf_counter()
        sock.sendto(osc_message("/stemserver/query/file", request_id, str(path), "bass", 10), server)
        while True:
            message = OscPacket(sock.recvfrom(65536)[0]).messages[0].message
            if message.address == "/stemserver/done":
                return time.perf_counter() - start, "result"
            if message.address == "/stemserver/error":
                return time.perf_counter() - start, message.params[1]


def ws_round_trip(url: str, mix: np.ndarray, request_id: int) -> tuple[float, str]:
    with connect(url, max_size=None, compression=None) as ws:
        start = time.perf_counter()
        ws.send(json.dumps({"type": "query", "id": request_id, "instrument": "bass", "k": 10,
                            "sample_rate": MIX_RATE, "channels": 2, "format": "float32"}))
        ws.send(mix.astype("<f4").tobytes())
        reply = json.loads(ws.recv(timeout=120))
        return time.perf_counter() - start, "result" if reply["type"] == "result" else reply["code"]


def measure(call, items: list, clients: int) -> dict:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(call, items, range(len(items))))
    wall = time.perf_counter() - start
    answered = [seconds for seconds, outcome in outcomes if outcome == "result"]
    return {**percentiles(answered), "busy": sum(outcome == "busy" for _, outcome in outcomes),
            "queries_per_s": len(answered) / wall}


def run(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="server-bench-"))
    checkpoint, library = build(root, args.size, args.windows, args.seed)
    raw = mixes(args.queries, args.seed)
    paths = []
    for i, mix in enumerate(raw):
        paths.append(root / f"mix{i}.wav")
        soundfile.write(paths[-1], mix, MIX_RATE, subtype="FLOAT")

    settings = Settings(device="cpu", threads=args.threads, text=TextSettings(backend="none"))
    engine = Engine(checkpoint, library, settings)
    engine_s = []
    for mix in raw[:3] + raw:
        start = time.perf_counter()
        engine.query(Query(engine.prepare_query(mix, MIX_RATE, QUERY_SECONDS), "bass", k=10))
        engine_s.append(time.perf_counter() - start)
    engine_ms = percentiles(engine_s[3:])
    del engine

    command = [sys.executable, "-m", "stemserver", "serve", "--checkpoint", str(checkpoint), "--library",
               str(library), "--osc-port", "0", "--ws-port", "0", "--device", "cpu", "--queue", "64"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = re.match(r"stemserver: ready osc://[\d.]+:(\d+) ws://([\d.:]+)", server.stdout.readline())
        osc_address, ws_url = ("127.0.0.1", int(ready.group(1))), f"ws://{ready.group(2)}"
        for i in range(3):  # warm-up
            osc_round_trip(osc_address, paths[i], -i - 1)
            ws_round_trip(ws_url, raw[i], -i - 1)
        rows = {}
        for clients in (1, args.clients):
            rows[f"osc x{clients}"] = measure(lambda p, i: osc_round_trip(osc_address, p, i), paths, clients)
            rows[f"ws x{clients}"] = measure(lambda m, i: ws_round_trip(ws_url, m, i), raw, clients)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"size": args.size, "windows": args.windows, "engine_ms": engine_ms, "rows": rows,
            "osc_overhead_ratio": rows["osc x1"]["p50"] / engine_ms["p50"],
            "ws_overhead_ratio": rows["ws x1"]["p50"] / engine_ms["p50"]}


def print_table(result: dict) -> None:
    engine = result["engine_ms"]
    print(f"model {result['size']}, library of {result['windows']} windows; engine alone: p50 {engine['p50']:.1f} ms, "
          f"p95 {engine['p95']:.1f} ms")
    print(f"{'path':10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'queries/s':>10} {'busy':>5}")
    for name, row in result["rows"].items():
        print(f"{name:10} {row['p50']:8.1f} {row['p95']:8.1f} {row['p99']:8.1f} {row['queries_per_s']:10.1f} "
              f"{row['busy']:5d}")
    print(f"round trip / engine (p50, one client): osc {result['osc_overhead_ratio']:.2f}, "
          f"ws {result['ws_overhead_ratio']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument("--windows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    emit(result, args.json, print_table)


if __name__ == "__main__":
    main()
