"""A client of a running server: `stemserver query --server osc://HOST:PORT ...` (or ws://).

Scripts, REAPER and cron jobs use it to ask a long-running server instead of loading the model
themselves. Over OSC the mix goes as a file path when the server is on this machine (it reads the
file), else as streamed chunks; over WebSocket it is sent as PCM.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from pythonosc.osc_packet import OscPacket

from stemserver import audio
from stemserver.errors import StemserverError
from stemserver.server.osc import PREFIX, osc_message
from stemserver.server.protocol import MAX_CHUNK_BYTES, RESULT_FIELDS, is_loopback


class ServerError(StemserverError):
    """The server answered with an error, or did not answer."""

    def __init__(self, code: str, message: str):
        super().__init__(f"server error {code}: {message}")
        self.code = code


def query_server(url: str, mix: Path, instrument: str, k: int = 10, seconds: float = 8.0,
                 filters: dict | None = None, token: str | None = None, timeout_s: float = 30.0) -> dict:
    """Ask the server at `url` for stems fitting `mix`; returns the result as the WebSocket sends it."""
    parsed = urlparse(url)
    if parsed.scheme not in ("osc", "ws", "wss") or not parsed.hostname or not parsed.port:
        raise StemserverError(f"server address {url!r}: use osc://HOST:PORT or ws://HOST:PORT")
    if parsed.scheme == "osc":
        return _query_osc(parsed.hostname, parsed.port, mix, instrument, k, seconds, filters or {}, token, timeout_s)
    return asyncio.run(_query_ws(url, mix, instrument, k, seconds, filters or {}, token, timeout_s))


def _filter_pairs(filters: dict) -> list:
    pairs = []
    for key, value in filters.items():
        for item in value if isinstance(value, list) else [value]:
            pairs += [key, item]
    return pairs


def _query_osc(host, port, mix: Path, instrument, k, seconds, filters, token, timeout_s) -> dict:
    request_id = uuid.uuid4().hex[:12]
    auth = [token] if token else []
    messages = []
    if is_loopback(host):
        messages.append(osc_message(f"{PREFIX}/query/file", *auth, request_id, str(mix.absolute()), instrument, k,
                                    "seconds", float(seconds), *_filter_pairs(filters)))
    else:
        samples, _ = audio.load(mix)
        pcm = samples[-int(seconds * audio.SAMPLE_RATE):].astype("<f4").tobytes()
        chunks = [pcm[i : i + MAX_CHUNK_BYTES] for i in range(0, len(pcm), MAX_CHUNK_BYTES)]
        messages.append(osc_message(f"{PREFIX}/stream/begin", *auth, request_id, audio.SAMPLE_RATE, 1, "float32",
                                    instrument, k, *_filter_pairs(filters)))
        messages += [osc_message(f"{PREFIX}/stream/chunk", *auth, request_id, seq, chunk)
                     for seq, chunk in enumerate(chunks)]
        messages.append(osc_message(f"{PREFIX}/stream/end", *auth, request_id, len(chunks)))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        for i, datagram in enumerate(messages):
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
            for timed in OscPacket(data).messages:
                address, args = timed.message.address, list(timed.message.params)
                if not args or args[0] != request_id:
                    continue
                if address == f"{PREFIX}/error":
                    raise ServerError(args[1], args[2])
                if address == f"{PREFIX}/result":
                    match = dict(zip(RESULT_FIELDS, args[1:]))
                    match["loop"] = bool(match["loop"])
                    matches.append(match)
                elif address == f"{PREFIX}/done":
                    return {"id": request_id, "instrument": instrument, "matches": matches,
                            "timings_ms": {"total": args[2]}}


async def _query_ws(url, mix: Path, instrument, k, seconds, filters, token, timeout_s) -> dict:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    samples, _ = audio.load(mix)
    samples = samples[-int(seconds * audio.SAMPLE_RATE):]
    request_id = uuid.uuid4().hex[:12]
    header = {"type": "query", "id": request_id, "instrument": instrument, "k": k, "seconds": seconds,
              "filters": filters, "sample_rate": audio.SAMPLE_RATE, "channels": 1, "format": "float32"}
    headers = {"Authorization": f"Bearer {token}"} if token else None

    async def exchange() -> dict:
        async with connect(url, additional_headers=headers, max_size=None, compression=None) as connection:
            await connection.send(json.dumps(header))
            await connection.send(np.asarray(samples, "<f4").tobytes())
            while True:
                reply = json.loads(await connection.recv())
                if reply.get("id") != request_id:
                    continue
                if reply["type"] == "error":
                    raise ServerError(reply["code"], reply["message"])
                return reply

    try:
        return await asyncio.wait_for(exchange(), timeout_s)
    except (TimeoutError, asyncio.TimeoutError):
        raise ServerError("timeout", f"no answer from {url} within {timeout_s:.0f} s") from None
    except InvalidStatus as e:
        raise ServerError("unauthorized" if e.response.status_code == 401 else "refused",
                          f"{url} refused the connection (HTTP {e.response.status_code})") from None
    except (OSError, WebSocketException) as e:
        raise ServerError("unreachable", f"cannot reach {url} ({e}); is `stemserver serve` running?") from None
