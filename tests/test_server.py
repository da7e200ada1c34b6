"""The server as a user runs it: a real subprocess on loopback, real OSC and WebSocket clients,
python-osc's and liblo's (an independent OSC implementation), and real signals."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import build_library, melody
from pythonosc.osc_packet import OscPacket
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from stemserver import __version__
from stemserver.index import build_index
from stemserver.library import Library
from stemserver.server.osc import osc_message
from stemserver.server.protocol import RESULT_FIELDS
from stemserver.server.websocket import MESSAGE_TYPES

RATE = 16_000
DOCS = Path(__file__).parent.parent / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def library(tmp_path_factory, identity_checkpoint: Path) -> Path:
    root = tmp_path_factory.mktemp("samples")
    for seed in range(4):
        soundfile.write(root / f"line{seed}.wav", melody(20.0, seed), RATE)
    return build_library(root, tmp_path_factory.mktemp("library"), identity_checkpoint)


def wait_for(condition, what: str, timeout_s: float = 30.0, every_s: float = 0.02):
    """Poll `condition` until it returns something true, and return that; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)
    return value


class Server:
    """`stemserver serve` in a subprocess on free ports."""

    def __init__(self, checkpoint: Path, library: Path, *extra: str):
        # The log goes to a file: a pipe nobody reads would fill up and block the server.
        self.log_file = tempfile.NamedTemporaryFile("w+", suffix=".log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stemserver", "serve", "--checkpoint", str(checkpoint), "--library", str(library),
             "--osc-port", "0", "--ws-port", "0", "--device", "cpu", "--threads", "1", *extra],
            stdout=subprocess.PIPE, stderr=self.log_file, text=True,
            env={**os.environ, "STEMSERVER_CONFIG": ""},
        )
        try:
            (line,) = LineReader(self.process.stdout).until(lambda line: True, timeout_s=120)
        except AssertionError:
            line = ""
        match = re.match(r"stemserver: ready osc://([\d.]+):(\d+) ws://([\d.]+):(\d+) (http://\S+)$", line.strip())
        if not match:
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.log}")
        self.osc = ("127.0.0.1", int(match.group(2)))
        self.ws = f"ws://127.0.0.1:{match.group(4)}"
        self.page = match.group(5)  # the browser page, on the WebSocket's port

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    @property
    def log(self) -> str:
        return Path(self.log_file.name).read_text()


@pytest.fixture(scope="module")
def server(identity_checkpoint: Path, library: Path):
    server = Server(identity_checkpoint, library)
    yield server
    assert server.stop() == 0


class OscClient:
    """A UDP socket that sends OSC and collects the replies for one request id."""

    def __init__(self, server_address):
        self.server = server_address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(30)

    def send(self, address: str, *args) -> None:
        self.sock.sendto(osc_message(address, *args), self.server)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def receive(self) -> tuple[str, list]:
        data, _ = self.sock.recvfrom(65536)
        message = OscPacket(data).messages[0].message
        return message.address, list(message.params)

    def until(self, request_id, last: str = "/stemserver/done") -> list[tuple[str, list]]:
        """Replies for `request_id` until `last` or an error."""
        replies = []
        while True:
            address, args = self.receive()
            if args and args[0] == request_id:
                replies.append((address, args))
                if address in (last, "/stemserver/error"):
                    return replies

    def drain(self, quiet_s: float) -> None:
        """Discard replies until none has come for `quiet_s`."""
        self.sock.settimeout(quiet_s)
        try:
            while True:
                self.sock.recvfrom(65536)
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(30)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def osc(server):
    client = OscClient(server.osc)
    yield client
    client.close()


def write_mix(path: Path, seed: int, shift_s: float, rate: int = RATE) -> np.ndarray:
    mix = melody(20.0, seed)[int(shift_s * RATE) : int((shift_s + 8) * RATE)]
    soundfile.write(path, mix, rate)
    return mix


def results_of(replies) -> list[list]:
    assert replies[-1][0] == "/stemserver/done", replies[-1]
    return [args for address, args in replies if address == "/stemserver/result"]


def test_ping_and_status(osc):
    osc.send("/stemserver/ping", "p1")
    address, args = osc.receive()
    assert address == "/stemserver/pong" and args[0] == "p1" and args[2] == 1
    osc.send("/stemserver/status", 7)
    address, args = osc.receive()
    status = dict(zip(args[1::2], args[2::2]))
    assert address == "/stemserver/status" and args[0] == 7
    assert status["library_files"] == 4 and status["device"] == "cpu"


