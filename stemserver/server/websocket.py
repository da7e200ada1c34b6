"""WebSocket: the front end for browsers, Node, and scripts that want JSON.

Text frames are JSON objects with a "type" and an "id"; a query with audio is either that JSON
followed by one binary frame of PCM, or one binary frame holding both (b"SSQ1", a 4-byte
big-endian header length, the JSON header, then the PCM). Replies are JSON text frames. Messages
up to 30 s of 48 kHz stereo float32 are accepted; compression is off (audio does not compress,
and deflate would cost time on every frame).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import weakref
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.protocol import State

from stemserver.server.messages import result_message
from stemserver.server.protocol import (
    MAX_UPLOAD_SECONDS,
    PREVIEW_OPTIONS,
    PreviewRequest,
    ProtocolError,
    check_pcm_format,
    checked_audio_path,
    is_loopback,
    log_failure,
    pcm_to_samples,
    preview_request,
    query_options,
)
from stemserver.server.security import host_refusal, origin_refusal, parse_origin, token_matches, token_presented
from stemserver.server.service import AudioSource, Service
from stemserver.server.web import AUDIO_PREFIX, Reply, audio_reply, fetch_refusal, http_date, page_reply, text_reply
from stemserver.window import QUERY_SECONDS

log = logging.getLogger("stemserver.server")
MAGIC = b"SSQ1"
MESSAGE_TYPES = ("ping", "status", "instruments", "reload", "query", "query_file", "query_now", "preview", "library",
                 "reindex")
MAX_MESSAGE_BYTES = int(MAX_UPLOAD_SECONDS * 48_000 * 2 * 4) + 64 * 1024
MAX_JSON_DEPTH = 32  # lists and objects within lists and objects; a message needs 3
TOO_DEEP = f"lists and objects nested more than {MAX_JSON_DEPTH} deep"


class WebSocketServer:
    def __init__(self, service: Service, token: str | None = None, allowed_origins: frozenset[str] = frozenset(),
                 loopback: bool = True):
        self.service = service
        self.token = token
        self.allowed_origins = frozenset(parse_origin(origin) for origin in allowed_origins)
        self.loopback = loopback  # listening on loopback only: Host must then be a loopback name
        self.server: Server | None = None
        self.stopping = False  # set at shutdown: new connections are refused, open ones get their replies
        self.tasks: dict[ServerConnection, set[asyncio.Task]] = {}  # each connection's replies in flight
        self.connections: weakref.WeakSet[ServerConnection] = weakref.WeakSet()  # handshakes in progress too

    async def start(self, host: str, port: int) -> Server:
        self.server = await serve(self._handle, host, port, max_size=MAX_MESSAGE_BYTES, compression=None,
                                  process_request=self._admit, create_connection=self._connection)
        self.allowed_origins |= page_origins(host, next(iter(self.server.sockets)).getsockname()[1])
        return self.server

    def pending(self) -> set[asyncio.Task]:
        """The replies in flight, on every connection."""
        return {task for tasks in self.tasks.values() for task in tasks}

    async def close(self) -> None:
        """Close every connection (1001) once its replies are out (see `pending`). A connection that has sent no
        request yet (a browser opens spare ones) is dropped: the server would otherwise wait its handshake
        timeout for each."""
        self.stopping = True
        idle = [c for c in self.connections if c.protocol.state is State.CONNECTING and getattr(c, "transport", None)]
        for connection in idle:
            connection.transport.abort()
        if idle:
            log.info("dropped %d connection(s) that had sent no request", len(idle))
        self.server.close()
        await self.server.wait_closed()

    def _connection(self, *args, **kwargs) -> ServerConnection:
        """Every connection from its first byte (websockets tracks them only once their handshake is done)."""
        connection = ServerConnection(*args, **kwargs)
        self.connections.add(connection)
        return connection

    async def _admit(self, connection: ServerConnection, request):
        """Serve the page and its audio (plain HTTP), and refuse, for those and for WebSocket handshakes alike,
        other web sites (Origin, Sec-Fetch-Site), DNS rebinding (Host, on loopback) and, with a token, who lacks it."""
        if self.stopping:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "the server is stopping\n")
        headers = request.headers
        upgrade = "websocket" in headers.get("Upgrade", "").lower()
        path, _, query = request.path.partition("?")
        what = "WebSocket connection" if upgrade else f"HTTP request for {path[:100]!r}"
        reason = origin_refusal(headers.get_all("Origin"), self.allowed_origins)
        if reason is None and self.loopback:
            reason = host_refusal(headers.get_all("Host"))
        if reason is None and not upgrade:
            reason = fetch_refusal(headers.get_all("Sec-Fetch-Site"))
        if reason is not None:
            log.warning("%s: %s refused: %s", connection.remote_address, what, reason)
            return connection.respond(HTTPStatus.FORBIDDEN, reason + "\n")
        if not upgrade and not path.startswith(AUDIO_PREFIX):
            return _response(page_reply(path))  # the page holds no secret: it asks for the token itself
        if self.token is not None:
            given = token_presented(headers.get("Authorization"), query)
            if not token_matches(given, self.token):
                log.warning("%s: %s refused: missing or wrong token", connection.remote_address, what)
                return connection.respond(HTTPStatus.UNAUTHORIZED, "a token is required: send Authorization: "
                                                                   "Bearer SECRET, or ?token=SECRET\n")
        if not upgrade:
            return _response(await self._audio(path.removeprefix(AUDIO_PREFIX), headers.get("Range")))
        return None

    async def _audio(self, file_id: str, range_header: str | None) -> Reply:
        path = self.service.audio_path(file_id)
        if path is None:
            return text_reply(HTTPStatus.NOT_FOUND, "no audio by that id: use a file_id the server gave")
        try:
            return await asyncio.get_running_loop().run_in_executor(None, audio_reply, path, range_header)
        except OSError as e:
            log.warning("cannot serve %s: %s", path, e)
            return text_reply(HTTPStatus.NOT_FOUND, f"that file cannot be read now ({e.strerror}): index the "
                                                    "library again")

    async def _handle(self, connection: ServerConnection) -> None:
        pending: dict | None = None  # a JSON query waiting for its binary frame
        self.tasks[connection] = set()
        try:
            async for frame in connection:
                request_id = None
                try:
                    if isinstance(frame, str):
                        if pending is not None:
                            unanswered, pending = pending, None
                            await self._fail(connection, unanswered.get("id"), ProtocolError(
                                "bad_request", "a 'query' message must be followed by its binary audio frame, "
                                               "not by a text frame"))
                        message = _parse_json(frame)
                        request_id = message.get("id")
                        pending = await self._text(connection, message)
                    else:
                        header, pcm = (pending, frame) if pending is not None else _split_binary(frame)
                        pending = None
                        request_id = header.get("id")
                        if header.get("type") == "preview":
                            self._spawn(connection, header, self._preview(connection, request_id,
                                                                          _preview_request(header), header, pcm))
                        else:
                            self._spawn(connection, header, self._query_pcm(connection, header, pcm))
                except Exception as e:
                    pending = None
                    await self._fail(connection, request_id, e)
        except ConnectionClosed as e:
            if e.rcvd is not None and e.rcvd.code == 1009:
                log.warning("%s: closed a connection that sent a frame over %d bytes", connection.remote_address,
                            MAX_MESSAGE_BYTES)
        finally:
            # Nobody is left to read these replies: cancelling them drops their queries from the queue.
            for task in self.tasks.pop(connection):
                task.cancel()

    async def _text(self, connection: ServerConnection, message: dict) -> dict | None:
        """Answer a JSON message; a 'query' is returned, to be completed by the next binary frame."""
        kind, request_id = message.get("type"), message.get("id")
        if kind == "ping":
            await self._send(connection, {"type": "pong", "id": request_id, **self.service.ping()})
        elif kind == "status":
            await self._send(connection, {"type": "status", "id": request_id, **self.service.status()})
        elif kind == "instruments":
            await self._send(connection, {"type": "instruments", "id": request_id,
                                          "instruments": self.service.instruments()})
        elif kind == "reload":
            self._spawn(connection, message, self._reload(connection, request_id))
        elif kind == "query":  # audio follows in the next binary frame
            _options(message)
            return message
        elif kind == "query_file":
            source = AudioSource(path=checked_audio_path(message.get("path")))
            self._spawn(connection, message, self._query(connection, request_id, source, _options(message)))
        elif kind == "query_now":
            self._spawn(connection, message, self._query(connection, request_id, AudioSource(live=True),
                                                         _options(message)))
        elif kind == "preview":
            request = _preview_request(message)
            if request.mix is None:  # the mix's audio follows in the next binary frame
                check_pcm_format(message.get("sample_rate"), message.get("channels", 1), message.get("format",
                                                                                                     "float32"))
                return message
            self._spawn(connection, message, self._preview(connection, request_id, request))
        elif kind == "library":
            self._spawn(connection, message, self._library(connection, request_id))
        elif kind == "reindex":
            self._spawn(connection, message, self._reindex(connection, request_id))
        else:
            raise ProtocolError("unknown_address", f"unknown message type {kind!r}: one of {', '.join(MESSAGE_TYPES)}")
        return None

    def _spawn(self, connection: ServerConnection, message: dict, coroutine) -> None:
        """Run a reply in the background, so one connection can have several queries in flight. The task
        is kept (the loop holds tasks only weakly) until it is done."""
        request_id = message.get("id") if isinstance(message, dict) else None

        async def guarded():
            try:
                await coroutine
            except Exception as e:
                await self._fail(connection, request_id, e)

        task = asyncio.ensure_future(guarded())
        tasks = self.tasks[connection]
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _query_pcm(self, connection, header: dict, pcm: bytes) -> None:
        samples = pcm_to_samples(pcm, header.get("sample_rate"), header.get("channels", 1),
                                 header.get("format", "float32"))
        source = AudioSource(samples=samples, sample_rate=header["sample_rate"])
        await self._query(connection, header.get("id"), source, _options(header))

    async def _query(self, connection, request_id, source: AudioSource, options) -> None:
        result = await self.service.query(source, options)
        await self._send(connection, result_message(request_id, result))

    async def _reload(self, connection, request_id) -> None:
        await self._send(connection, {"type": "reloaded", "id": request_id, **await self.service.reload()})

    async def _preview(self, connection, request_id, request, header: dict | None = None, pcm: bytes = b"") -> None:
        mix = None
        if header is not None:
            mix = AudioSource(samples=pcm_to_samples(pcm, header.get("sample_rate"), header.get("channels", 1),
                                                     header.get("format", "float32")),
                              sample_rate=header["sample_rate"])
        await self._send(connection, {"type": "preview", "id": request_id,
                                      **await self.service.preview(request, mix)})

    async def _library(self, connection, request_id) -> None:
        await self._send(connection, {"type": "library", "id": request_id, **await self.service.library()})

    async def _reindex(self, connection, request_id) -> None:
        sent: list[asyncio.Future] = []  # the progress messages, each sent as it comes, all before the last

        def progress(step: dict) -> None:
            sent.append(asyncio.ensure_future(self._send(connection, {"type": "progress", "id": request_id, **step})))

        result = await self.service.reindex(progress)
        await asyncio.gather(*sent)
        await self._send(connection, {"type": "reindexed", "id": request_id, **result})

    async def _fail(self, connection, request_id, error: Exception) -> None:
        error = log_failure(connection.remote_address, request_id, error)
        await self._send(connection, {"type": "error", "id": request_id, "code": error.code,
                                      "message": error.message})

    @staticmethod
    async def _send(connection: ServerConnection, message: dict) -> None:
        try:
            await connection.send(json.dumps(message))
        except ConnectionClosed:
            pass  # the client left; nothing to tell it


def page_origins(host: str, port: int) -> frozenset[str]:
    """The origins of the server's own page: the names a browser may reach it by."""
    names = {f"[{host}]" if ":" in host else host}
    if is_loopback(host):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return frozenset(parse_origin(f"http://{name}:{port}") for name in names)


