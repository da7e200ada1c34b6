"""The Max patch (max_patch/) as far as a machine without Max can check it.

- The .maxpat: Max's JSON structure, unique ids, every patch line between existing inlets and outlets,
  and every box's inlet/outlet counts equal to what Max gives that object (the table below).
- The OSC addresses the patch and its JS send and route are those of docs/protocol.md, with the
  arguments in the documented order.
- The JS helpers run under Node with a stand-in for Max's js API (max_patch/test/max_js_harness.js)
  and must produce exactly the expected messages.
- A session against the real server: the patch's messages, encoded as [udpsend] encodes Max
  messages, and the server's replies delivered as the patch's [udpreceive] -> [route] -> [prepend]
  deliver them to the client.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from conftest import melody
from pythonosc.osc_packet import OscPacket
from test_server import Server, library  # noqa: F401  (library is a fixture used below)

from stemserver.server.osc import osc_message

ROOT = Path(__file__).parent.parent
MAX_DIR = ROOT / "max_patch"
PATCH_FILE = MAX_DIR / "stemserver.maxpat"
CLIENT_JS = MAX_DIR / "stemserver_client.js"
STREAM_JS = MAX_DIR / "stemserver_stream.js"
HARNESS = MAX_DIR / "test" / "max_js_harness.js"
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()

# ---------------------------------------------------------------------------------------------
# What Max gives each object: (inlets, outlets) for the box text's arguments. From the Max 8
# reference (docs.cycling74.com: inlets per channel argument for record~, n + 1 outlets for route,
# one outlet per argument for trigger...) and checked against the counts Max itself writes into
# public .maxpat files. Note Max 8's route has a right inlet per argument (n + 1 inlets).


def _plain(args: list[str]) -> list[str]:
    """The arguments before the first @attribute."""
    return args[: next((i for i, a in enumerate(args) if a.startswith("@")), len(args))]


MAX_OBJECTS = {
    "adc~": lambda a: (1, len(a) or 2),                  # one signal outlet per channel argument
    "plugin~": lambda a: (2, 2),
    "plugout~": lambda a: (2, 2),
    "dac~": lambda a: (len(a) or 2, 0),
    "selector~": lambda a: (int(a[0]) + 1, 1),           # control inlet + one per input
    "gate~": lambda a: (2, int(a[0])),                    # control + signal in, one outlet per argument
    "record~": lambda a: (int(a[1]) + 2 if len(a) > 1 else 3, 1),  # a signal inlet per channel + start + end
    "buffer~": lambda a: (1, 2),
    "groove~": lambda a: (3, (int(a[1]) if len(a) > 1 else 1) + 1),  # channels + sync outlet
    "sig~": lambda a: (1, 1),
    "*~": lambda a: (2, 1),
    "snapshot~": lambda a: (2, 1),
    "udpsend": lambda a: (1, 0),
    "udpreceive": lambda a: (1, 1),
    "route": lambda a: (len(a) + 1, len(a) + 1),
    "prepend": lambda a: (1, 1),
    "t": lambda a: (1, len(a)),
    "loadmess": lambda a: (1, 1),
    "metro": lambda a: (2, 1),
    "live.thisdevice": lambda a: (1, 3),
    "transport": lambda a: (2, 9),                        # bars beats units resolution tempo timesig state ticks name
    "s": lambda a: (1, 0),
    "r": lambda a: (0, 1),
    "+": lambda a: (2, 1),
    "*": lambda a: (2, 1),
}
MAX_UI = {  # maxclass -> (inlets, outlets)
    "comment": (1, 0), "message": (2, 1), "textedit": (1, 4), "number": (1, 2), "flonum": (1, 2),
    "umenu": (1, 3), "textbutton": (1, 3), "toggle": (1, 1), "panel": (1, 0), "ezdac~": (2, 0),
}
SIGNAL_IN = {"selector~", "gate~", "record~", "groove~", "*~", "snapshot~", "dac~", "plugout~"}
CONTROLS = {"textedit", "number", "flonum", "umenu", "textbutton", "toggle", "panel", "ezdac~"}
DEVICE_HEIGHT = 169  # a Max for Live device view


def js_counts(filename: str) -> tuple[int, int]:
    source = (MAX_DIR / filename).read_text()
    return (int(re.search(r"^inlets = (\d+);", source, re.M).group(1)),
            int(re.search(r"^outlets = (\d+);", source, re.M).group(1)))


def expected_io(box: dict) -> tuple[int, int]:
    if box["maxclass"] != "newobj":
        return MAX_UI[box["maxclass"]]
    name, *args = box["text"].split()
    if name == "js":
        return js_counts(args[0])
    return MAX_OBJECTS[name](_plain(args))


# ---------------------------------------------------------------------------------------------
# The patch


@pytest.fixture(scope="module")
def patch() -> dict:
    return json.loads(PATCH_FILE.read_text())["patcher"]


def boxes_of(patch: dict) -> dict[str, dict]:
    return {entry["box"]["id"]: entry["box"] for entry in patch["boxes"]}


def lines_of(patch: dict) -> list[tuple[str, int, str, int]]:
    return [(*entry["patchline"]["source"], *entry["patchline"]["destination"]) for entry in patch["lines"]]


def find_box(patch: dict, text: str) -> dict:
    (box,) = [b for b in boxes_of(patch).values() if b.get("text") == text]
    return box


def targets(patch: dict, box_id: str, outlet: int) -> list[dict]:
    boxes = boxes_of(patch)
    return [boxes[d] for s, o, d, _ in lines_of(patch) if s == box_id and o == outlet]


def client_box(patch: dict) -> dict:
    return find_box(patch, "js stemserver_client.js")


def test_the_patch_is_a_max_patcher(patch):
    assert patch["fileversion"] == 1 and patch["classnamespace"] == "box"
    assert patch["appversion"]["major"] >= 8 and len(patch["rect"]) == 4
    assert patch["openinpresentation"] == 1
    for entry in patch["boxes"]:
        box = entry["box"]
        assert set(entry) == {"box"} and {"id", "maxclass", "numinlets", "numoutlets", "patching_rect"} <= set(box)
        assert len(box["patching_rect"]) == 4
        assert len(box.get("outlettype", [])) == box["numoutlets"], box
    for entry in patch["lines"]:
        assert set(entry) == {"patchline"} and set(entry["patchline"]) >= {"source", "destination"}


def test_box_ids_are_unique_and_lines_join_existing_inlets_and_outlets(patch):
    ids = [entry["box"]["id"] for entry in patch["boxes"]]
    assert len(ids) == len(set(ids))
    boxes = boxes_of(patch)
    for source, outlet, destination, inlet in lines_of(patch):
        assert source in boxes and destination in boxes
        assert 0 <= outlet < boxes[source]["numoutlets"], (boxes[source].get("text"), outlet)
        assert 0 <= inlet < boxes[destination]["numinlets"], (boxes[destination].get("text"), inlet)
    assert len(set(lines_of(patch))) == len(patch["lines"])  # no line twice


def test_every_box_has_the_inlets_and_outlets_max_gives_it(patch):
    for box in boxes_of(patch).values():
        assert (box["numinlets"], box["numoutlets"]) == expected_io(box), box.get("text", box["maxclass"])
        if box["maxclass"] == "newobj" and box["text"].startswith("js "):
            assert box["saved_object_attributes"]["filename"] == box["text"].split()[1]
            assert (MAX_DIR / box["text"].split()[1]).is_file()


def test_signals_only_go_into_signal_objects(patch):
    boxes = boxes_of(patch)
    for source, outlet, destination, _ in lines_of(patch):
        if boxes[source].get("outlettype", [""])[outlet] == "signal":
            name = boxes[destination].get("text", boxes[destination]["maxclass"]).split()[0]
            assert name in SIGNAL_IN, (boxes[source]["text"], name)


def test_the_patch_is_what_its_generator_writes(patch):
    spec = importlib.util.spec_from_file_location("build_maxpat", MAX_DIR / "tools" / "build_maxpat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build()["patcher"] == patch, "run: python max_patch/tools/build_maxpat.py"


def test_the_device_view_shows_every_control_inside_a_live_device(patch):
    for box in boxes_of(patch).values():
        if box["maxclass"] in CONTROLS:
            assert box.get("presentation") == 1, box
        if box.get("presentation"):
            x, y, w, h = box["presentation_rect"]
            assert x >= 0 and y >= 0 and x + w <= patch["devicewidth"] and y + h <= DEVICE_HEIGHT, box
    shown = [b for b in boxes_of(patch).values() if b.get("presentation")]
    labels = {b["text"] for b in shown if b["maxclass"] == "comment"}
    assert {"Instrument", "k", "Server", "Reply", "Token", "Stream"} <= labels
    assert {b.get("text") for b in shown if b["maxclass"] == "textbutton"} == {"Find", "Play", "Stop"}


def test_the_patch_is_explained_and_reads_top_to_bottom(patch):
    boxes = boxes_of(patch)
    sections = [b["text"] for b in boxes.values() if b["maxclass"] == "comment" and re.match(r"\d\. [A-Z]", b["text"])]
    assert [s.split(".")[0] for s in sections] == [str(i) for i in range(1, 8)]
    client = client_box(patch)["id"]
    for source, _, destination, _ in lines_of(patch):
        if destination != client:  # only news for the client comes back up
            assert boxes[source]["patching_rect"][1] < boxes[destination]["patching_rect"][1], \
                (boxes[source].get("text"), boxes[destination].get("text"))


# ---------------------------------------------------------------------------------------------
# The contract: addresses and argument order


def osc_section() -> str:
    return PROTOCOL.split("## OSC\n", 1)[1].split("\n## ", 1)[0]


def client_addresses() -> set[str]:
    return set(re.findall(r"^\| `(/stemserver/[^`]+)` \|", osc_section(), re.M))


def documented_arguments(address: str) -> list[str]:
    """Argument names of a reply as the protocol documents it, e.g. ['id', 'rank', 'path', ...]."""
    match = re.search(re.escape(address) + r"(?:` \| `| +)(id[^`\n|]*|port[^`\n|]*)", osc_section())
    return [word.split(":")[0] for word in match.group(1).split()]


def addresses_in(text: str) -> set[str]:
    return set(re.findall(r"/stemserver/[a-z/]+[a-z]", text))


def test_every_address_sent_or_routed_is_in_the_protocol(patch):
    js = CLIENT_JS.read_text() + STREAM_JS.read_text()
    sent = addresses_in(js)
    assert sent == {"/stemserver/register", "/stemserver/ping", "/stemserver/query/file",
                    "/stemserver/stream/begin", "/stemserver/stream/floats", "/stemserver/stream/end"}
    assert sent <= client_addresses()
    routed = find_box(patch, "udpreceive 7401")
    (route,) = targets(patch, routed["id"], 0)
    replies = route["text"].split()[1:]
    assert set(replies) == {"/stemserver/result", "/stemserver/done", "/stemserver/error", "/stemserver/pong",
                            "/stemserver/registered"}
    for address in replies:
        assert documented_arguments(address), f"{address} is not documented as a reply"
    texts = " ".join(b.get("text", "") for b in boxes_of(patch).values() if b["maxclass"] != "comment")
    assert addresses_in(texts) == set(replies)


def js_parameters(function: str) -> list[str]:
    match = re.search(r"^function " + function + r"\(([^)]*)\)", CLIENT_JS.read_text(), re.M)
    return [re.sub(r"([A-Z])", r"_\1", p.strip()).lower() for p in match.group(1).split(",") if p.strip()]


@pytest.mark.parametrize("address, function, synonyms", [
    ("/stemserver/result", "result", {"alignment": "alignment_score", "duration": "duration_s"}),
    ("/stemserver/done", "done", {}),
    ("/stemserver/error", "servererror", {}),
    ("/stemserver/pong", "pong", {}),
    ("/stemserver/registered", "registered", {}),
])
def test_the_client_reads_each_reply_in_the_documented_order(patch, address, function, synonyms):
    """What the patch's [prepend] calls each reply, and the argument positions the client unpacks."""
    (route,) = targets(patch, find_box(patch, "udpreceive 7401")["id"], 0)
    outlet = route["text"].split()[1:].index(address)
    (prepend,) = targets(patch, route["id"], outlet)
    assert prepend["text"] == f"prepend {function}"
    assert targets(patch, prepend["id"], 0) == [client_box(patch)]
    assert [synonyms.get(p, p) for p in js_parameters(function)] == documented_arguments(address)