def test_file_path_query_over_osc(osc, tmp_path: Path):
    write_mix(tmp_path / "mix.wav", seed=2, shift_s=4.8)
    osc.send("/stemserver/query/file", "q1", str(tmp_path / "mix.wav"), "bass", 4, "label", "line2")
    results = results_of(osc.until("q1"))
    assert len(results) == 1
    request_id, rank, path, score, offset_s, offset_at_end_s, alignment, duration, label, loop, *fit = results[0]
    assert (rank, Path(path).name, loop) == (1, "line2.wav", 0)
    assert offset_s == pytest.approx(4.8, abs=0.02) and offset_at_end_s == pytest.approx(12.8, abs=0.02)
    assert duration == pytest.approx(20.0)


def stream(osc: OscClient, request_id, samples: np.ndarray, order=None, drop=(), repeat=(), filters=("label", "line1")):
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    chunks = [pcm[i : i + 8192] for i in range(0, len(pcm), 8192)]
    osc.send("/stemserver/stream/begin", request_id, RATE, 1, "int16", "bass", 2, *filters)
    for seq in order if order is not None else range(len(chunks)):
        if seq not in drop:
            osc.send("/stemserver/stream/chunk", request_id, seq, chunks[seq])
        if seq in repeat:
            osc.send("/stemserver/stream/chunk", request_id, seq, chunks[seq])
    osc.send("/stemserver/stream/end", request_id, len(chunks))
    return len(chunks)


def test_streamed_chunks_out_of_order_give_the_same_answer(osc):
    mix = melody(20.0, 1)[int(6.4 * RATE) : int(14.4 * RATE)]
    count = len(mix) * 2 // 8192 + 1
    order = list(reversed(range(count)))
    stream(osc, "s1", mix, order=order)
    (result,) = results_of(osc.until("s1"))
    assert Path(result[2]).name == "line1.wav" and result[4] == pytest.approx(6.4, abs=0.02)


def test_a_missing_chunk_is_named(osc):
    stream(osc, "s2", melody(8.0, 3), drop=(3, 5))
    ((address, args),) = osc.until("s2")
    assert address == "/stemserver/error" and args[1] == "missing_chunks" and "3, 5" in args[2]


def test_a_duplicate_chunk_discards_the_upload(osc):
    stream(osc, "s3", melody(8.0, 3), repeat=(2,))
    replies = osc.until("s3")
    assert replies[0][1][1:3] == ["duplicate_chunk", replies[0][1][2]] and "chunk 2" in replies[0][1][2]
    address, args = osc.until("s3")[0]  # the end message then finds no upload
    assert args[1] == "unknown_upload"


def test_float_lists_for_clients_without_blobs(osc):
    mix = melody(20.0, 0)[int(3.2 * RATE) : int(5.6 * RATE)]  # 2.4 s: the minimum is 2 s
    osc.send("/stemserver/stream/begin", "f1", RATE, 1, "float32", "bass", 1, "label", "line0")
    pieces = [mix[i : i + 400] for i in range(0, len(mix), 400)]
    for seq, piece in enumerate(pieces):
        osc.send("/stemserver/stream/floats", "f1", seq, *[float(x) for x in piece])
    osc.send("/stemserver/stream/end", "f1", len(pieces))
    (result,) = results_of(osc.until("f1"))
    assert Path(result[2]).name == "line0.wav"


def test_a_registered_reply_port_receives_the_replies(server, osc):
    listener = OscClient(server.osc)
    try:
        osc.send("/stemserver/register", listener.sock.getsockname()[1])
        # the confirmation already goes to the registered port
        assert listener.receive() == ("/stemserver/registered", [listener.sock.getsockname()[1]])
        osc.send("/stemserver/ping", "r1")
        assert listener.receive()[0] == "/stemserver/pong"
    finally:
        osc.send("/stemserver/register", osc.sock.getsockname()[1])
        assert osc.receive()[0] == "/stemserver/registered"
        listener.close()