def _response(reply: Reply) -> Response:
    headers = Headers([("Date", http_date()), ("Connection", "close"), ("Content-Length", str(len(reply.body))),
                       *reply.headers])
    return Response(reply.status.value, reply.status.phrase, headers, reply.body)


def _preview_request(message: dict) -> PreviewRequest:
    """A preview message's request; without a `mix` path but with a `sample_rate`, the mix's PCM follows."""
    return preview_request(message.get("mix"), message.get("stem"), message.get("offset", 0.0),
                           message.get("stretch", 1.0), message.get("transpose", 0),
                           {key: message[key] for key in PREVIEW_OPTIONS if key in message},
                           mix_sent="sample_rate" in message)


def _options(message: dict):
    return query_options(message.get("instrument"), message.get("k", 10), message.get("seconds", QUERY_SECONDS),
                         message.get("filters"), message.get("tempo"), message.get("key"))


def _parse_json(text: str | bytes) -> dict:
    try:
        message = json.loads(text)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, and an integer of over 4300 digits
        raise ProtocolError("bad_json", f"not JSON: {e}") from None
    except RecursionError:
        raise ProtocolError("bad_json", TOO_DEEP) from None
    if _nesting(message, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ProtocolError("bad_json", TOO_DEEP)
    if not isinstance(message, dict):
        raise ProtocolError("bad_json", "a message must be a JSON object with a 'type'")
    return message


def _nesting(value, limit: int) -> int:
    """How deeply lists and objects nest in `value`, counted up to limit + 1 (without recursion: that is
    what a deep message would exhaust)."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            break
        depth += 1
        level = [child for v in containers for child in (v.values() if isinstance(v, dict) else v)]
    return depth


def _split_binary(frame: bytes) -> tuple[dict, bytes]:
    """A self-contained binary query: MAGIC, header length (uint32, big-endian), JSON header, PCM."""
    if len(frame) < 8 or frame[:4] != MAGIC:
        raise ProtocolError("bad_request", "a binary frame must follow a 'query' message, or start with SSQ1")
    (length,) = struct.unpack(">I", frame[4:8])
    return _parse_json(frame[8 : 8 + length]), frame[8 + length :]