def emitted_destinations(source: str) -> set[str]:
    return set(re.findall(r'emit\(\["([a-z]+)"', source)) | set(re.findall(r'show\("([a-z]+)"', source))


def test_the_patch_delivers_every_client_message_and_calls_only_real_functions(patch):
    client = client_box(patch)
    (route,) = targets(patch, client["id"], 0)
    keys = route["text"].split()[1:]
    assert set(keys) == emitted_destinations(CLIENT_JS.read_text())
    destinations = {key: [t.get("text", t["maxclass"]) for t in targets(patch, route["id"], i)]
                    for i, key in enumerate(keys)}
    assert destinations["osc"] == ["udpsend 127.0.0.1 9000"] and destinations["listen"] == ["udpreceive 7401"]
    assert destinations["audio"] == ["t a b"] and destinations["menu"] == ["umenu"]
    assert destinations["stem"] == ["buffer~ ---stem"] and destinations["light"] == ["panel"]
    assert destinations["groove"] == ["groove~ ---stem 2 @timestretch 1"]
    assert destinations["level"] == ["*~ 0.", "*~ 0."]
    assert destinations["rate"] == ["sig~ 1"]  # the speed of groove~: the stem's stretch
    (rate,) = [b for b in boxes_of(patch).values() if b.get("text") == "sig~ 1"]
    assert [t["text"] for t in targets(patch, rate["id"], 0)] == ["groove~ ---stem 2 @timestretch 1"]
    # [t a b]: first a bang for [snapshot~] (the write head, via [prepend head]), then the request itself
    (trigger,) = [b for b in boxes_of(patch).values() if b.get("text") == "t a b"]
    stream_js = find_box(patch, "js stemserver_stream.js ---ring ---snap")
    assert [t["text"] for t in targets(patch, trigger["id"], 1)] == ["snapshot~"]
    (head,) = targets(patch, trigger["id"], 1)
    assert [t["text"] for t in targets(patch, head["id"], 0)] == ["prepend head"]
    assert targets(patch, targets(patch, head["id"], 0)[0]["id"], 0) == [stream_js]
    assert targets(patch, trigger["id"], 0) == [stream_js]
    assert [t["text"] for t in targets(patch, stream_js["id"], 0)] == ["udpsend 127.0.0.1 9000"]
    assert [t["text"] for t in targets(patch, stream_js["id"], 1)] == ["buffer~ ---snap 8000 2"]
    assert targets(patch, stream_js["id"], 2) == [client]
    # one name per buffer, shared by the objects that use it
    texts = [b["text"] for b in boxes_of(patch).values() if b["maxclass"] == "newobj"]
    assert {t.split()[1] for t in texts if t.split()[0] in ("buffer~", "record~", "groove~")} == {
        "---ring", "---snap", "---stem"}