@pytest.mark.parametrize(
    "address, args, code",
    [
        ("/stemserver/query/file", ["e1", "/no/such/file.wav", "bass", 3], "bad_file"),
        ("/stemserver/query/file", ["e1", "/etc/passwd", "bass", 3], "bad_file"),
        ("/stemserver/query/file", ["e1", "relative.wav", "bass", 3], "bad_file"),
        ("/stemserver/query/file", ["e1", 42, "bass", 3], "bad_request"),
        ("/stemserver/query/file", ["e1"], "bad_request"),
        ("/stemserver/query/now", ["e1", "bass", 3], "no_capture"),
        ("/stemserver/stream/begin", ["e1", 16000, 1, "int24", "bass", 3], "bad_audio"),
        ("/stemserver/stream/chunk", ["e1", 0, b"\x00\x00"], "unknown_upload"),
        ("/stemserver/nope", ["e1"], "unknown_address"),
        ("/stemserver/query/file", ["e1", "/tmp/x.wav", "bass", 0], "bad_request"),
    ],
)
def test_malformed_messages_get_typed_errors(osc, address, args, code):
    osc.send(address, *args)
    reply_address, reply = osc.receive()
    assert reply_address == "/stemserver/error" and reply[0] == "e1" and reply[1] == code, reply


def test_nan_audio_and_unknown_instruments(osc, tmp_path: Path):
    samples = melody(8.0, 1)
    samples[100] = np.nan
    osc.send("/stemserver/stream/begin", "n1", RATE, 1, "float32", "bass", 1)
    pcm = samples.astype("<f4").tobytes()
    chunks = [pcm[i : i + 8192] for i in range(0, len(pcm), 8192)]
    for seq, chunk in enumerate(chunks):
        osc.send("/stemserver/stream/chunk", "n1", seq, chunk)
    osc.send("/stemserver/stream/end", "n1", len(chunks))
    ((_, args),) = osc.until("n1")
    assert args[1] == "bad_audio" and "NaN" in args[2]
    write_mix(tmp_path / "mix.wav", 0, 1.0)
    osc.send("/stemserver/query/file", "n2", str(tmp_path / "mix.wav"), "basoon", 2)
    ((_, args),) = osc.until("n2")
    assert args[1] == "unknown_instrument" and "'bass'" in args[2]


def test_garbage_datagrams_never_kill_the_server(osc):
    rng = np.random.default_rng(0)
    for i in range(5000):
        kind = i % 4
        if kind == 0:
            data = rng.bytes(int(rng.integers(1, 600)))
        elif kind == 1:
            data = b"/stemserver/query/file\x00\x00,sis\x00" + rng.bytes(int(rng.integers(0, 40)))
        elif kind == 2:
            data = osc_message("/stemserver/stream/chunk", "g", int(rng.integers(-5, 5)), rng.bytes(10))
        else:
            data = osc_message(rng.choice(["/stemserver/query/file", "/x", "/stemserver/register"]),
                               *[float(v) for v in rng.normal(size=int(rng.integers(0, 5)))])
        osc.send_raw(data)
        if i % 500 == 499:  # drain replies so the client's socket buffer never fills
            osc.drain(0.05)
    osc.send("/stemserver/ping", "alive")  # until() passes over the replies to the garbage still coming
    assert osc.until("alive", last="/stemserver/pong")[-1][0] == "/stemserver/pong"


def ws_query(url: str, header: dict, pcm: bytes | None = None, single_frame: bool = False) -> dict:
    with connect(url, max_size=None) as ws:
        if pcm is None:
            ws.send(json.dumps(header))
        elif single_frame:
            head = json.dumps(header).encode()
            ws.send(b"SSQ1" + struct.pack(">I", len(head)) + head + pcm)
        else:
            ws.send(json.dumps(header))
            ws.send(pcm)
        return json.loads(ws.recv(timeout=60))


@pytest.mark.parametrize("single_frame", [False, True])
def test_websocket_query_with_pcm(server, single_frame):
    mix = melody(20.0, 3)[int(9.6 * RATE) : int(17.6 * RATE)]
    stereo_44k = np.repeat(np.repeat(mix, 2)[:, None], 2, axis=1)  # 32 kHz stereo float32
    header = {"type": "query", "id": "w1", "instrument": "bass", "k": 2, "sample_rate": 32_000, "channels": 2,
              "format": "float32", "filters": {"label": "line3"}}
    reply = ws_query(server.ws, header, stereo_44k.astype("<f4").tobytes(), single_frame)
    assert reply["type"] == "result" and reply["id"] == "w1"
    (match,) = reply["matches"]
    assert Path(match["path"]).name == "line3.wav" and match["offset_s"] == pytest.approx(9.6, abs=0.16)
    timings = reply["timings_ms"]
    assert set(timings) == {"decode", "text", "front_end", "encoder", "predictor", "music", "search", "offsets",
                            "total"}
    # the server's whole time: resampling the 32 kHz stereo upload counts, as the engine's stages do
    assert timings["decode"] > 0
    assert timings["total"] == pytest.approx(sum(v for k, v in timings.items() if k != "total"), abs=0.01)


