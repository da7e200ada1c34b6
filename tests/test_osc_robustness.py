"""What an outsider's probe sent the server, over real loopback traffic: datagrams that hung python-osc's
parser, uploads that claimed or held more than they should, values that gave `internal` instead of
`bad_request`. Each answer is awaited with a deadline, and the server must still answer a ping after it."""

from __future__ import annotations

import json
import logging
import struct

import pytest
import soundfile
from conftest import build_library, melody
from test_server import RATE, OscClient, Server
from websockets.sync.client import connect

from stemserver.server.messages import BUNDLE_PREFIX, osc_message
from stemserver.server.protocol import MAX_ID_CHARS, ProtocolError, log_failure
from stemserver.server.uploads import MAX_PENDING_PER_HOST, Uploads

TIME_TAG = struct.pack(">Q", 1)  # "immediately"


@pytest.fixture(scope="module")
def server(tmp_path_factory, identity_checkpoint):
    samples = tmp_path_factory.mktemp("samples")
    soundfile.write(samples / "line0.wav", melody(20.0, 0), RATE)
    server = Server(identity_checkpoint, build_library(samples, tmp_path_factory.mktemp("library"),
                                                       identity_checkpoint))
    yield server
    assert server.stop() == 0


@pytest.fixture
def osc(server):
    client = OscClient(server.osc)
    client.sock.settimeout(10)  # the deadline for every answer: a server that hangs fails the test
    yield client
    client.close()


def bundle(*elements: bytes) -> bytes:
    return BUNDLE_PREFIX + TIME_TAG + b"".join(struct.pack(">i", len(e)) + e for e in elements)


def assert_alive(osc: OscClient) -> None:
    osc.send("/stemserver/ping", "alive")
    assert osc.until("alive", last="/stemserver/pong")[-1][0] == "/stemserver/pong"


PING = osc_message("/stemserver/ping", "in-bundle")


@pytest.mark.parametrize("datagram", [
    BUNDLE_PREFIX + TIME_TAG + struct.pack(">i", -4),  # the 20 bytes that looped python-osc 1.10.2 forever
    BUNDLE_PREFIX + TIME_TAG + struct.pack(">i", 0),
    BUNDLE_PREFIX + TIME_TAG + struct.pack(">i", 4096) + PING,  # larger than the datagram
    BUNDLE_PREFIX + TIME_TAG + struct.pack(">i", len(PING) - 2) + PING,  # not a multiple of 4
    BUNDLE_PREFIX + TIME_TAG + struct.pack(">i", len(PING)) + PING + b"\x00\x00",  # a size cut off
    BUNDLE_PREFIX + TIME_TAG,  # no element
    bundle(b"abcd"),  # neither a message nor a bundle (python-osc skipped it silently)
    bundle(bundle(bundle(bundle(bundle(PING))))),  # nested 5 deep
    bundle(*[PING] * 40, bundle(*[PING] * 40)),  # 80 pings: one datagram must not buy 80 replies
], ids=["negative", "zero", "too-large", "unaligned", "cut-off", "empty", "not-a-message", "too-deep", "too-many"])
def test_bad_bundles_get_bad_request_and_the_server_keeps_answering(osc, datagram):
    osc.send_raw(datagram)
    address, args = osc.receive()
    assert (address, args[:2]) == ("/stemserver/error", ["", "bad_request"]), (address, args)
    assert_alive(osc)


def test_good_bundles_are_answered(osc):
    osc.send_raw(bundle(PING, bundle(osc_message("/stemserver/ping", "nested"))))
    replies = {tuple(osc.receive()[1][:1]) for _ in range(2)}
    assert replies == {("in-bundle",), ("nested",)}


def test_an_end_count_of_two_billion_costs_what_was_sent(osc):
    osc.send("/stemserver/stream/begin", "big", RATE, 1, "float32", "bass", 1)
    osc.send("/stemserver/stream/chunk", "big", 0, b"\x00" * 64)
    osc.send("/stemserver/stream/end", "big", 2**31 - 1)
    ((address, args),) = osc.until("big")
    assert args[1] == "missing_chunks" and "missing chunks 1, 2, 3" in args[2] and "(of 2147483647)" in args[2]
    assert_alive(osc)