def message_functions(path: Path) -> set[str]:
    """The functions of a Max js file that messages can call (not marked .local)."""
    source = path.read_text()
    return set(re.findall(r"^function (\w+)\(", source, re.M)) - set(re.findall(r"^(\w+)\.local = 1;", source, re.M))


def test_every_message_into_a_js_object_names_one_of_its_functions(patch):
    boxes = boxes_of(patch)
    checked = set()
    for source, _, destination, _ in lines_of(patch):
        box, sender = boxes[destination], boxes[source]
        if not box.get("text", "").startswith("js "):
            continue
        if sender.get("text", "").startswith("prepend "):
            word = sender["text"].split()[1]
        elif sender["maxclass"] == "message":
            word = sender["text"].split()[0]
        else:
            continue  # [t a b] and the stream helper: their messages are checked by the tests below
        assert word in message_functions(MAX_DIR / box["text"].split()[1]), (word, box["text"])
        checked.add(word)
    assert {"instrument", "k", "find", "tick", "select", "loaded", "result", "pong", "head", "inputmode",
            "transporttempo"} <= checked
    assert {"written", "streamed", "failed"} <= message_functions(CLIENT_JS)  # what the stream helper reports
    assert {"snapshot", "stream"} <= message_functions(STREAM_JS)  # what the client asks of it


def test_the_js_helpers_are_es5():
    """Max's classic [js] is ES5: no arrow functions, let/const, classes, template strings or spread."""
    for path in (CLIENT_JS, STREAM_JS):
        code = re.sub(r"//[^\n]*", "", path.read_text())
        code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
        for pattern in (r"=>", r"\blet\b", r"\bconst\b", r"`", r"\bclass\b", r"\.\.\.", r"\basync\b", r"\?\?"):
            assert not re.search(pattern, code), f"{path.name}: {pattern}"


# ---------------------------------------------------------------------------------------------
# The JS helpers under Node


def buffer_spec(samples: np.ndarray, rate: int) -> dict:
    """A buffer~ for the harness: (channels, frames) float32."""
    samples = np.atleast_2d(np.asarray(samples, dtype="<f4"))
    return {"rate": rate, "channels": [base64.b64encode(channel.tobytes()).decode() for channel in samples]}


