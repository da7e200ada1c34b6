"""A client of a running server: `stemserver query --server osc://HOST:PORT ...` (or ws://).

Scripts, REAPER and cron jobs use it to ask a long-running server instead of loading the model
themselves. Over OSC the mix goes as a file path when the server is on this machine (it reads the
file), else (or with `send_audio`) as streamed chunks; over WebSocket it is sent as PCM.

The REAPER scripts spawn it on every "Find", so its start-up is part of every answer: it imports neither
torch nor the engine, and numpy, soundfile and asyncio only on the paths that send audio or speak WebSocket
(benchmarks/client.py measures it against a bare python-osc round trip).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from stemserver.errors import StemserverError
from stemserver.server.messages import (
    PREFIX,
    match_from_result,
    mix_from_done,
    osc_message,
    parse_datagram,
    result_message,
)
from stemserver.server.protocol import MAX_CHUNK_BYTES, ProtocolError, is_loopback
from stemserver.window import QUERY_SECONDS


class ServerError(StemserverError):
    """The server answered with an error, or did not answer."""

    def __init__(self, code: str, message: str):
        super().__init__(f"server error {code}: {message}")
        self.code = code


def server_address(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of osc://HOST:PORT or ws(s)://HOST:PORT; a StemserverError names what is wrong."""
    usage = "use osc://HOST:PORT or ws://HOST:PORT, e.g. osc://127.0.0.1:9000"
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        raise StemserverError(f"server address {url!r}: the port is not a number from 0 to 65535; {usage}") from None
    if parsed.scheme not in ("osc", "ws", "wss") or not parsed.hostname or not port:
        raise StemserverError(f"server address {url!r}: {usage}")
    return parsed.scheme, parsed.hostname, port


def query_server(url: str, mix: Path, instrument: str, k: int = 10, seconds: float = QUERY_SECONDS,
                 filters: dict | None = None, token: str | None = None, timeout_s: float = 30.0,
                 send_audio: bool = False, tempo: float | None = None, key: str | None = None) -> dict:
    """Ask the server at `url` for stems fitting `mix` (whose tempo and key the server estimates unless
    given); returns the result as the WebSocket sends it. Over OSC, `send_audio` streams the audio even to
    a server on this machine (one that cannot read its files)."""
    scheme, host, port = server_address(url)
    stated = {name: value for name, value in (("tempo", tempo), ("key", key)) if value is not None}
    if scheme == "osc":
        return _query_osc(host, port, mix, instrument, k, seconds, filters or {}, token, timeout_s,
                          stream=send_audio or not is_loopback(host), stated=stated)
    return _query_ws(url, mix, instrument, k, seconds, filters or {}, token, timeout_s, stated)


def osc_requests(request_id: str, mix: Path, instrument: str, k: int, seconds: float, filters: dict,
                 token: str | None, stream: bool, stated: dict | None = None) -> list[bytes]:
    """The datagrams of one OSC query: the file path, or the last `seconds` of the mix streamed in chunks.
    `stated`: the mix's "tempo" and "key", when known."""
    auth = [token] if token else []
    options = ["seconds", float(seconds), *_filter_pairs({**(stated or {}), **filters})]
    if not stream:
        return [osc_message(f"{PREFIX}/query/file", *auth, request_id, str(mix.absolute()), instrument, k, *options)]
    rate, pcm = _mix_pcm(mix, seconds)
    chunks = [pcm[i : i + MAX_CHUNK_BYTES] for i in range(0, len(pcm), MAX_CHUNK_BYTES)]
    return [osc_message(f"{PREFIX}/stream/begin", *auth, request_id, rate, 1, "float32", instrument, k, *options),
            *(osc_message(f"{PREFIX}/stream/chunk", *auth, request_id, seq, chunk) for seq, chunk in enumerate(chunks)),
            osc_message(f"{PREFIX}/stream/end", *auth, request_id, len(chunks))]


def _mix_pcm(mix: Path, seconds: float) -> tuple[int, bytes]:
    """The last `seconds` of the mix, mono float32 little-endian, and its rate."""
    from stemserver import audio  # numpy and soundfile: only the paths that send audio pay for them

    samples, _ = audio.load(mix)
    return audio.SAMPLE_RATE, samples[-int(seconds * audio.SAMPLE_RATE):].astype("<f4").tobytes()


def _filter_pairs(filters: dict) -> list:
    pairs = []
    for key, value in filters.items():
        for item in value if isinstance(value, list) else [value]:
            pairs += [key, item]
    return pairs


def _query_osc(host, port, mix: Path, instrument, k, seconds, filters, token, timeout_s, stream: bool,
               stated: dict) -> dict:
    request_id = os.urandom(6).hex()
    datagrams = osc_requests(request_id, mix, instrument, k, seconds, filters, token, stream, stated)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        for i, datagram in enumerate(datagrams):
            sock.sendto(datagram, (host, port))
            if i % 16 == 15:
                time.sleep(0.002)  # pace the burst: a full receive buffer drops datagrams
        matches = []
        while True:
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                raise ServerError("timeout", f"no answer from osc://{host}:{port} within {timeout_s:.0f} s "
                                             "(is `stemserver serve` running?)") from None
            try:
                replies = parse_datagram(data)
            except ProtocolError:
                continue  # not our server's: anyone can send to this port
            for address, args in replies:
                if not args or args[0] != request_id:
                    continue
                if address == f"{PREFIX}/error":
                    raise ServerError(args[1], args[2])
                if address == f"{PREFIX}/result":
                    matches.append(match_from_result(args[1:]))
                elif address == f"{PREFIX}/done":
                    return result_message(request_id, {"instrument": instrument, "matches": matches,
                                                       "timings_ms": {"total": args[2]}, **mix_from_done(args[3:])})


def _query_ws(url, mix: Path, instrument, k, seconds, filters, token, timeout_s, stated: dict) -> dict:
    import asyncio  # 30 ms of start-up that the OSC path does not need

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    rate, pcm = _mix_pcm(mix, seconds)
    request_id = os.urandom(6).hex()
    header = {"type": "query", "id": request_id, "instrument": instrument, "k": k, "seconds": seconds,
              "filters": filters, "sample_rate": rate, "channels": 1, "format": "float32", **stated}
    headers = {"Authorization": f"Bearer {token}"} if token else None

    async def exchange() -> dict:
        async with connect(url, additional_headers=headers, max_size=None, compression=None) as connection:
            await connection.send(json.dumps(header))
            await connection.send(pcm)
            while True:
                reply = json.loads(await connection.recv())
                if reply.get("id") != request_id:
                    continue
                if reply["type"] == "error":
                    raise ServerError(reply["code"], reply["message"])
                return reply

    try:
        return asyncio.run(asyncio.wait_for(exchange(), timeout_s))
    except (TimeoutError, asyncio.TimeoutError):
        raise ServerError("timeout", f"no answer from {url} within {timeout_s:.0f} s") from None
    except InvalidStatus as e:
        raise ServerError("unauthorized" if e.response.status_code == 401 else "refused",
                          f"{url} refused the connection (HTTP {e.response.status_code})") from None
    except (OSError, WebSocketException) as e:
        raise ServerError("unreachable", f"cannot reach {url} ({e}); is `stemserver serve` running?") from None
