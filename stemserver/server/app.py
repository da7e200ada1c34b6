"""`stemserver serve`: one asyncio process serving OSC, WebSocket and the browser page on one engine."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stemserver.config import Settings
from stemserver.engine import Engine
from stemserver.errors import ConfigError
from stemserver.server import logs
from stemserver.server.capture import LiveCapture
from stemserver.server.osc import OscServer
from stemserver.server.protocol import ProtocolError, is_loopback
from stemserver.server.service import Service
from stemserver.server.websocket import WebSocketServer

log = logging.getLogger("stemserver.server")
SHUTDOWN_GRACE_S = 10.0
UDP_RECEIVE_BUFFER = 4 << 20


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    osc_port: int = 9000
    ws_port: int = 8765
    token: str | None = None
    capture_device: str | None = None
    capture_seconds: float = 30.0
    max_queue: int = 16
    max_batch: int = 8
    # Web pages (browser origins, see security.py) that may open a WebSocket: --allow-origin, and the
    # origin of the server's own page once it has one. Native clients send no Origin and always may.
    allowed_origins: frozenset[str] = frozenset()


def check_security(options: ServerOptions) -> None:
    if options.token is not None and not options.token.strip():
        raise ConfigError("the token is empty or only spaces: give --token a secret clients can send")
    if not is_loopback(options.host) and not options.token:
        raise ConfigError(
            f"listening on {options.host} exposes the server to the network: pass --token SECRET too "
            "(clients then send it), or keep the default --host 127.0.0.1"
        )


def serve(checkpoint: Path, library: Path, settings: Settings, options: ServerOptions,
          on_ready: Callable[[str, str, str], None] | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code. `on_ready(osc_url, ws_url, page_url)` is called once
    both front ends listen."""
    check_security(options)
    logs.configure(log)
    engine = Engine(checkpoint, library, settings, preload_text=True)
    capture = None
    if options.capture_device is not None:
        device = int(options.capture_device) if options.capture_device.isdigit() else options.capture_device
        capture = LiveCapture(device, options.capture_seconds)
    service = Service(engine, capture, options.max_queue, options.max_batch)
    try:
        asyncio.run(_run(service, options, on_ready))
    finally:
        service.stop()  # _run stops it on a signal; this is for when _run failed
    return 0


async def _run(service: Service, options: ServerOptions,
               on_ready: Callable[[str, str, str], None] | None) -> None:
    loop = asyncio.get_running_loop()
    service.start()
    osc = OscServer(service, options.token)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: osc, local_addr=(options.host, options.osc_port))
    except OSError as e:
        raise ConfigError(f"cannot listen for OSC on {options.host}:{options.osc_port} ({e.strerror}): is another "
                          "stemserver running? Stop it, or pass --osc-port") from e
    # A streamed upload arrives as a burst of 8 KB datagrams; the default receive buffer (~200 KB
    # on Linux) overflows and drops chunks. Ask for 4 MB (the OS may cap it; clients should pace).
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    try:
        websocket = WebSocketServer(service, options.token, options.allowed_origins, is_loopback(options.host))
        server = await websocket.start(options.host, options.ws_port)
    except OSError as e:
        transport.close()
        raise ConfigError(f"cannot listen for WebSocket on {options.host}:{options.ws_port} ({e.strerror}): is "
                          "another stemserver running? Stop it, or pass --ws-port") from e
    osc_port = transport.get_extra_info("sockname")[1]
    ws_port = next(iter(server.sockets)).getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = service.status()
    log.info("model %s on %s; library: %d files", status["checkpoint"], status["device"], status["library_files"])
    # One line on stdout that scripts (and the tests) wait for; ports are the real ones (0 = any free port).
    # The page is served on the WebSocket's port (server/web.py).
    host = f"[{options.host}]" if ":" in options.host else options.host
    osc_url, ws_url, page_url = f"osc://{host}:{osc_port}", f"ws://{host}:{ws_port}", f"http://{host}:{ws_port}/"
    print(f"stemserver: ready {osc_url} {ws_url} {page_url}", flush=True)
    if on_ready is not None:
        on_ready(osc_url, ws_url, page_url)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            osc.expire_uploads()
    log.info("stopping: answering queries in flight, refusing new ones")
    websocket.stopping = True  # new connections get HTTP 503; open ones stay open for their replies
    osc.drop_uploads(ProtocolError("shutting_down", "the server is stopping: this upload will not be answered"))
    await loop.run_in_executor(None, service.stop)  # the batch in hand finishes; queued queries get shutting_down
    deadline = loop.time() + SHUTDOWN_GRACE_S
    while (pending := set(osc.tasks) | websocket.pending()) and loop.time() < deadline:
        await asyncio.wait(pending, timeout=deadline - loop.time())  # again for replies begun meanwhile
    await websocket.close()  # after their replies, connections close with 1001
    while transport.get_write_buffer_size() and loop.time() < deadline:  # OSC replies asyncio still holds
        await asyncio.sleep(0.01)
    transport.close()
    log.info("stopped")