def test_uploads_in_progress_are_capped_per_host_not_per_port(server):
    """Each client socket is a new source port; the cap counts the host."""
    clients = [OscClient(server.osc) for _ in range(3)]
    try:
        for n in range(MAX_PENDING_PER_HOST):  # spread over two ports: all accepted (begin has no reply)
            clients[n % 2].send("/stemserver/stream/begin", f"u{n}", RATE, 1, "float32", "bass", 1)
        clients[2].sock.settimeout(10)
        clients[2].send("/stemserver/stream/begin", "one-more", RATE, 1, "float32", "bass", 1)
        ((address, args),) = clients[2].until("one-more")
        assert args[1] == "too_large" and "from this host" in args[2]
    finally:
        for n in range(MAX_PENDING_PER_HOST):  # end them, so that later tests may upload
            clients[n % 2].send("/stemserver/stream/end", f"u{n}", 1)
            assert clients[n % 2].until(f"u{n}")[-1][1][1] == "missing_chunks"
        for client in clients:
            client.close()


@pytest.mark.parametrize("k", [float("nan"), float("inf"), float("-inf"), 1e30, 2.5])
def test_a_bad_k_is_a_bad_request(osc, k):
    osc.send("/stemserver/query/file", "k", "/tmp/mix.wav", "bass", k)
    ((address, args),) = osc.until("k")
    assert args[1] == "bad_request" and "k must be a whole number" in args[2], args


def test_an_overlong_request_id_is_a_bad_request_not_an_oversized_reply(osc):
    osc.send("/stemserver/query/file", "x" * 8000, "/no/such.wav", "bass", 1)
    address, args = osc.receive()
    assert (address, args[:2]) == ("/stemserver/error", ["", "bad_request"]) and str(MAX_ID_CHARS) in args[2]
    osc.send("/stemserver/query/file", "x" * MAX_ID_CHARS, "/no/such.wav", "bass", 1)
    ((_, args),) = osc.until("x" * MAX_ID_CHARS)
    assert args[1] == "bad_file"


@pytest.mark.parametrize("message", [
    {"type": "query_file", "id": 1, "path": "/tmp/a\u0000b.wav", "instrument": "bass", "k": 1},
    {"type": "query_now", "id": 2, "instrument": "bass", "k": float("nan")},
    {"type": "query_now", "id": 3, "instrument": "bass", "k": float("inf")},
    {"type": "query_now", "id": 4, "instrument": "bass", "k": 1, "seconds": float("nan")},
    {"type": "query_now", "id": 5, "instrument": "bass", "k": 1, "filters": {"min_duration": float("nan")}},
])
def test_websocket_values_out_of_range_are_bad_requests(server, message):
    with connect(server.ws) as ws:
        ws.send(json.dumps(message))  # Python's json writes NaN and Infinity, as many clients do
        reply = json.loads(ws.recv(timeout=30))
    assert (reply["type"], reply["id"], reply["code"]) == ("error", message["id"], "bad_request"), reply


def test_only_unexpected_errors_are_logged_with_a_traceback(caplog):
    caplog.set_level(logging.WARNING, "stemserver.server")
    try:
        raise ZeroDivisionError("a bug")
    except ZeroDivisionError as e:
        assert log_failure(("127.0.0.1", 1), "r1", e).code == "internal"
    assert log_failure(("127.0.0.1", 1), "r2", ProtocolError("bad_request", "k must be ...")).code == "bad_request"
    bug, refused = caplog.records
    assert bug.levelno == logging.ERROR and bug.exc_info[0] is ZeroDivisionError
    assert refused.levelno == logging.WARNING and refused.exc_info is None


def test_upload_memory_is_bounded_per_host_and_in_total():
    uploads = Uploads(max_host_bytes=3000, max_total_bytes=5000)
    a, a2, b, c = ("10.0.0.1", 1), ("10.0.0.1", 2), ("10.0.0.2", 1), ("10.0.0.3", 1)
    for client in (a, a2, b, c):
        uploads.begin(client, "u", RATE, 1, "float32", None)
    uploads.chunk(a, "u", 0, b"\x00" * 2000)
    with pytest.raises(ProtocolError, match="from this host hold over") as refused:
        uploads.chunk(a2, "u", 0, b"\x00" * 1200)  # another port of the same host
    assert refused.value.code == "too_large" and (a2, "u") not in uploads.pending
    uploads.chunk(b, "u", 0, b"\x00" * 2800)
    with pytest.raises(ProtocolError, match="uploads in progress hold over"):
        uploads.chunk(c, "u", 0, b"\x00" * 400)  # 5200 bytes in all
    assert (uploads.total_bytes, dict(uploads.host_bytes)) == (4800, {"10.0.0.1": 2000, "10.0.0.2": 2800})
    with pytest.raises(ProtocolError, match="missing chunks 1, 2"):
        uploads.end(a, "u", 2**62)  # the count costs nothing: only what was received is looked at
    assert (uploads.total_bytes, dict(uploads.host_bytes)) == (2800, {"10.0.0.2": 2800})
    samples, rate, _ = uploads.end(b, "u", 1)
    assert samples.shape == (700, 1) and rate == RATE and uploads.total_bytes == 0 and not uploads.host_uploads
