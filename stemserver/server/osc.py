"""OSC over UDP: the front end for Max, REAPER, and anything that speaks OSC.

Every datagram is parsed here (stemserver.server.messages checks bundles, then python-osc parses;
our own asyncio protocol, so that a malformed datagram gets an error reply instead of vanishing or
hanging the server). Replies go to the sender's address, or to the port a client registered with
/stemserver/register. Every reply datagram stays under 8 KB: results are sent one message per stem,
then a done message.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from stemserver.server.messages import PREFIX, osc_message, parse_datagram, result_replies
from stemserver.server.protocol import (
    MAX_CHUNK_BYTES,
    ProtocolError,
    check_request_id,
    checked_audio_path,
    log_failure,
    preview_request,
    query_options,
)
from stemserver.server.service import AudioSource, Service
from stemserver.server.uploads import Uploads
from stemserver.window import QUERY_SECONDS

log = logging.getLogger("stemserver.server")
MAX_REPLY_BYTES = 8192


def _options_from_pairs(instrument, k, pairs: list, seconds: float = QUERY_SECONDS):
    """Query options from the fixed arguments and the trailing key/value pairs: filters
    ("label" "bass" "min_duration" 2.0 "exclude" "/a.wav" "key_compatible" 1 ...), "seconds" S, and
    the mix's "tempo" BPM and "key" K."""
    if len(pairs) % 2:
        raise ProtocolError("bad_request", "options come as key/value pairs after k")
    filters: dict = {}
    stated: dict = {}
    for key, value in zip(pairs[::2], pairs[1::2]):
        if key == "seconds":
            seconds = value
        elif key in ("tempo", "key"):
            stated[key] = value
        elif key == "exclude":
            filters.setdefault("exclude", []).append(value)
        elif key == "key_compatible" and value in (0, 1) and not isinstance(value, float):
            filters[key] = bool(value)  # OSC has no booleans that every client can send: 0 or 1
        else:
            filters[key] = value
    return query_options(instrument, k, seconds, filters, **stated)


