"""`stemserver serve`: one asyncio process serving OSC and WebSocket on one engine."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stemserver.config import Settings
from stemserver.engine import Engine
from stemserver.errors import ConfigError
from stemserver.server.capture import LiveCapture
from stemserver.server.osc import OscServer
from stemserver.server.protocol import is_loopback
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


def check_security(options: ServerOptions) -> None:
    if not is_loopback(options.host) and not options.token:
        raise ConfigError(
            f"listening on {options.host} exposes the server to the network: pass --token SECRET too "
            "(clients then send it), or keep the default --host 127.0.0.1"
        )


def serve(checkpoint: Path, library: Path, settings: Settings, options: ServerOptions,
          on_ready: Callable[[str, str], None] | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code. `on_ready(osc_url, ws_url)` is called once
    both front ends listen."""
    check_security(options)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    engine = Engine(checkpoint, library, settings, preload_text=True)
    capture = None
    if options.capture_device is not None:
        device = int(options.capture_device) if options.capture_device.isdigit() else options.capture_device
        capture = LiveCapture(device, options.capture_seconds)
    service = Service(engine, capture, options.max_queue, options.max_batch)
    try:
        asyncio.run(_run(service, options, on_ready))
    finally:
        service.stop()
    return 0


async def _run(service: Service, options: ServerOptions, on_ready: Callable[[str, str], None] | None) -> None:
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
        websocket = await WebSocketServer(service, options.token).start(options.host, options.ws_port)
    except OSError as e:
        transport.close()
        raise ConfigError(f"cannot listen for WebSocket on {options.host}:{options.ws_port} ({e.strerror}): is "
                          "another stemserver running? Stop it, or pass --ws-port") from e
    osc_port = transport.get_extra_info("sockname")[1]
    ws_port = next(iter(websocket.sockets)).getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = service.status()
    log.info("model %s on %s; library: %d files", status["checkpoint"], status["device"], status["library_files"])
    # One line on stdout that scripts (and the tests) wait for; ports are the real ones (0 = any free port).
    osc_url, ws_url = f"osc://{options.host}:{osc_port}", f"ws://{options.host}:{ws_port}"
    print(f"stemserver: ready {osc_url} {ws_url}", flush=True)
    if on_ready is not None:
        on_ready(osc_url, ws_url)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            osc.expire_uploads()
    log.info("stopping: answering queries in flight, refusing new ones")
    websocket.close()
    await loop.run_in_executor(None, service.worker.stop)  # queued queries get shutting_down
    pending = set(osc.tasks)
    if pending:
        await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_S)
    await asyncio.sleep(0.05)  # let the last replies leave
    await websocket.wait_closed()
    transport.close()
    log.info("stopped")