def test_websocket_control_messages_and_errors(server, tmp_path: Path):
    write_mix(tmp_path / "mix.flac", 0, 2.0)
    assert ws_query(server.ws, {"type": "ping", "id": 1})["type"] == "pong"
    assert "bass" in ws_query(server.ws, {"type": "instruments", "id": 2})["instruments"]
    assert ws_query(server.ws, {"type": "status", "id": 3})["library_files"] == 4
    file_reply = ws_query(server.ws, {"type": "query_file", "id": 4, "path": str(tmp_path / "mix.flac"),
                                      "instrument": "bass", "k": 4})
    assert len(file_reply["matches"]) == 4
    with connect(server.ws) as ws:
        for frame, code in [("{not json", "bad_json"), ("[1, 2]", "bad_json"),
                            (json.dumps({"type": "dance", "id": 5}), "unknown_address"),
                            (json.dumps({"type": "query", "id": 6, "instrument": "", "k": 2}), "bad_request"),
                            (json.dumps({"type": "query_now", "id": 7, "instrument": "bass"}), "no_capture")]:
            ws.send(frame)
            reply = json.loads(ws.recv(timeout=30))
            assert reply["type"] == "error" and reply["code"] == code, (frame, reply)
        ws.send(json.dumps({"type": "query", "id": 8, "instrument": "bass", "k": 1, "sample_rate": 16000,
                            "channels": 1, "format": "int16"}))
        ws.send(b"\x00" * 3)  # not a whole number of int16 frames
        assert json.loads(ws.recv(timeout=30))["code"] == "bad_audio"
        ws.send(b"\x01\x02\x03")  # a binary frame with no query before it
        assert json.loads(ws.recv(timeout=30))["code"] == "bad_request"


def test_deeply_nested_json_is_bad_json(server):
    with connect(server.ws) as ws:
        # 100 000 deep exhausts a recursive parser; 40 deep parses, but no message needs that
        for frame in ("[" * 100_000 + "]" * 100_000, '{"type": "ping", "id": ' + "[" * 40 + "]" * 40 + "}"):
            ws.send(frame)
            reply = json.loads(ws.recv(timeout=30))
            assert reply["code"] == "bad_json" and "nested more than 32 deep" in reply["message"], reply
        ws.send(json.dumps({"type": "ping", "id": {"a": [[{"b": [1]}]]}}))  # nesting that fits is fine
        assert json.loads(ws.recv(timeout=30))["type"] == "pong"


def test_an_integer_too_long_to_parse_is_bad_json(server):
    with connect(server.ws) as ws:  # Python refuses to parse integers of over 4300 digits (a ValueError)
        ws.send('{"type": "ping", "id": ' + "9" * 5000 + "}")
        reply = json.loads(ws.recv(timeout=30))
        assert reply["type"] == "error" and reply["code"] == "bad_json", reply


def test_a_query_followed_by_a_text_frame_is_answered_then_the_text_handled(server):
    with connect(server.ws) as ws:
        ws.send(json.dumps({"type": "query", "id": "q", "instrument": "bass", "k": 1, "sample_rate": 16000,
                            "channels": 1, "format": "int16"}))
        ws.send(json.dumps({"type": "ping", "id": "p"}))
        first, second = (json.loads(ws.recv(timeout=30)) for _ in range(2))
    assert (first["id"], first["code"]) == ("q", "bad_request") and "binary audio frame" in first["message"]
    assert (second["id"], second["type"]) == ("p", "pong")


