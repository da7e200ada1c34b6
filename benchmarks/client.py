"""What a REAPER "Find" costs: spawn-to-output wall time of `stemserver query --server osc://...`, next to a
bare python-osc ping round trip and the server's own query time, measured in the same run.

    .venv/bin/python benchmarks/client.py [--windows 1000] [--repeats 10] [--threads 1] [--json]

Builds a random-init tiny checkpoint and a library of `--windows` search windows (as benchmarks/server.py
does), starts `stemserver serve` on free loopback ports, writes an 8 s 44.1 kHz stereo mix, then alternates:

- client: a fresh `stemserver query MIX -i bass --server osc://... --json` process (the console script next
  to this Python, else `python -m stemserver`), from spawn to exit: what the REAPER scripts run on every
  "Find" (over loopback the mix goes as a file path);
- bare: a fresh `python -c` process that imports python-osc, sends /stemserver/ping and awaits the pong
  (the floor: an interpreter, an OSC library and one datagram each way);
- server: the query's own time as the server reports it (`timings_ms.total` of the client's output);
- warm: the same query from this (warm) process's socket, send to done: the server's time with its protocol
  and queue included, which no client can save.

The goal is client <= 1.5 x bare + server: `overhead` = (client - server) / bare, p50 of each, <= 1.5;
`client overhead` = (client - warm) / bare leaves out what the server spends beyond its query.
"""

from __future__ import annotations

import argparse
import compileall
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile
from common import emit  # noqa: E402
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query import MIX_RATE, mixes  # noqa: E402
from server import build  # noqa: E402

BARE_PING = """
import socket, sys
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
builder = OscMessageBuilder("/stemserver/ping")
builder.add_arg("bench", "s")
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(30)
    sock.sendto(builder.build().dgram, ("127.0.0.1", int(sys.argv[1])))
    assert OscPacket(sock.recvfrom(65536)[0]).messages[0].message.address == "/stemserver/pong"
"""


def warm_query(port: int, mix: Path) -> float:
    builder = OscMessageBuilder("/stemserver/query/file")
    for value, kind in (("warm", "s"), (str(mix), "s"), ("bass", "s"), (10, "i")):
        builder.add_arg(value, kind)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(60)
        start = time.perf_counter()
        sock.sendto(builder.build().dgram, ("127.0.0.1", port))
        while OscPacket(sock.recvfrom(65536)[0]).messages[0].message.address != "/stemserver/done":
            pass
        return time.perf_counter() - start


def client_command() -> list[str]:
    script = Path(sys.executable).with_name("stemserver")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stemserver"]


def timed_process(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr}")
    return seconds, done.stdout


def compile_stemserver() -> None:
    """Write stemserver's bytecode first, as any install has it: with PYTHONDONTWRITEBYTECODE set (or a
    fresh checkout), every client spawn would otherwise compile the modules it imports (about 10 ms here)."""
    import stemserver

    compileall.compile_dir(Path(stemserver.__file__).parent, quiet=1)


def run(args: argparse.Namespace) -> dict:
    compile_stemserver()
    root = Path(tempfile.mkdtemp(prefix="client-bench-"))
    checkpoint, library = build(root, "tiny", args.windows, args.seed)
    mix = root / "mix.wav"
    soundfile.write(mix, mixes(1, args.seed)[0], MIX_RATE, subtype="FLOAT")
    command = [sys.executable, "-m", "stemserver", "serve", "--checkpoint", str(checkpoint), "--library",
               str(library), "--osc-port", "0", "--ws-port", "0", "--device", "cpu", "--threads", str(args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = re.match(r"stemserver: ready osc://[\d.]+:(\d+)", server.stdout.readline()).group(1)
        query = [*client_command(), "query", str(mix), "-i", "bass", "-k", "10", "--server",
                 f"osc://127.0.0.1:{port}", "--json"]
        bare = [sys.executable, "-c", BARE_PING, port]
        client_s, bare_s, server_s, warm_s = [], [], [], []
        for repeat in range(args.repeats + 1):  # the first round warms the page cache and the server
            seconds, output = timed_process(query)
            ping_seconds, _ = timed_process(bare)
            warm_seconds = warm_query(int(port), mix)
            if repeat:
                client_s.append(seconds)
                bare_s.append(ping_seconds)
                server_s.append(json.loads(output)["timings_ms"]["total"] / 1e3)
                warm_s.append(warm_seconds)
    finally:
        server.terminate()
        server.wait(timeout=60)
    p50 = {name: statistics.median(values) * 1e3 for name, values in
           (("client", client_s), ("bare", bare_s), ("server", server_s), ("warm", warm_s))}
    return {"windows": args.windows, "repeats": args.repeats, "command": " ".join(query[:2]), "p50_ms": p50,
            "max_ms": {"client": max(client_s) * 1e3, "bare": max(bare_s) * 1e3},
            "overhead": (p50["client"] - p50["server"]) / p50["bare"],
            "client_overhead": (p50["client"] - p50["warm"]) / p50["bare"]}


def print_table(result: dict) -> None:
    p50, worst = result["p50_ms"], result["max_ms"]
    print(f"library of {result['windows']} windows, {result['repeats']} spawns each (p50, max); client: "
          f"{result['command']}")
    print(f"client `stemserver query --server osc://`  {p50['client']:7.1f} ms  {worst['client']:7.1f} ms")
    print(f"bare python-osc ping round trip           {p50['bare']:7.1f} ms  {worst['bare']:7.1f} ms")
    print(f"server's own query time                   {p50['server']:7.1f} ms")
    print(f"warm query round trip (this process)      {p50['warm']:7.1f} ms")
    print(f"overhead (client - server) / bare: {result['overhead']:.2f} (goal <= 1.5); "
          f"(client - warm) / bare: {result['client_overhead']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(run(args), args.json, print_table)


if __name__ == "__main__":
    main()
