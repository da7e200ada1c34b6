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
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from stemserver.server.messages import result_message
from stemserver.server.protocol import (
    MAX_UPLOAD_SECONDS,
    ProtocolError,
    checked_audio_path,
    log_failure,
    pcm_to_samples,
    query_options,
)
from stemserver.server.service import AudioSource, Service

log = logging.getLogger("stemserver.server")
MAGIC = b"SSQ1"
MESSAGE_TYPES = ("ping", "status", "instruments", "reload", "query", "query_file", "query_now")
MAX_MESSAGE_BYTES = int(MAX_UPLOAD_SECONDS * 48_000 * 2 * 4) + 64 * 1024


class WebSocketServer:
    def __init__(self, service: Service, token: str | None = None):
        self.service = service
        self.token = token

    async def start(self, host: str, port: int):
        return await serve(self._handle, host, port, max_size=MAX_MESSAGE_BYTES, compression=None,
                           process_request=self._authorize)

    def _authorize(self, connection: ServerConnection, request):
        """With a token, a connection must present it: Authorization: Bearer T, or ?token=T."""
        if self.token is None:
            return None
        header = request.headers.get("Authorization", "")
        query = request.path.partition("?")[2]
        given = header.removeprefix("Bearer ").strip() if header else dict(
            part.partition("=")[::2] for part in query.split("&") if part).get("token")
        if given != self.token:
            log.warning("%s: WebSocket connection refused: missing or wrong token", connection.remote_address)
            return connection.respond(HTTPStatus.UNAUTHORIZED, "a token is required\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        pending: dict | None = None  # a JSON query waiting for its binary frame
        try:
            async for frame in connection:
                request_id = None
                try:
                    if isinstance(frame, str):
                        message = _parse_json(frame)
                        request_id = message.get("id")
                        pending = await self._text(connection, message)
                    else:
                        header, pcm = (pending, frame) if pending is not None else _split_binary(frame)
                        pending = None
                        request_id = header.get("id")
                        self._spawn(connection, header, self._query_pcm(connection, header, pcm))
                except Exception as e:
                    pending = None
                    await self._fail(connection, request_id, e)
        except ConnectionClosed as e:
            if e.rcvd is not None and e.rcvd.code == 1009:
                log.warning("%s: closed a connection that sent a frame over %d bytes", connection.remote_address,
                            MAX_MESSAGE_BYTES)

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
        else:
            raise ProtocolError("unknown_address", f"unknown message type {kind!r}: one of {', '.join(MESSAGE_TYPES)}")
        return None

    def _spawn(self, connection: ServerConnection, message: dict, coroutine) -> None:
        """Run a reply in the background, so one connection can have several queries in flight."""
        request_id = message.get("id") if isinstance(message, dict) else None

        async def guarded():
            try:
                await coroutine
            except Exception as e:
                await self._fail(connection, request_id, e)

        asyncio.ensure_future(guarded())

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


def _options(message: dict):
    return query_options(message.get("instrument"), message.get("k", 10), message.get("seconds", 8.0),
                         message.get("filters"))


def _parse_json(text: str | bytes) -> dict:
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError("bad_json", f"not JSON: {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_json", "a message must be a JSON object with a 'type'")
    return message


def _split_binary(frame: bytes) -> tuple[dict, bytes]:
    """A self-contained binary query: MAGIC, header length (uint32, big-endian), JSON header, PCM."""
    if len(frame) < 8 or frame[:4] != MAGIC:
        raise ProtocolError("bad_request", "a binary frame must follow a 'query' message, or start with SSQ1")
    (length,) = struct.unpack(">I", frame[4:8])
    return _parse_json(frame[8 : 8 + length]), frame[8 + length :]