class OscServer(asyncio.DatagramProtocol):
    """Handles every /stemserver/... address; see docs/protocol.md for the contract."""

    def __init__(self, service: Service, token: str | None = None, upload_timeout_s: float = 30.0):
        self.service = service
        self.token = token
        self.uploads = Uploads(upload_timeout_s)
        self.reply_ports: dict[tuple, int] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task] = set()
        self.handlers = {
            f"{PREFIX}/ping": self._ping,
            f"{PREFIX}/register": self._register,
            f"{PREFIX}/status": self._status,
            f"{PREFIX}/instruments": self._instruments,
            f"{PREFIX}/reload": self._reload,
            f"{PREFIX}/query/file": self._query_file,
            f"{PREFIX}/query/now": self._query_now,
            f"{PREFIX}/stream/begin": self._stream_begin,
            f"{PREFIX}/stream/chunk": self._stream_chunk,
            f"{PREFIX}/stream/floats": self._stream_floats,
            f"{PREFIX}/stream/end": self._stream_end,
            f"{PREFIX}/preview": self._preview,
        }

    # -- transport ----------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, sender) -> None:
        try:
            messages = parse_datagram(data)
        except ProtocolError as e:
            log.warning("%s: unparseable datagram of %d bytes (%s)", sender, len(data), e.message)
            self.send(sender, f"{PREFIX}/error", "", e.code, e.message)
            return
        for address, args in messages:
            self._dispatch(address, args, sender)

    def _dispatch(self, address: str, args: list, sender) -> None:
        request_id = args[1 if self.token else 0] if len(args) > (1 if self.token else 0) else ""
        if not isinstance(request_id, (str, int)):
            request_id = ""
        try:
            check_request_id(request_id)
        except ProtocolError as e:
            self._fail(sender, "", e)  # an id that long would not fit the reply that carries it back
            return
        try:
            if self.token is not None:
                if not args or args[0] != self.token:
                    raise ProtocolError("unauthorized", "this server needs its token as every message's first argument")
                args = args[1:]
            handler = self.handlers.get(address)
            if handler is None:
                raise ProtocolError("unknown_address", f"no such address {address!r}; see docs/protocol.md")
            result = handler(args, sender)
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(self._guard(result, sender, request_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        except Exception as e:
            self._fail(sender, request_id, e)

    async def _guard(self, coroutine, sender, request_id) -> None:
        try:
            await coroutine
        except Exception as e:
            self._fail(sender, request_id, e)

    def _fail(self, sender, request_id, error: Exception) -> None:
        error = log_failure(sender, request_id, error)
        self.send(sender, f"{PREFIX}/error", request_id, error.code, error.message[:4000])

    def send(self, client, address: str, *args) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        host, port = client[0], self.reply_ports.get(client, client[1])
        datagram = osc_message(address, *args)
        if len(datagram) > MAX_REPLY_BYTES:  # never send what a macOS client would drop
            log.error("%s: a %s reply of %d bytes is over %d; sent an internal error instead", client, address,
                      len(datagram), MAX_REPLY_BYTES)
            datagram = osc_message(f"{PREFIX}/error", args[0] if args else "", "internal", "reply too large")
        self.transport.sendto(datagram, (host, port))

    def expire_uploads(self) -> None:
        for client, request_id in self.uploads.expire():
            self._fail(client, request_id, ProtocolError("upload_timeout", "the upload was not finished in time"))

    def drop_uploads(self, error: ProtocolError) -> None:
        """Drop every upload in progress, telling its client why (at shutdown)."""
        for client, request_id in self.uploads.drop_all():
            self._fail(client, request_id, error)

    # -- handlers: args exclude the token; they raise ProtocolError on bad arguments ----------

    @staticmethod
    def _args(args: list, types: tuple, name: str, minimum: int | None = None) -> list:
        minimum = len(types) if minimum is None else minimum
        if len(args) < minimum:
            raise ProtocolError("bad_request", f"{name} needs {minimum} arguments, got {len(args)}")
        for i, (value, kind) in enumerate(zip(args, types)):
            if isinstance(value, bool) or not isinstance(value, kind):
                shown = repr(value) if len(repr(value)) < 40 else f"a {type(value).__name__}"
                raise ProtocolError("bad_request", f"{name}: argument {i + 1} has the wrong type ({shown})")
        return args[: len(types)]

    def _ping(self, args, sender):
        request_id = args[0] if args else ""
        info = self.service.ping()
        self.send(sender, f"{PREFIX}/pong", request_id, info["version"], info["protocol"])

    def _register(self, args, sender):
        (port,) = self._args(args[:1], (int,), "/stemserver/register")
        if not 1 <= port <= 65535:
            raise ProtocolError("bad_request", f"reply port {port} is not a UDP port")
        self.reply_ports[sender] = port
        self.send(sender, f"{PREFIX}/registered", port)

    def _status(self, args, sender):
        request_id = args[0] if args else ""
        status = self.service.status()
        self.send(sender, f"{PREFIX}/status", request_id, *[arg for kv in status.items() for arg in
                                                            (kv[0], "" if kv[1] is None else kv[1])])

    def _instruments(self, args, sender):
        request_id = args[0] if args else ""
        names = self.service.instruments()
        for start in range(0, len(names), 50):  # a few hundred names do not fit one datagram
            self.send(sender, f"{PREFIX}/instruments", request_id, *names[start : start + 50])
        self.send(sender, f"{PREFIX}/instruments/done", request_id, len(names))

    async def _reload(self, args, sender):
        request_id = args[0] if args else ""
        info = await self.service.reload()
        self.send(sender, f"{PREFIX}/reloaded", request_id, info["generation"], info["files"])

    def _query_file(self, args, sender):
        request_id, path, instrument, k = self._args(args, ((str, int), str, str, (int, float)),
                                                     "/stemserver/query/file")
        options = _options_from_pairs(instrument, k, args[4:])
        return self._answer(sender, request_id, AudioSource(path=checked_audio_path(path)), options)

    def _query_now(self, args, sender):
        request_id, instrument, k = self._args(args, ((str, int), str, (int, float)), "/stemserver/query/now")
        seconds = QUERY_SECONDS
        if len(args) > 3 and not isinstance(args[3], str):
            seconds, args = args[3], args[:3] + args[4:]
        options = _options_from_pairs(instrument, k, args[3:], seconds)
        return self._answer(sender, request_id, AudioSource(live=True), options)

    def _stream_begin(self, args, sender):
        request_id, rate, channels, sample_format, instrument, k = self._args(
            args, ((str, int), int, int, str, str, (int, float)), "/stemserver/stream/begin")
        options = _options_from_pairs(instrument, k, args[6:])
        self.uploads.begin(sender, request_id, rate, channels, sample_format, options)

    def _stream_chunk(self, args, sender):
        request_id, seq, data = self._args(args, ((str, int), int, bytes), "/stemserver/stream/chunk")
        if len(data) > MAX_CHUNK_BYTES:
            raise ProtocolError("too_large", f"chunk of {len(data)} bytes; chunks are at most {MAX_CHUNK_BYTES}")
        self.uploads.chunk(sender, request_id, seq, data)

    def _stream_floats(self, args, sender):
        request_id, seq = self._args(args[:2], ((str, int), int), "/stemserver/stream/floats")
        values = args[2:]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ProtocolError("bad_request", "/stemserver/stream/floats: samples must be numbers")
        upload = self.uploads.pending.get((sender, request_id))
        if upload is not None and upload.sample_format != "float32":
            raise ProtocolError("bad_audio", "float lists need an upload begun with format float32")
        self.uploads.chunk(sender, request_id, seq, np.asarray(values, "<f4").tobytes())

    def _stream_end(self, args, sender):
        request_id, count = self._args(args, ((str, int), int), "/stemserver/stream/end")
        samples, rate, options = self.uploads.end(sender, request_id, count)
        return self._answer(sender, request_id, AudioSource(samples=samples, sample_rate=rate), options)

    def _preview(self, args, sender):
        request_id, mix, stem, offset, stretch, transpose = self._args(
            args, ((str, int), str, str, (int, float), (int, float), (int, float)), "/stemserver/preview")
        pairs = args[6:]
        if len(pairs) % 2 or not all(isinstance(key, str) for key in pairs[::2]):
            raise ProtocolError("bad_request", "options come as key/value pairs after transpose")
        options = dict(zip(pairs[::2], pairs[1::2]))
        return self._render(sender, request_id, preview_request(mix, stem, offset, stretch, transpose, options))

    async def _render(self, sender, request_id, request) -> None:
        done = await self.service.preview(request)
        self.send(sender, f"{PREFIX}/preview/done", request_id, done["path"], done["duration_s"])

    async def _answer(self, sender, request_id, source: AudioSource, options) -> None:
        result = await self.service.query(source, options)
        for address, args in result_replies(request_id, result):
            self.send(sender, address, *args)
