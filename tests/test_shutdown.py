"""Stopping the server, and clients that stop listening: every query still waiting is answered
(`shutting_down`), nothing is computed for a client that left, and the worker stops once."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import threading
import weakref
from pathlib import Path

import pytest
import soundfile
from conftest import melody
from test_server import RATE, OscClient, Server, library, status, wait_for, write_mix  # noqa: F401  (a fixture)
from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from stemserver.config import Settings
from stemserver.server import app
from stemserver.server.websocket import WebSocketServer
from stemserver.server.worker import Worker


def exited(server: Server, timeout_s: float = 60.0) -> int:
    return server.process.wait(timeout=timeout_s)


def query_file(request_id, path: Path, k: int = 2) -> str:
    return json.dumps({"type": "query_file", "id": request_id, "path": str(path), "instrument": "bass", "k": k})


def test_sigterm_answers_every_queued_websocket_query_before_closing(identity_checkpoint: Path, library: Path,  # noqa: F811
                                                                      tmp_path: Path):
    server = Server(identity_checkpoint, library, "--queue", "64")
    write_mix(tmp_path / "mix.wav", 1, 3.2)
    with connect(server.ws, proxy=None) as ws:
        for i in range(64):
            ws.send(query_file(i, tmp_path / "mix.wav"))
        ws.send(json.dumps({"type": "ping", "id": "in"}))  # once it is answered, every query was queued
        replies = []
        while not replies or replies[-1].get("type") != "pong":
            replies.append(json.loads(ws.recv(timeout=60)))
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                replies.append(json.loads(ws.recv(timeout=60)))
    outcomes = {r["id"]: r.get("code", r["type"]) for r in replies if r["id"] != "in"}
    assert sorted(outcomes) == list(range(64))  # every query answered before the connection closed
    # the batch in the worker's hands (if it had taken one yet: not always, on a loaded machine) is answered,
    # the rest is told; 64 queries cannot all be answered between the pong and the signal
    assert set(outcomes.values()) <= {"result", "shutting_down"} and "shutting_down" in outcomes.values(), outcomes
    assert closed.value.rcvd.code == 1001
    assert exited(server) == 0


def test_sigterm_tells_an_unfinished_osc_upload(identity_checkpoint: Path, library: Path):  # noqa: F811
    server = Server(identity_checkpoint, library)
    osc = OscClient(server.osc)
    try:
        osc.send("/stemserver/stream/begin", "up", RATE, 1, "int16", "bass", 1)
        osc.send("/stemserver/stream/chunk", "up", 0, b"\x00\x01" * 1000)
        assert status(osc)["version"]  # answered after the begin and the chunk: the upload is in progress
        server.process.send_signal(signal.SIGTERM)
        assert exited(server) == 0
        osc.sock.settimeout(0)  # the server is gone: whatever it said is already in our buffer
        replies = []
        while True:
            try:
                replies.append(osc.receive())
            except BlockingIOError:
                break
    finally:
        osc.close()
    assert [args[:2] for address, args in replies if address == "/stemserver/error"] == [["up", "shutting_down"]]


def test_queries_of_a_client_that_left_are_not_computed(identity_checkpoint: Path, library: Path,  # noqa: F811
                                                        tmp_path: Path):
    server = Server(identity_checkpoint, library, "--queue", "16")
    osc = OscClient(server.osc)
    try:
        write_mix(tmp_path / "mix.wav", 1, 3.2)
        before = status(osc)["answered"]
        with connect(server.ws, proxy=None) as ws:
            for i in range(16):  # one runs, fifteen wait; then the client leaves without reading
                ws.send(query_file(i, tmp_path / "mix.wav"))
        wait_for(lambda: status(osc)["queue_depth"] == 0, "the queue to empty")
        with connect(server.ws, proxy=None) as ws:  # runs after whatever the worker still had in hand
            ws.send(query_file("after", tmp_path / "mix.wav"))
            assert json.loads(ws.recv(timeout=60))["type"] == "result"
        computed = status(osc)["answered"] - before - 1
        assert computed <= 8, f"{computed} of the 16 queries of a client that left were computed"  # one batch at most
    finally:
        osc.close()
        assert server.stop() == 0


def test_the_worker_is_stopped_once(identity_checkpoint: Path, library: Path, monkeypatch):  # noqa: F811
    stops = []
    stop = Worker.stop

    def counted(worker):
        stops.append(worker)
        stop(worker)

    monkeypatch.setattr(Worker, "stop", counted)
    options = app.ServerOptions(osc_port=0, ws_port=0)
    code = app.serve(identity_checkpoint, library, Settings(device="cpu", threads=1), options,
                     on_ready=lambda osc_url, ws_url, page_url: os.kill(os.getpid(), signal.SIGTERM))
    assert code == 0 and len(stops) == 1


class ForgetfulService:
    """Queries wait on futures that only the waiting task holds, as asyncio allows: nothing but the
    front end's own reference keeps such a task alive."""

    def __init__(self):
        self.waiting: list[weakref.ref] = []

    async def query(self, source, options) -> dict:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(weakref.ref(future))
        return await future


def test_websocket_query_tasks_are_kept_until_they_answer(tmp_path: Path):
    soundfile.write(tmp_path / "mix.wav", melody(4.0, 0), RATE)
    service = ForgetfulService()

    async def scenario() -> dict:
        front = WebSocketServer(service)
        server = await front.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
        async with connect_async(url, proxy=None) as ws:
            await ws.send(query_file("kept", tmp_path / "mix.wav"))
            for _ in range(1000):
                if service.waiting:
                    break
                await asyncio.sleep(0.01)
            gc.collect()  # a task nobody references is collected here, mid-flight
            future = service.waiting[0]()
            assert future is not None, "the query's task was garbage-collected before it answered"
            future.set_result({"matches": [], "timings_ms": {}})
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        await front.close()
        return reply

    assert asyncio.run(scenario()) == {"type": "result", "id": "kept", "matches": [], "timings_ms": {}}


def test_a_query_withdrawn_while_queued_is_never_computed():
    answered, started, release = [], threading.Event(), threading.Event()

    def answer(payloads):
        if payloads == ["first"]:  # hold the worker until the others are queued and one withdrawn
            started.set()
            release.wait(30)
        answered.extend(payloads)
        return payloads

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        worker = Worker(answer, max_queue=2)
        worker.start()
        first = worker.submit("first")
        assert await loop.run_in_executor(None, started.wait, 30)
        withdrawn, kept = worker.submit("withdrawn"), worker.submit("kept")
        withdrawn.cancel()
        assert worker.depth == 1
        room = worker.submit("room")  # the withdrawn query no longer takes a place in the queue
        release.set()
        assert [await asyncio.wait_for(f, 30) for f in (first, kept, room)] == ["first", "kept", "room"]
        await loop.run_in_executor(None, worker.stop)

    asyncio.run(scenario())
    assert answered == ["first", "kept", "room"]