@pytest.mark.parametrize("flags, message", [
    (["--osc-port", "70000"], "--osc-port: must be a port from 0 to 65535"),
    (["--ws-port", "-1"], "--ws-port: must be a port"),
    (["--queue", "0"], "--queue: must be at least 1"),
    (["--queue", "-1"], "--queue: must be at least 1"),
    (["--capture-seconds", "nan"], "--capture-seconds: must be a finite number"),
    (["--host", ""], "--host: must not be empty"),
    (["--allow-origin", "evil.example.com"], "--allow-origin: 'evil.example.com' is not an origin"),
])
def test_serve_refuses_bad_flags_as_usage_errors(flags, message):
    result = subprocess.run([sys.executable, "-m", "stemserver", "serve", *flags], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_an_oversized_websocket_frame_closes_only_that_connection(server):
    with connect(server.ws, max_size=None) as ws:
        ws.send(json.dumps({"type": "query", "id": 9, "instrument": "bass", "k": 1, "sample_rate": 48000,
                            "channels": 2, "format": "float32"}))
        with pytest.raises(ConnectionClosed):
            ws.send(b"\x00" * (12 * 1024 * 1024 + 1))
            ws.recv(timeout=30)
    assert ws_query(server.ws, {"type": "ping", "id": 10})["type"] == "pong"


def test_twenty_concurrent_clients_are_all_answered(identity_checkpoint: Path, library: Path, tmp_path: Path):
    server = Server(identity_checkpoint, library, "--queue", "4")
    try:
        write_mix(tmp_path / "mix.wav", 1, 3.2)

        def client(n: int) -> list[str]:
            osc = OscClient(server.osc)
            outcomes = []
            try:
                for i in range(10):
                    request_id = f"c{n}-{i}"
                    osc.send("/stemserver/query/file", request_id, str(tmp_path / "mix.wav"), "bass", 2)
                    address, args = osc.until(request_id)[-1]
                    outcomes.append("result" if address == "/stemserver/done" else args[1])
            finally:
                osc.close()
            return outcomes

        with ThreadPoolExecutor(20) as pool:
            outcomes = [o for result in pool.map(client, range(20)) for o in result]
        assert len(outcomes) == 200  # every query answered: none lost
        assert set(outcomes) <= {"result", "busy"} and outcomes.count("result") >= 20
    finally:
        assert server.stop() == 0


def test_busy_when_the_queue_is_full(identity_checkpoint: Path, library: Path, tmp_path: Path):
    server = Server(identity_checkpoint, library, "--queue", "1")
    try:
        write_mix(tmp_path / "mix.wav", 1, 3.2)
        osc = OscClient(server.osc)
        for i in range(30):  # sent at once: far more than one queued and one running
            osc.send("/stemserver/query/file", i, str(tmp_path / "mix.wav"), "bass", 2)
        outcomes = {}
        while len(outcomes) < 30:
            address, args = osc.receive()
            if address in ("/stemserver/done", "/stemserver/error"):
                outcomes[args[0]] = "result" if address == "/stemserver/done" else args[1]
        assert "busy" in outcomes.values() and "result" in outcomes.values()
        osc.close()
    finally:
        assert server.stop() == 0


def test_library_reload_while_queries_run(identity_checkpoint: Path, library: Path, tmp_path: Path):
    server = Server(identity_checkpoint, library)
    stop, errors, answered = threading.Event(), [], []
    write_mix(tmp_path / "mix.wav", 2, 1.6)

    def keep_querying():
        osc = OscClient(server.osc)
        i = 0
        while not stop.is_set():
            i += 1
            osc.send("/stemserver/query/file", i, str(tmp_path / "mix.wav"), "bass", 2)
            address, args = osc.until(i)[-1]
            (answered if address == "/stemserver/done" else errors).append(args)
        osc.close()

    thread = threading.Thread(target=keep_querying)
    thread.start()
    try:
        extra = tmp_path / "more"
        extra.mkdir()
        soundfile.write(extra / "new.wav", melody(10.0, 42), RATE)
        build_library(extra, library, identity_checkpoint)
        osc = OscClient(server.osc)
        osc.send("/stemserver/reload", "rl")
        (address, args), = osc.until("rl", last="/stemserver/reloaded")
        assert address == "/stemserver/reloaded" and args[2] == 5
        after_reload = len(answered)
        wait_for(lambda: len(answered) >= after_reload + 3, "queries answered from the new index")
        osc.close()
    finally:
        stop.set()
        thread.join()
        with Library(library) as lib:  # leave the shared library as the other tests expect it
            lib.remove([extra / "new.wav"])
            build_index(lib, progress=False)
        assert server.stop() == 0
    assert errors == [] and len(answered) > 0


@pytest.mark.slow
def test_a_token_is_required_off_loopback(identity_checkpoint: Path, library: Path):
    refused = subprocess.run([sys.executable, "-m", "stemserver", "serve", "--checkpoint", str(identity_checkpoint),
                              "--library", str(library), "--host", "0.0.0.0", "--osc-port", "0", "--ws-port", "0"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "STEMSERVER_CONFIG": ""})
    assert refused.returncode == 1 and "--token" in refused.stderr

    server = Server(identity_checkpoint, library, "--host", "0.0.0.0", "--token", "s3cret")
    try:
        osc = OscClient(server.osc)
        osc.send("/stemserver/ping", "t1")
        assert osc.receive()[1][1] == "unauthorized"
        osc.send("/stemserver/ping", "s3cret", "t2")
        assert osc.receive() == ("/stemserver/pong", ["t2", __version__, 1])
        with pytest.raises(InvalidStatus):
            ws_query(server.ws, {"type": "ping", "id": 1})
        assert ws_query(server.ws + "?token=s3cret", {"type": "ping", "id": 2})["type"] == "pong"
        osc.close()
    finally:
        assert server.stop() == 0


def test_sigterm_during_a_query_answers_it_and_exits_cleanly(identity_checkpoint: Path, library: Path,
                                                              tmp_path: Path):
    server = Server(identity_checkpoint, library)
    write_mix(tmp_path / "mix.wav", 0, 0.0)
    osc = OscClient(server.osc)
    for i in range(6):
        osc.send("/stemserver/query/file", i, str(tmp_path / "mix.wav"), "bass", 3)
    osc.send("/stemserver/ping", "in")  # datagrams from one socket are read in order: once this is
    replies = []                        # answered, the six queries have reached the server
    while not replies or replies[-1][0] != "/stemserver/pong":
        replies.append(osc.receive())
    server.process.send_signal(signal.SIGTERM)
    outcomes = {}
    while len(outcomes) < 6:
        address, args = replies.pop() if replies else osc.receive()  # every query is answered, never silence
        if address in ("/stemserver/done", "/stemserver/error"):
            outcomes[args[0]] = "result" if address == "/stemserver/done" else args[1]
    assert set(outcomes.values()) <= {"result", "shutting_down"}
    assert server.process.wait(timeout=30) == 0
    osc.close()


def test_the_cli_client_over_both_protocols(server, tmp_path: Path):
    write_mix(tmp_path / "mix.wav", 3, 4.8)
    for url in (f"osc://127.0.0.1:{server.osc[1]}", server.ws):
        result = subprocess.run([sys.executable, "-m", "stemserver", "query", str(tmp_path / "mix.wav"), "-i", "bass",
                                 "-k", "1", "--label", "line3", "--server", url, "--json"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        (match,) = json.loads(result.stdout)["matches"]
        assert Path(match["path"]).name == "line3.wav" and match["offset_s"] == pytest.approx(4.8, abs=0.02)
    failed = subprocess.run([sys.executable, "-m", "stemserver", "query", str(tmp_path / "mix.wav"), "-i", "zzz",
                             "--server", server.ws], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "unknown_instrument" in failed.stderr
    nobody = subprocess.run([sys.executable, "-m", "stemserver", "query", str(tmp_path / "mix.wav"), "-i", "bass",
                             "--server", "ws://127.0.0.1:9", "--timeout", "5"], capture_output=True, text=True)
    assert nobody.returncode == 1 and "is `stemserver serve` running" in nobody.stderr


def status(osc: OscClient) -> dict:
    osc.send("/stemserver/status", "st")
    (_, args), = osc.until("st", last="/stemserver/status")
    return dict(zip(args[1::2], args[2::2]))


def udp_port_bound(port: int) -> bool:
    """Whether some socket on this machine is bound to UDP `port`, read from the kernel's tables.
    Probing by binding the port ourselves would race the program we wait for: the bind it tries
    while our probe holds the port fails, and liblo then gives up ("cannot find free port")."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(row.split()[1].endswith(suffix) for row in rows if len(row.split()) > 1):
            return True
    return False


class LineReader:
    """A subprocess's output, read by a thread: a test waits for a line with a deadline instead of
    blocking for good on readline() when the line never comes."""

    def __init__(self, stream):
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)  # the output ended

    def until(self, predicate, timeout_s: float = 30.0) -> list[str]:
        """The lines read up to and including the first that satisfies `predicate`."""
        deadline, lines = time.monotonic() + timeout_s, []
        while not lines or not predicate(lines[-1]):
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout_s} s; read {lines}") from None
            if line is None:
                raise AssertionError(f"the output ended without such a line; read {lines}")
            lines.append(line)
        return lines


@pytest.mark.skipif(not shutil.which("oscsend") or not shutil.which("oscdump"), reason="liblo-tools not installed")
def test_liblo_tools_interoperate(server, osc, tmp_path: Path):
    """liblo is an independent OSC implementation: its messages must parse here, and ours there."""
    write_mix(tmp_path / "mix.wav", 1, 2.0)
    answered = status(osc)["answered"]
    port = str(server.osc[1])
    subprocess.run(["oscsend", "127.0.0.1", port, "/stemserver/query/file", "sssi", "lq", str(tmp_path / "mix.wav"),
                    "bass", "2"], check=True, timeout=30)
    wait_for(lambda: status(osc)["answered"] == answered + 1, "liblo's query to be parsed and answered", every_s=0.2)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dump_port = probe.getsockname()[1]
    dump = subprocess.Popen(["oscdump", "-L", str(dump_port)], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: udp_port_bound(dump_port) or dump.poll() is not None, "oscdump to listen")
        assert dump.poll() is None, "oscdump exited before it listened"
        dump_lines = LineReader(dump.stdout)
        osc.send("/stemserver/register", dump_port)
        lines = dump_lines.until(lambda line: "/stemserver/registered" in line)  # the confirmation goes there too
        osc.send("/stemserver/query/file", "ld", str(tmp_path / "mix.wav"), "bass", 2, "label", "line1")
        lines += dump_lines.until(lambda line: "/stemserver/done" in line)
    finally:
        dump.kill()
        osc.send("/stemserver/register", osc.sock.getsockname()[1])
        assert osc.receive()[0] == "/stemserver/registered"
    results = [line for line in lines if " /stemserver/result " in line]  # oscdump: "<timetag> <address> ..."
    assert len(results) == 1 and '"ld" 1 ' in results[0] and "line1.wav" in results[0]


def test_every_documented_websocket_type_is_handled(server):
    """Each type gets its own reply or a typed error about its arguments, never unknown_address."""
    with connect(server.ws) as ws:
        for kind in MESSAGE_TYPES:
            ws.send(json.dumps({"type": kind, "id": kind}))  # no instrument: queries are refused at once
            reply = json.loads(ws.recv(timeout=30))
            assert reply["id"] == kind and reply.get("code") != "unknown_address", reply


@pytest.fixture
def jack_server():
    """A JACK server with the dummy driver: a real audio device on a machine with no sound card."""
    if not shutil.which("jackd"):
        pytest.skip("jackd (jackd2) is not installed")
    sounddevice = pytest.importorskip("sounddevice")
    name = f"stemserver-test-{os.getpid()}"
    os.environ["JACK_DEFAULT_SERVER"] = name  # this process's PortAudio and the server's both use it
    jack = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["jack_lsp"], capture_output=True, env=os.environ).returncode == 0,
                 "jackd to start", timeout_s=20, every_s=0.2)
        sounddevice._terminate()  # PortAudio lists JACK devices only if the server ran when it initialised
        sounddevice._initialize()
        yield sounddevice
    finally:
        sounddevice._terminate()  # PortAudio must let go of JACK before JACK goes away (else it aborts)
        jack.terminate()
        jack.wait(timeout=10)
        del os.environ["JACK_DEFAULT_SERVER"]
        sounddevice._initialize()


@pytest.mark.slow
def test_live_capture_answers_a_now_query(jack_server, identity_checkpoint: Path, library: Path):
    line = melody(20.0, 2)
    at_48k = np.repeat(line, 3)  # the JACK dummy runs at 48 kHz only: the server must resample
    played = [0]

    def play(out, frames, time_info, status):
        index = (np.arange(frames) + played[0]) % len(at_48k)
        out[:, 0] = at_48k[index]
        played[0] += frames

    player = jack_server.OutputStream(device="system", samplerate=48_000, channels=1, callback=play)
    player.start()  # this process's JACK client is "PortAudio"; the server's gets another name
    server = Server(identity_checkpoint, library, "--capture", "system", "--capture-seconds", "10")
    try:
        ports = subprocess.run(["jack_lsp"], capture_output=True, text=True, env=os.environ).stdout.split()
        server_inputs = [p for p in ports if re.match(r"PortAudio-?\d*:in_\d", p) and not p.startswith("PortAudio:")]
        assert server_inputs, ports
        for port in server_inputs:
            subprocess.run(["jack_disconnect", "system:capture_1", port], env=os.environ)
            subprocess.run(["jack_connect", "PortAudio:out_0", port], check=True, env=os.environ)
        connected_at = played[0]
        wait_for(lambda: played[0] - connected_at >= 9 * 48_000, "8 s of the melody to reach the ring buffer",
                 timeout_s=60, every_s=0.1)
        osc = OscClient(server.osc)
        assert status(osc)["capture"] == "system"
        osc.send("/stemserver/query/now", "now", "bass", 1, "label", "line2")
        (result,) = results_of(osc.until("now"))
        assert Path(result[2]).name == "line2.wav"
        osc.close()
    finally:
        player.stop()
        player.close()
        assert server.stop() == 0


def test_the_query_window_can_be_shortened_over_osc(osc, tmp_path: Path):
    write_mix(tmp_path / "mix.wav", seed=2, shift_s=4.8)  # 8 s; the last 3 s start 9.8 s into the stem
    osc.send("/stemserver/query/file", "sec", str(tmp_path / "mix.wav"), "bass", 1, "seconds", 3.0, "label", "line2")
    (result,) = results_of(osc.until("sec"))
    assert result[4] == pytest.approx(9.8, abs=0.16) and result[5] == pytest.approx(12.8, abs=0.16)


@pytest.mark.slow
def test_a_port_in_use_is_a_clear_error(server, identity_checkpoint: Path, library: Path):
    for flag, port in (("--osc-port", server.osc[1]), ("--ws-port", int(server.ws.rsplit(":", 1)[1]))):
        other = "--ws-port" if flag == "--osc-port" else "--osc-port"
        command = [sys.executable, "-m", "stemserver", "serve", "--checkpoint", str(identity_checkpoint),
                   "--library", str(library), flag, str(port), other, "0"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "STEMSERVER_CONFIG": ""})
        assert result.returncode == 1, result.stderr
        assert "is another stemserver running" in result.stderr and "Traceback" not in result.stderr


def test_the_mix_tempo_and_key_travel_over_osc_and_come_back_in_done(osc, tmp_path: Path):
    write_mix(tmp_path / "mix.wav", seed=2, shift_s=4.8)
    osc.send("/stemserver/query/file", "t1", str(tmp_path / "mix.wav"), "bass", 2, "tempo", 124, "key", "F#m",
             "key_compatible", 1)
    replies = osc.until("t1")
    results = results_of(replies)
    assert len(results) >= 1 and all(len(args) == 1 + len(RESULT_FIELDS) for args in results)
    done = replies[-1][1]
    assert done[3] == pytest.approx(124.0) and done[4] == "F# minor"
    osc.send("/stemserver/query/file", "t2", str(tmp_path / "mix.wav"), "bass", 2, "tempo", 1000.0)
    address, args = osc.until("t2")[-1]
    assert (address, args[0], args[1]) == ("/stemserver/error", "t2", "bad_request") and "tempo" in args[2]


def test_the_mix_tempo_and_key_travel_over_websocket(server):
    mix = melody(20.0, 3)[int(9.6 * RATE) : int(17.6 * RATE)]
    header = {"type": "query", "id": "t3", "instrument": "bass", "k": 2, "sample_rate": RATE, "channels": 1,
              "format": "float32", "tempo": 96, "filters": {"max_stretch": 1.5}}
    reply = ws_query(server.ws, header, mix.astype("<f4").tobytes())
    assert reply["type"] == "result" and (reply["mix_tempo_bpm"], reply["mix_tempo_source"]) == (96.0, "client")
    assert reply["mix_key_source"] in ("estimated", None)  # not stated: the server's own estimate, if any
    assert all({"tempo_bpm", "key", "stretch", "transpose", "key_relation", "offset_beats"} <= set(m)
               for m in reply["matches"])
    bad = ws_query(server.ws, {**header, "id": "t4", "key": "H minor"}, mix.astype("<f4").tobytes())
    assert (bad["type"], bad["id"], bad["code"]) == ("error", "t4", "bad_request")