class MaxJS:
    """One [js] object running under Node; send() returns what it output, as (outlet, atoms)."""

    def __init__(self, script: Path, args=(), buffers=None, clock: int = 0, os: str = "macintosh"):
        if shutil.which("node") is None:
            pytest.skip("Node.js is not installed")
        self.process = subprocess.Popen(["node", str(HARNESS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
        self.posts: list[str] = []
        counts = self._call(cmd="load", file=str(script), args=list(args), buffers=buffers or {}, clock=clock, os=os)
        self.inlets, self.outlets = counts["inlets"], counts["outlets"]

    def _call(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        if "error" in reply:
            raise AssertionError(reply["error"])
        self.posts += reply["posts"]
        self.pending = reply.get("pending", 0)
        return reply

    def send(self, *message) -> list[tuple[int, list]]:
        return [tuple(o) for o in self._call(cmd="send", message=list(message))["outputs"]]

    def advance(self, ms: float) -> list[tuple[int, list]]:
        return [tuple(o) for o in self._call(cmd="advance", ms=ms)["outputs"]]

    def buffers(self, **buffers) -> None:
        self._call(cmd="buffers", buffers=buffers)

    def dump(self, name: str) -> tuple[np.ndarray, int]:
        spec = self._call(cmd="dump", buffer=name)["buffer"]
        return np.stack([np.frombuffer(base64.b64decode(c), "<f4") for c in spec["channels"]]), spec["rate"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture
def make_js():
    made = []

    def make(*args, **kwargs) -> MaxJS:
        made.append(MaxJS(*args, **kwargs))
        return made[-1]

    yield make
    for js in made:
        js.close()


def ring_of(window: np.ndarray, head: int) -> np.ndarray:
    """What a looping record~ leaves in its buffer after recording `window`: the oldest sample at
    `head`, where it writes next. window is (channels, frames)."""
    return np.roll(window, head, axis=1)


def test_the_stream_helper_declares_what_the_patch_expects(make_js):
    js = make_js(STREAM_JS, ["ring", "snap"])
    assert (js.inlets, js.outlets) == js_counts(STREAM_JS.name)


@pytest.mark.parametrize("head", [0, 1, 12345, 23999])
def test_a_snapshot_is_the_ring_unrolled_oldest_first(make_js, head):
    window = np.random.default_rng(head).uniform(-1, 1, (2, 24000)).astype(np.float32)
    js = make_js(STREAM_JS, ["ring", "snap"], buffers={
        "ring": buffer_spec(ring_of(window, head), 48000), "snap": buffer_spec(np.zeros((2, 24000)), 48000)})
    assert js.send("head", head / 24000) == []
    assert js.send("snapshot", "/tmp/stemserver mix.wav") == [(1, ["writewave", "/tmp/stemserver mix.wav"])]
    written, _ = js.dump("snap")
    np.testing.assert_array_equal(written, window)
    assert js.advance(99) == []  # "written" only once buffer~ has had time to write the file
    assert js.advance(1) == [(2, ["written", "/tmp/stemserver mix.wav", 24000, 48000, 2])]


def test_snapshot_and_stream_failures_are_reported(make_js):
    js = make_js(STREAM_JS, ["ring", "snap"], buffers={"snap": buffer_spec(np.zeros((2, 10)), 48000)})
    ((outlet, (word, reason)),) = js.send("snapshot", "/tmp/x.wav")
    assert (outlet, word) == (2, "failed") and "ring" in reason and "empty" in reason
    js.buffers(ring=buffer_spec(np.zeros((2, 20)), 48000))
    ((outlet, (word, reason)),) = js.send("snapshot", "/tmp/x.wav")
    assert (outlet, word) == (2, "failed") and "as long as ring" in reason
    js.buffers(ring={"rate": 48000, "channels": []})
    assert js.send("stream", 3, "bass", 2)[0][1][0] == "failed"


def udpsend_datagram(atoms: list) -> bytes:
    """The OSC datagram Max's [udpsend] makes of a message: the selector is the address, ints are
    'i', floats 'f', symbols 's' (Max's js outputs whole numbers as ints, others as floats)."""

    def padded(data: bytes) -> bytes:
        data += b"\0"
        return data + b"\0" * (-len(data) % 4)

    address, *args = atoms
    tags, payload = ",", []
    for value in args:
        if isinstance(value, int):
            tags, value = tags + "i", struct.pack(">i", value)
        elif isinstance(value, float):
            tags, value = tags + "f", struct.pack(">f", value)
        else:
            tags, value = tags + "s", padded(str(value).encode())
        payload.append(value)
    return padded(address.encode()) + padded(tags.encode()) + b"".join(payload)


def test_the_udpsend_encoding_used_here_is_osc():
    atoms = ["/stemserver/query/file", 17, "/tmp/a mix.wav", "nylon guitar", 3, 0.5]
    assert udpsend_datagram(atoms) == osc_message(*atoms)


def run_upload(js: MaxJS) -> list[list[list]]:
    """Run the paced upload to its end; the OSC messages sent at each moment, in time order."""
    by_time: dict[float, list] = {}
    while js.pending:
        reply = js._call(cmd="advance", ms=50)
        for (outlet, atoms), at in zip(reply["outputs"], reply["times"]):
            if outlet == 0:
                by_time.setdefault(at, []).append(atoms)
            else:
                assert atoms == ["streamed", by_time[at][-1][-2], by_time[at][-1][-1]]  # after the end message
    times = sorted(by_time)
    assert all(later - earlier == 10 for earlier, later in zip(times, times[1:]))  # one burst every 10 ms
    return [by_time[t] for t in times]


@pytest.mark.parametrize("channels, rate, frames, token", [(2, 48000, 48000 * 3, ""), (1, 44100, 30000, "s3cret"),
                                                            (2, 44100, 1000, "")])
def test_a_stream_is_the_unrolled_ring_in_float_messages_under_8_kb(make_js, channels, rate, frames, token):
    window = np.random.default_rng(frames).uniform(-1, 1, (channels, frames)).astype(np.float32)
    head = frames // 3
    js = make_js(STREAM_JS, ["ring", "snap"], buffers={"ring": buffer_spec(ring_of(window, head), rate)})
    js.send("head", head / frames)
    args = ["stream", 42, "nylon guitar", 3] + ([token] if token else [])
    auth = [token] if token else []
    assert js.send(*args) == [(0, ["/stemserver/stream/begin", *auth, 42, rate, channels, "float32", "nylon guitar",
                                   3])]
    ticks = run_upload(js)
    messages = [m for tick in ticks for m in tick]
    *chunks, end = messages
    assert all(len(tick) <= 4 for tick in ticks[:-1])  # paced: at most 4 float messages per 10 ms tick
    assert end == ["/stemserver/stream/end", *auth, 42, len(chunks)]
    samples = []
    for seq, message in enumerate(chunks):
        assert message[: 3 + len(auth)] == ["/stemserver/stream/floats", *auth, 42, seq]
        values = message[3 + len(auth):]
        assert 0 < len(values) <= 1536 and len(values) % channels == 0
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        assert len(udpsend_datagram(message)) < 8192 and len(values) * 4 <= 8192
        samples += values
    expected = window.T.reshape(-1)  # interleaved, oldest frame first
    np.testing.assert_array_equal(np.asarray(samples, dtype=np.float32), expected)
    assert len(chunks) == -(-len(expected) // 1536)


def test_float_messages_stay_under_8_kb_with_a_long_token(make_js):
    window = np.full((2, 4000), 0.123456789, dtype=np.float32)
    js = make_js(STREAM_JS, ["ring", "snap"], buffers={"ring": buffer_spec(window, 48000)})
    js.send("stream", 2147483647, "bass", 100, "t" * 64)
    message = run_upload(js)[0][0]
    assert len(message) == 4 + 1536 and len(udpsend_datagram(message)) == 7792 < 8192


def route_outputs(outputs) -> list[tuple[str, list]]:
    """The client's outputs as the patch's [route] delivers them: (destination, message)."""
    assert all(outlet == 0 for outlet, _ in outputs)
    return [(atoms[0], atoms[1:]) for _, atoms in outputs]


def sent_to(outputs, destination: str) -> list[list]:
    return [message for key, message in route_outputs(outputs) if key == destination]


def text_of(outputs, destination: str) -> str:
    (message,) = sent_to(outputs, destination)[-1:]
    assert message[0] == "set"
    return " ".join(str(a) for a in message[1:])


def client_js(make_js, clock: int = 1_000_000, **kwargs) -> MaxJS:
    js = make_js(CLIENT_JS, clock=clock, **kwargs)
    assert (js.inlets, js.outlets) == js_counts(CLIENT_JS.name)
    return js


def test_the_client_registers_pings_and_shows_the_server_health(make_js):
    js = client_js(make_js)
    first = js.send("tick")
    assert sent_to(first, "listen") == [["port", 7401]]
    assert sent_to(first, "osc") == [["/stemserver/register", 7401], ["/stemserver/ping", 1]]
    assert sent_to(first, "light") == [["bgfillcolor", 0.55, 0.55, 0.55, 1]] and "looking" in text_of(first, "health")
    pong = js.send("pong", 1, "0.3.0", 1)
    assert sent_to(pong, "light") == [["bgfillcolor", 0.2, 0.8, 0.3, 1]]
    assert text_of(pong, "health") == "stemserver 0.3.0 at 127.0.0.1:9000"
    assert js.send("pong", 99, "0.3.0", 1) == []  # not our ping
    js.advance(4000)
    assert sent_to(js.send("tick"), "light") == []  # heard 4 s ago: still green
    js.advance(2000)
    silent = js.send("tick")
    assert sent_to(silent, "light") == [["bgfillcolor", 0.9, 0.2, 0.2, 1]]
    assert "no answer from 127.0.0.1:9000" in text_of(silent, "health") and "stemserver serve" in text_of(
        silent, "health")
    js.send("registered", 7401)  # the registration confirmation is an answer too
    assert sent_to(js.send("pong", 3, "9.0", 2), "light") == [["bgfillcolor", 1, 0.6, 0.1, 1]]


def test_settings_reach_udpsend_and_udpreceive(make_js):
    js = client_js(make_js)
    assert sent_to(js.send("host", "192.168.1.20"), "osc") == [["host", "192.168.1.20"]]
    assert sent_to(js.send("serverport", 9100), "osc") == [["port", 9100]]
    moved = js.send("replyport", 7500)
    assert sent_to(moved, "listen") == [["port", 7500]] and sent_to(moved, "osc") == [["/stemserver/register",
                                                                                     7500]]
    js.send("token", "s3cret")
    assert sent_to(js.send("tick"), "osc")[0] == ["/stemserver/register", "s3cret", 7500]


def results_for(request_id: int) -> list[list]:
    return [[request_id, 1, "/Samples/Bass/fingered 01.wav", 0.81, 2.37, 10.37, 0.42, 16.0, "bass", 0],
            [request_id, 2, "/Samples/Bass/sub loop.wav", 0.77, 0.64, 0.64, 0.35, 1.92, "bass", 1]]


def test_find_writes_a_snapshot_then_asks_for_the_file(make_js):
    js = client_js(make_js)
    assert "type an instrument" in text_of(js.send("find"), "info")
    js.send("instrument", "nylon", "guitar")
    js.send("k", 3)
    find = js.send("find")
    assert sent_to(find, "menu") == [["clear"]]
    assert sent_to(find, "audio") == [["snapshot", "/tmp/stemserver_mix_7401.wav"]]
    assert sent_to(js.send("written", "/tmp/other.wav", 384000, 48000, 2), "osc") == []
    asked = js.send("written", "/tmp/stemserver_mix_7401.wav", 384000, 48000, 2)
    assert sent_to(asked, "osc") == [["/stemserver/query/file", 1, "/tmp/stemserver_mix_7401.wav", "nylon guitar",
                                      3]]
    assert "8.0 s of audio" in text_of(asked, "info")
    menu = [sent_to(js.send("result", *r), "menu") for r in results_for(1)]
    assert menu == [[["append", "1.", "fingered", "01.wav", "0.81", "+2.37", "s"]],
                    [["append", "2.", "sub", "loop.wav", "0.77", "+0.64", "s", "loop"]]]
    assert text_of(js.send("done", 1, 2, 41.7), "info").startswith("2 stems in 42 ms")


def test_on_windows_the_snapshot_goes_to_a_public_folder_unless_told(make_js):
    js = client_js(make_js, os="windows")
    js.send("instrument", "bass")
    assert sent_to(js.send("find"), "audio") == [["snapshot", "C:/Users/Public/stemserver_mix_7401.wav"]]
    js.send("tempfile", "D:/tmp/my", "mix.wav")
    assert sent_to(js.send("find"), "audio") == [["snapshot", "D:/tmp/my mix.wav"]]


def test_a_remote_server_gets_the_audio_streamed_with_the_token(make_js):
    js = client_js(make_js)
    js.send("instrument", "drums")
    js.send("host", "10.0.0.5")
    js.send("token", "s3cret")
    assert sent_to(js.send("find"), "audio") == [["stream", 1, "drums", 5, "s3cret"]]
    js.send("host", "localhost")
    js.send("stream", 1)  # the toggle: stream to a local server too
    js.send("token", "bang")  # an empty Token box
    assert sent_to(js.send("find"), "audio") == [["stream", 2, "drums", 5]]
    assert "sent 12 chunks" in text_of(js.send("streamed", 2, 12), "info")


def test_late_replies_are_ignored_and_errors_explained(make_js):
    js = client_js(make_js)
    js.send("instrument", "bass")
    js.send("find")
    js.send("find")  # request 2 replaces request 1
    assert js.send("result", *results_for(1)[0]) == [] and js.send("done", 1, 1, 5.0) == []
    error = js.send("servererror", 2, "unknown_instrument", "no embedding for 'basoon'; close: 'bass'")
    assert text_of(error, "info") == "server: unknown_instrument: no embedding for 'basoon' close: 'bass'"
    js.send("find")
    assert "is audio on" in text_of(js.send("servererror", 3, "bad_audio", "the audio is silent"), "info")
    denied = js.send("servererror", "", "unauthorized", "this server needs its token")
    assert sent_to(denied, "light") == [["bgfillcolor", 1, 0.6, 0.1, 1]] and "token" in text_of(denied, "health")
    js.send("find")
    assert "could not read the audio" in text_of(js.send("failed", "the", "buffer~", "ring", "is", "empty"), "info")


def test_a_chosen_stem_starts_where_it_lines_up_with_the_mix_now(make_js):
    js = client_js(make_js, clock=5_000)
    js.send("instrument", "bass")
    js.send("find")  # the window ends at 5000 ms
    js.send("written", "/tmp/stemserver_mix_7401.wav", 384000, 48000, 2)
    for r in results_for(1):
        js.send("result", *r)
    js.send("done", 1, 2, 30.0)
    chosen = js.send("select", 0)
    assert sent_to(chosen, "path") == [["set", "/Samples/Bass/fingered", "01.wav"]]
    assert sent_to(chosen, "stem") == [["replace", "/Samples/Bass/fingered 01.wav"]]
    js.advance(1500)  # the file takes a while to load: the mix plays on
    playing = js.send("loaded")
    # a server of the previous version (no tempo or key): the stem's own speed and pitch
    assert sent_to(playing, "rate") == [[1]]
    assert sent_to(playing, "groove") == [["pitchshiftcent", 0], ["loop", 0], [10370 + 1500]]
    assert sent_to(playing, "loopend") == [[16000]] and sent_to(playing, "level") == [[0.8]]
    assert text_of(playing, "info") == "playing fingered 01.wav from 11.87 s in time with the mix"
    js.send("nudge", 12)
    js.send("volume", 0.5)
    js.advance(100.5)
    assert sent_to(js.send("play"), "groove")[1:] == [["loop", 0], [10370 + 1600.5 + 12]]  # loaded already
    assert sent_to(js.send("stop"), "level") == [[0]]
    loop = js.send("select", 1)
    assert sent_to(loop, "stem") == [["replace", "/Samples/Bass/sub loop.wav"]]
    js.advance(7)
    looped = js.send("loaded")
    # a loop wraps around its length: (640 + 1607.5 + 12 + 7) ms modulo 1920 ms
    assert sent_to(looped, "groove")[1:] == [["loop", 1], [pytest.approx((640 + 1600.5 + 12 + 7) % 1920)]]
    assert sent_to(looped, "level") == [[0.5]]
    js.advance(20_000)
    js.send("select", 0)
    assert "has ended" in text_of(js.send("loaded"), "info")  # a 16 s stem, 27 s after the window


def results_with_tempo_and_key(request_id: int) -> list[list]:
    """/stemserver/result as docs/protocol.md has it with tempo and key: the old arguments, then
    tempo_bpm key stretch transpose key_relation offset_beats offset_bars (-1 and "" unknown)."""
    return [[request_id, 1, "/Samples/Bass/funk 120bpm Am.wav", 0.83, 9.0, 17.0, 0.41, 30.0, "bass", 0,
             120.0, "A minor", 0.8, 0, "relative", 14.4, 3.6],
            [request_id, 2, "/Samples/Bass/sub loop.wav", 0.77, 0.64, 0.64, 0.35, 1.92, "bass", 1,
             76.8, "D minor", 1.25, -5, "subdominant", 0.8192, 0.2048],
            [request_id, 3, "/Samples/Bass/hit.wav", 0.7, 11.2, 19.2, 0.3, 32.5, "bass", 0,
             -1.0, "", -1.0, -1, "", -1.0, -1.0]]


def test_results_show_tempo_key_stretch_and_transpose(make_js):
    js = client_js(make_js)
    js.send("instrument", "bass")
    js.send("find")
    menu = [" ".join(sent_to(js.send("result", *r), "menu")[0][1:]) for r in results_with_tempo_and_key(1)]
    assert menu == ["1. funk 120bpm Am.wav 0.83 +9.00 s 120 BPM x0.80 A minor (relative +0 st)",
                    "2. sub loop.wav 0.77 +0.64 s loop 76.8 BPM x1.25 D minor (subdominant -5 st)",
                    "3. hit.wav 0.70 +11.20 s"]  # -1 and "": nothing known, listed as before
    assert text_of(js.send("done", 1, 3, 21.5, 96.0, "C major"), "info") == (
        "3 stems in 22 ms (mix 96 BPM C major): pick one to hear it in time with the mix")
    js.send("find")
    js.send("result", *results_for(2)[0])  # a server of the previous version: ten arguments
    assert text_of(js.send("done", 2, 1, 5.0), "info").startswith("1 stems in 5 ms: pick one")
    js.send("find")
    js.send("result", *results_with_tempo_and_key(3)[2])
    assert text_of(js.send("done", 3, 1, 5.0, -1.0, ""), "info").startswith("1 stems in 5 ms: pick one")


def test_the_audition_plays_at_the_stretch_from_where_it_lines_up_now(make_js):
    js = client_js(make_js, clock=5_000)
    js.send("instrument", "bass")
    js.send("find")  # the window ends at 5000 ms
    for r in results_with_tempo_and_key(1):
        js.send("result", *r)
    js.send("select", 0)
    js.advance(1500)
    playing = js.send("loaded")
    assert sent_to(playing, "rate") == [[0.8]]  # groove~'s speed: 120 BPM brought to 96
    # 1.5 s of the mix since Find are 1.2 s of a stem playing at 0.8
    assert sent_to(playing, "groove") == [["pitchshiftcent", 0], ["loop", 0], [pytest.approx(17000 + 1500 * 0.8)]]
    assert text_of(playing, "info") == ("playing funk 120bpm Am.wav from 18.20 s in time with the mix - "
                                        "120 BPM x0.80 A minor (relative +0 st)")
    js.send("nudge", 10)  # the sound card's latency is mix time too
    js.advance(500)
    assert sent_to(js.send("play"), "groove")[-1] == [pytest.approx(17000 + (2000 + 10) * 0.8)]

    js.send("select", 1)
    js.advance(40)
    looped = js.send("loaded")
    assert sent_to(looped, "rate") == [[1.25]]
    assert sent_to(looped, "loopend") == [[1920]]  # the loop's length in its own time
    assert sent_to(looped, "groove") == [["pitchshiftcent", -500], ["loop", 1],
                                         [pytest.approx((640 + (2040 + 10) * 1.25) % 1920)]]

    js.send("select", 2)
    js.advance(60)
    plain = js.send("loaded")
    assert sent_to(plain, "rate") == [[1]] and sent_to(plain, "groove")[0] == ["pitchshiftcent", 0]
    assert sent_to(plain, "groove")[-1] == [pytest.approx(19200 + 2100 + 10)]


def test_inside_live_find_sends_the_sets_tempo(make_js):
    js = client_js(make_js)
    js.send("instrument", "bass")
    js.send("transporttempo", 124.0)  # [transport] banged by Find, before the find message
    js.send("find")
    asked = js.send("written", "/tmp/stemserver_mix_7401.wav", 384000, 48000, 2)
    assert sent_to(asked, "osc") == [["/stemserver/query/file", 1, "/tmp/stemserver_mix_7401.wav", "bass", 5]], \
        "standalone Max: the transport is not the music's tempo"
    js.send("inputmode", 2)  # the Input menu on Live's track
    js.send("find")
    asked = js.send("written", "/tmp/stemserver_mix_7401.wav", 384000, 48000, 2)
    assert sent_to(asked, "osc") == [["/stemserver/query/file", 2, "/tmp/stemserver_mix_7401.wav", "bass", 5,
                                      "tempo", 124]]
    js.send("token", "s3cret")
    js.send("stream", 1)
    assert sent_to(js.send("find"), "audio") == [["stream", 3, "bass", 5, "s3cret", "tempo", 124]]
    js.send("token", "bang")
    js.send("transporttempo", 999.0)  # outside what the server takes: it estimates the tempo
    assert sent_to(js.send("find"), "audio") == [["stream", 4, "bass", 5]]


def test_a_stream_carries_the_query_options_after_k(make_js):
    window = np.zeros((2, 3000), dtype=np.float32)
    js = make_js(STREAM_JS, ["ring", "snap"], buffers={"ring": buffer_spec(window, 48000)})
    assert js.send("stream", 7, "bass", 5, "tempo", 124) == [
        (0, ["/stemserver/stream/begin", 7, 48000, 2, "float32", "bass", 5, "tempo", 124])]
    assert js.send("stream", 8, "bass", 5, "s3cret", "tempo", 124) == [
        (0, ["/stemserver/stream/begin", "s3cret", 8, 48000, 2, "float32", "bass", 5, "tempo", 124])]
    assert run_upload(js)[-1][-1] == ["/stemserver/stream/end", "s3cret", 8, 4]


# ---------------------------------------------------------------------------------------------
# A session against the real server


@pytest.fixture(scope="module")
def server(identity_checkpoint: Path, library: Path):  # noqa: F811  (the fixture imported above)
    server = Server(identity_checkpoint, library)
    yield server
    assert server.stop() == 0


def free_udp_port() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)
    return sock


class PatchRuntime:
    """The patch around its two [js] objects, for a test: [udpsend], [udpreceive] and the reply
    [route]/[prepend]s read from the patch, the [snapshot~] head before each audio request, and the
    buffer~s: ---snap writes its WAV on writewave (as Max's buffer~ would), ---stem "loads" on replace."""

    def __init__(self, patch: dict, make_js, server_port: int, window: np.ndarray, rate: int, head: int,
                 subtype: str = "FLOAT", clock: int = 1_000_000):
        self.subtype = subtype
        self.udpsend = free_udp_port()
        self.udpreceive = free_udp_port()
        self.destination = ("127.0.0.1", 9000)  # [udpsend 127.0.0.1 9000]
        (route,) = targets(patch, find_box(patch, "udpreceive 7401")["id"], 0)
        self.replies = {address: targets(patch, route["id"], i)[0]["text"].split()[1]
                        for i, address in enumerate(route["text"].split()[1:])}
        self.ring = ring_of(np.tile(window, (2, 1)), head)
        self.head_phase = head / self.ring.shape[1]
        self.stream = make_js(STREAM_JS, ["---ring", "---snap"], buffers={
            "---ring": buffer_spec(self.ring, rate), "---snap": buffer_spec(np.zeros_like(self.ring), rate)})
        self.client = make_js(CLIENT_JS, clock=clock)
        self.loaded: list[str] = []
        self.deliver(self.client.send("serverport", server_port))  # the patch's [loadmess] and number boxes
        self.deliver(self.client.send("replyport", self.udpreceive.getsockname()[1]))

    def deliver(self, outputs) -> dict[str, list]:
        """Carry out the client's outputs; returns what reached each display."""
        shown: dict[str, list] = {}
        for key, message in route_outputs(outputs):
            if key == "osc":
                if message[0] == "host":
                    self.destination = (message[1], self.destination[1])
                elif message[0] == "port":
                    self.destination = (self.destination[0], message[1])
                else:
                    self.udpsend.sendto(udpsend_datagram(message), self.destination)
            elif key == "listen":
                assert message == ["port", self.udpreceive.getsockname()[1]]
            elif key == "audio":  # [t a b]: the write head first, then the request
                self.stream.send("head", self.head_phase)
                self.carry_stream(self.stream.send(*message))
            elif key == "stem":
                assert message[0] == "replace" and Path(message[1]).is_file()
                self.loaded.append(message[1])
            shown.setdefault(key, []).append(message)
        return shown

    def carry_stream(self, outputs) -> None:
        for outlet, message in outputs:
            if outlet == 0:
                self.udpsend.sendto(udpsend_datagram(message), self.destination)
            elif outlet == 1:  # buffer~ ---snap: writewave PATH
                assert message[0] == "writewave"
                samples, rate = self.stream.dump("---snap")
                soundfile.write(message[1], samples.T, rate, subtype=self.subtype)
            else:
                self.deliver(self.client.send(*message))

    def finish_audio(self) -> None:
        """Let the stream helper's tasks run: the 'written' report, or the paced upload."""
        while self.stream.pending:
            self.carry_stream(self.stream.advance(10))
            time.sleep(0.01)

    def receive(self, until: str) -> list[tuple[str, list, dict]]:
        """Replies until `until`, each delivered to the client as the patch does."""
        log = []
        while True:
            data, _ = self.udpreceive.recvfrom(65536)
            message = OscPacket(data).messages[0].message
            address, args = message.address, list(message.params)
            name = self.replies.get(address)
            shown = self.deliver(self.client.send(name, *args)) if name else {}
            log.append((address, args, shown))
            if address in (until, "/stemserver/error"):
                return log

    def close(self) -> None:
        self.udpsend.close()
        self.udpreceive.close()


def menu_items(log) -> list[str]:
    """The items the results menu received."""
    return [" ".join(m[1:]) for _, _, shown in log for m in shown.get("menu", []) if m[0] == "append"]


def mix_window(rate: int) -> np.ndarray:
    """8 s of the library's line2.wav from 4.8 s, as a sound card at `rate` would record it."""
    line = melody(20.0, 2)[int(4.8 * 16000): int(12.8 * 16000)]
    return soxr.resample(line, 16000, rate).astype(np.float32)


@pytest.mark.parametrize("subtype, rate", [("FLOAT", 48000), ("PCM_16", 44100)])
def test_a_find_with_a_snapshot_file_against_the_real_server(patch, make_js, server, tmp_path, subtype, rate):
    """buffer~ writes 32-bit float or 16-bit WAVs, at the sound card's rate."""
    runtime = PatchRuntime(patch, make_js, server.osc[1], mix_window(rate), rate, head=123457, subtype=subtype)
    try:
        runtime.deliver(runtime.client.send("tick"))
        log = runtime.receive(until="/stemserver/pong")
        assert [address for address, _, _ in log][-2:] == ["/stemserver/registered", "/stemserver/pong"]
        assert log[-1][2]["light"] == [["bgfillcolor", 0.2, 0.8, 0.3, 1]]  # green: the server answers

        runtime.client.send("tempfile", str(tmp_path / "max mix.wav"))
        runtime.client.send("instrument", "bass")
        runtime.client.send("k", 4)
        runtime.deliver(runtime.client.send("find"))
        runtime.finish_audio()
        written = soundfile.info(str(tmp_path / "max mix.wav"))
        assert (written.samplerate, written.channels, written.frames) == (rate, 2, 8 * rate)
        log = runtime.receive(until="/stemserver/done")
        results = [args for address, args, _ in log if address == "/stemserver/result"]
        assert len(results) == 4 and [r[1] for r in results] == [1, 2, 3, 4]
        best = results[0]
        assert Path(best[2]).name == "line2.wav"
        assert best[4] == pytest.approx(4.8, abs=0.16) and best[5] == pytest.approx(12.8, abs=0.16)
        assert len(best) in (10, 17)  # with tempo and key, or from a server of the previous version
        assert menu_items(log)[0].startswith(f"1. line2.wav {best[3]:.2f} +{best[4]:.2f} s")
        assert " ".join(log[-1][2]["info"][0][1:]).startswith("4 stems in")

        runtime.client.advance(2000)
        chosen = runtime.deliver(runtime.client.send("select", 0))
        assert runtime.loaded == [best[2]] and chosen["path"] == [["set", *best[2].split()]]
        playing = runtime.deliver(runtime.client.send("loaded"))
        stretch = best[12] if len(best) > 10 and best[12] > 0 else 1  # -1: no tempo known
        assert playing["rate"] == [[pytest.approx(stretch)]]
        assert playing["groove"][-2:] == [["loop", 0], [pytest.approx(best[5] * 1000 + 2000 * stretch, abs=0.01)]]
    finally:
        runtime.close()


def test_a_find_with_a_stream_against_the_real_server(patch, make_js, server):
    runtime = PatchRuntime(patch, make_js, server.osc[1], mix_window(48000), 48000, head=1000)
    try:
        runtime.client.send("instrument", "bass")
        runtime.client.send("k", 2)
        runtime.client.send("stream", 1)
        runtime.deliver(runtime.client.send("find"))
        runtime.finish_audio()  # 8 s of 48 kHz stereo: 500 float messages, paced
        log = runtime.receive(until="/stemserver/done")
        results = [args for address, args, _ in log if address == "/stemserver/result"]
        assert [Path(r[2]).name for r in results][:1] == ["line2.wav"] and len(results) == 2
        assert results[0][4] == pytest.approx(4.8, abs=0.16)
        assert len(menu_items(log)) == 2
    finally:
        runtime.close()
