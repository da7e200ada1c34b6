#!/usr/bin/env python3
"""Writes max_patch/stemserver.maxpat: the stemserver patch for Max and Max for Live.

The patch is generated so that it can be reviewed and changed as text (Max rewrites a .maxpat
whenever it saves one, so hand edits of the JSON do not survive anyway). Run it from anywhere:

    python max_patch/tools/build_maxpat.py

tests/test_max_patch.py checks that the committed patch is what this script writes, and checks the
patch itself against a table of Max's inlet/outlet counts. If you rework the patch in Max instead,
save it over stemserver.maxpat and delete this script and that one test.

The layout reads top to bottom: 1 audio in, 2 the ring buffer, 3 controls, 4 the client (the
protocol), 5 snapshot and streaming, 6 network, 7 results and audition. The only lines that go up
are the ones that come back into the client with news (replies, "written", a menu choice...).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
CLIENT_JS = "stemserver_client.js"
STREAM_JS = "stemserver_stream.js"
DEVICE_WIDTH = 640.0

ROUTE_REPLIES = ["/stemserver/result", "/stemserver/done", "/stemserver/error", "/stemserver/pong",
                 "/stemserver/registered"]
REPLY_MESSAGES = ["result", "done", "servererror", "pong", "registered"]  # what the client calls them
CLIENT_DESTINATIONS = ["osc", "listen", "audio", "light", "health", "info", "menu", "path", "stem", "groove",
                       "loopend", "rate", "level"]


def js_io(filename: str) -> tuple[int, int]:
    source = (HERE / filename).read_text()
    inlets = int(re.search(r"^inlets\s*=\s*(\d+);", source, re.M).group(1))
    outlets = int(re.search(r"^outlets\s*=\s*(\d+);", source, re.M).group(1))
    return inlets, outlets


def object_io(text: str) -> tuple[int, list[str]]:
    """Inlets and outlet types of an object box, as Max 8 creates it."""
    name, *args = text.split()
    plain = []
    for a in args:  # arguments before the @attribute value pairs
        if a.startswith("@"):
            break
        plain.append(a)
    n = len(plain)
    def count(i: int, default: int) -> int:
        return int(plain[i]) if n > i else default

    trigger_types = {"b": "bang", "i": "int", "f": "float", "l": "", "a": "", "s": ""}
    table = {
        "adc~": lambda: (1, ["signal"] * max(n, 1)),
        "plugin~": lambda: (2, ["signal", "signal"]),
        "plugout~": lambda: (2, ["signal", "signal"]),
        "dac~": lambda: (max(n, 2), []),
        "selector~": lambda: (count(0, 1) + 1, ["signal"]),
        "gate~": lambda: (2, ["signal"] * count(0, 1)),
        "record~": lambda: (count(1, 1) + 2, ["signal"]),
        "buffer~": lambda: (1, ["float", "bang"]),
        "groove~": lambda: (3, ["signal"] * (count(1, 1) + 1)),
        "sig~": lambda: (1, ["signal"]),
        "*~": lambda: (2, ["signal"]),
        "snapshot~": lambda: (2, ["float"]),
        "udpsend": lambda: (1, []),
        "udpreceive": lambda: (1, [""]),
        "route": lambda: (n + 1, [""] * (n + 1)),
        "prepend": lambda: (1, [""]),
        "t": lambda: (1, [trigger_types[a] for a in plain]),
        "loadmess": lambda: (1, [""]),
        "loadbang": lambda: (1, ["bang"]),
        "metro": lambda: (2, ["bang"]),
        "live.thisdevice": lambda: (1, ["bang", "int", "int"]),
        "transport": lambda: (2, ["int", "int", "float", "float", "float", "", "int", "float", ""]),
        "s": lambda: (1, []),
        "r": lambda: (0, [""]),
        "+": lambda: (2, ["int"]),
        "*": lambda: (2, ["int"]),
    }
    if name == "js":
        inlets, outlets = js_io(plain[0])
        return inlets, [""] * outlets
    return table[name]()


class Patch:
    def __init__(self) -> None:
        self.boxes: list[dict] = []
        self.lines: list[dict] = []
        self.ids: dict[str, str] = {}

    def _add(self, key: str, box: dict) -> str:
        assert key not in self.ids, key
        box_id = f"obj-{len(self.boxes) + 1}"
        self.ids[key] = box_id
        box["id"] = box_id
        self.boxes.append({"box": dict(sorted(box.items()))})
        return key

    def _ui(self, box: dict, present) -> dict:
        if present is not None:
            box["presentation"] = 1
            box["presentation_rect"] = [float(v) for v in present]
        return box

    def obj(self, key: str, text: str, x: float, y: float, width: float | None = None) -> str:
        inlets, outlettype = object_io(text)
        width = width or max(30.0, 7.0 * len(text) + 12.0)
        box = {"maxclass": "newobj", "text": text, "numinlets": inlets, "numoutlets": len(outlettype),
               "patching_rect": [float(x), float(y), float(width), 22.0]}
        if outlettype:
            box["outlettype"] = outlettype
        if text.startswith("js "):
            box["saved_object_attributes"] = {"filename": text.split()[1], "parameter_enable": 0}
        return self._add(key, box)

    def message(self, key: str, text: str, x: float, y: float, width: float | None = None, present=None) -> str:
        width = width or max(30.0, 7.0 * len(text) + 14.0)
        box = {"maxclass": "message", "text": text, "numinlets": 2, "numoutlets": 1, "outlettype": [""],
               "patching_rect": [float(x), float(y), float(width), 22.0]}
        return self._add(key, self._ui(box, present))

    def comment(self, text: str, x: float, y: float, width: float, present=None, bold: bool = False) -> str:
        lines = max(1, -(-int(len(text) * 6.6) // int(width)))  # about 6.6 px per character of 12 pt Arial
        box = {"maxclass": "comment", "text": text, "numinlets": 1, "numoutlets": 0,
               "patching_rect": [float(x), float(y), float(width), 6.0 + 14.0 * lines]}
        if lines > 1:
            box["linecount"] = lines
        if bold:
            box["fontface"] = 1
        return self._add(f"comment-{len(self.boxes)}", self._ui(box, present))

    def section(self, text: str, y: float) -> float:
        """A section's explanation across the patch; returns where its objects may start."""
        key = self.comment(text, 20, y, 1120, bold=text[:2].rstrip(".").isdigit())
        box = self.boxes[-1]["box"]
        assert self.ids[key] == box["id"]
        return y + box["patching_rect"][3] + 14

    def ui(self, key: str, maxclass: str, x: float, y: float, width: float, height: float, present,
           **attributes) -> str:
        io = {"textedit": (1, ["", "int", "", ""]), "number": (1, ["", "bang"]), "flonum": (1, ["", "bang"]),
              "umenu": (1, ["int", "", ""]), "textbutton": (1, ["", "", "int"]), "toggle": (1, ["int"]),
              "panel": (1, []), "ezdac~": (2, [])}
        inlets, outlettype = io[maxclass]
        box = {"maxclass": maxclass, "numinlets": inlets, "numoutlets": len(outlettype),
               "patching_rect": [float(x), float(y), float(width), float(height)], **attributes}
        if outlettype:
            box["outlettype"] = outlettype
        if maxclass not in ("panel", "ezdac~"):
            box["parameter_enable"] = 0
        return self._add(key, self._ui(box, present))

    def connect(self, source: str, outlet: int, destination: str, inlet: int) -> None:
        self.lines.append({"patchline": {"destination": [self.ids[destination], inlet],
                                         "source": [self.ids[source], outlet]}})

    def json(self) -> dict:
        return {"patcher": {
            "fileversion": 1,
            "appversion": {"major": 8, "minor": 6, "revision": 5, "architecture": "x64", "modernui": 1},
            "classnamespace": "box",
            "rect": [60.0, 80.0, 1180.0, 900.0],
            "bglocked": 0,
            "openinpresentation": 1,
            "default_fontsize": 12.0,
            "default_fontface": 0,
            "default_fontname": "Arial",
            "gridonopen": 1,
            "gridsize": [15.0, 15.0],
            "gridsnaponopen": 1,
            "objectsnaponopen": 1,
            "statusbarvisible": 2,
            "toolbarvisible": 1,
            "lefttoolbarpinned": 0,
            "toptoolbarpinned": 0,
            "righttoolbarpinned": 0,
            "bottomtoolbarpinned": 0,
            "toolbars_unpinned_last_save": 0,
            "tallnewobj": 0,
            "boxanimatetime": 200,
            "enablehscroll": 1,
            "enablevscroll": 1,
            "devicewidth": DEVICE_WIDTH,
            "description": "Find a stem that fits the mix: asks a running `stemserver serve`.",
            "digest": "stemserver client for Max and Max for Live",
            "tags": "stemserver",
            "style": "",
            "subpatcher_template": "",
            "assistshowspatchername": 0,
            "boxes": self.boxes,
            "lines": self.lines,
            "autosave": 0,
        }}


def build() -> dict:
    p = Patch()
    y = p.section("stemserver: find a stem in your own sample library that fits the music playing here. Start the "
                  "server first (stemserver serve ..., see README.md). Presentation mode (the device view) shows the "
                  "controls; this view shows how the patch works, from top to bottom.", 10)

    # --- 1. Audio in --------------------------------------------------------------------------
    y = p.section("1. AUDIO IN. In Max the patch listens to the sound card (adc~); inside Max for Live it listens to "
                  "its track (plugin~). In Max, live.thisdevice only bangs like loadbang and its other outlets stay "
                  "silent; in Live the second one answers getstate, and that switches the Input menu to the track. "
                  "The menu also switches by hand. The same choice (sent to ---inputmode) routes the audition to "
                  "dac~ in Max or plugout~ in Live.", y + 10)
    p.obj("input-default", "loadmess 0", 20, y)
    p.obj("thisdevice", "live.thisdevice", 160, y)
    p.message("getstate", "getstate", 160, y + 30)
    p.obj("thisdevice-state", "live.thisdevice", 160, y + 60)
    p.message("in-live", "1", 230, y + 90)
    p.ui("input", "umenu", 20, y + 120, 170, 22, present=(450, 28, 184, 20),
         items=["Input: Max (adc~)", ",", "Input: Live track (plugin~)"])
    p.obj("input-plus", "+ 1", 20, y + 150)
    p.obj("input-send", "s ---inputmode", 20, y + 180)
    p.obj("input-msg", "prepend inputmode", 130, y + 210)
    p.obj("adc", "adc~ 1 2", 300, y + 120)
    p.obj("plugin", "plugin~", 400, y + 120)
    p.obj("select-l", "selector~ 2 1", 300, y + 180)
    p.obj("select-r", "selector~ 2 1", 420, y + 180)
    p.connect("input-default", 0, "input", 0)
    p.connect("thisdevice", 0, "getstate", 0)
    p.connect("getstate", 0, "thisdevice-state", 0)
    p.connect("thisdevice-state", 1, "in-live", 0)  # device on/off: reported only inside Live
    p.connect("thisdevice-state", 2, "in-live", 0)  # the getstate answer: only inside Live
    p.connect("in-live", 0, "input", 0)
    p.connect("input", 0, "input-plus", 0)
    p.connect("input-plus", 0, "input-send", 0)
    p.connect("input-plus", 0, "input-msg", 0)  # the client sends Live's tempo only for Live's track
    p.connect("input-plus", 0, "select-l", 0)
    p.connect("input-plus", 0, "select-r", 0)
    p.connect("adc", 0, "select-l", 1)
    p.connect("plugin", 0, "select-l", 2)
    p.connect("adc", 1, "select-r", 1)
    p.connect("plugin", 1, "select-r", 2)

    # --- 2. The ring --------------------------------------------------------------------------
    y = p.section("2. THE RING. record~ loops over the buffer~ ---ring, so it always holds the last seconds of the "
                  "music, but in a circle: the oldest sample sits where record~ writes next. The JS helper unrolls it "
                  "(oldest first) when you press Find. Seconds sets the length of both buffers, ---ring and ---snap "
                  "(2 to 30 s; the server listens to the last 8 s). Names that start with --- are private to each Max "
                  "for Live device.", y + 220)
    p.obj("seconds-default", "loadmess 8", 20, y)
    p.ui("seconds", "number", 20, y + 30, 50, 22, present=(522, 148, 50, 20), minimum=2, maximum=30)
    p.obj("seconds-split", "t b i", 20, y + 60)
    p.obj("seconds-ms", "* 1000", 100, y + 90)
    p.obj("size", "prepend size", 100, y + 120)
    p.message("record-on", "1", 20, y + 120)
    p.obj("record-start", "loadmess 1", 240, y + 90)
    p.obj("record", "record~ ---ring 2 @loop 1", 240, y + 160, 190)
    p.obj("ring", "buffer~ ---ring 8000 2", 480, y + 160)
    p.connect("seconds-default", 0, "seconds", 0)
    p.connect("seconds", 0, "seconds-split", 0)
    p.connect("seconds-split", 1, "seconds-ms", 0)
    p.connect("seconds-ms", 0, "size", 0)
    p.connect("seconds-split", 0, "record-on", 0)
    p.connect("size", 0, "ring", 0)
    p.connect("record-on", 0, "record", 0)
    p.connect("record-start", 0, "record", 0)
    p.connect("select-l", 0, "record", 0)
    p.connect("select-r", 0, "record", 1)

    # --- 3. Controls --------------------------------------------------------------------------
    y = p.section("3. CONTROLS (the device view). Find first bangs the Instrument box, so what is typed counts even "
                  "without Return; the other text boxes take effect on Return. Server and its port: where stemserver "
                  "serve runs. Reply: the port this patch listens on (one per device). Stream: send the audio itself "
                  "(needed for a server on another machine). Nudge: ms added to the audition start (sound-card "
                  "latency). Vol: audition level. Find also bangs transport: inside Live its tempo is the set's, and "
                  "the client sends it with the query (in standalone Max the server estimates the tempo).", y + 200)
    p.ui("find", "textbutton", 230, y, 60, 22, present=(274, 28, 60, 20), text="Find")
    p.obj("find-order", "t b b b", 230, y + 30)
    p.obj("transport", "transport", 440, y + 60, 120)
    p.obj("tempo-msg", "prepend transporttempo", 440, y + 120)
    p.ui("instrument", "textedit", 20, y + 60, 150, 22, present=(72, 28, 136, 20), text="bass", keymode=1,
         lines=1, outputmode=1)
    p.obj("instrument-text", "route text", 20, y + 90)
    p.obj("instrument-msg", "prepend instrument", 20, y + 120)
    p.message("find-msg", "find", 230, y + 120)
    p.obj("k-default", "loadmess 5", 330, y + 30)
    p.ui("k", "number", 330, y + 60, 50, 22, present=(228, 28, 40, 20), minimum=1, maximum=100)
    p.obj("k-msg", "prepend k", 330, y + 120)
    p.connect("find", 0, "find-order", 0)
    p.connect("find-order", 2, "transport", 0)
    p.connect("transport", 4, "tempo-msg", 0)  # the tempo outlet
    p.connect("find-order", 1, "instrument", 0)
    p.connect("find-order", 0, "find-msg", 0)
    p.connect("instrument", 0, "instrument-text", 0)
    p.connect("instrument-text", 0, "instrument-msg", 0)
    p.connect("k-default", 0, "k", 0)
    p.connect("k", 0, "k-msg", 0)

    y += 170
    p.obj("port-default", "loadmess 9000", 160, y)
    p.obj("reply-default", "loadmess 7401", 300, y)
    p.obj("volume-default", "loadmess 0.8", 840, y)
    p.obj("metro-on", "loadmess 1", 980, y)
    y += 30
    p.ui("host", "textedit", 20, y, 120, 22, present=(496, 52, 90, 20), text="127.0.0.1", keymode=1, lines=1,
         outputmode=1)
    p.ui("server-port", "number", 160, y, 60, 22, present=(588, 52, 46, 20), minimum=1, maximum=65535)
    p.ui("reply-port", "number", 300, y, 60, 22, present=(496, 76, 54, 20), minimum=1, maximum=65535)
    p.ui("token", "textedit", 440, y, 120, 22, present=(496, 100, 138, 20), text="", keymode=1, lines=1,
         outputmode=1)
    p.ui("stream", "toggle", 590, y, 22, 22, present=(556, 76, 20, 20))
    p.ui("nudge", "number", 720, y, 50, 22, present=(522, 124, 50, 20))
    p.ui("volume", "flonum", 840, y, 50, 22, present=(36, 148, 50, 20), minimum=0.0, maximum=2.0, format=6)
    p.obj("metro", "metro 2000", 980, y)
    p.obj("host-text", "route text", 20, y + 30)
    p.obj("token-text", "route text", 440, y + 30)
    p.obj("host-msg", "prepend host", 20, y + 60)
    p.obj("port-msg", "prepend serverport", 160, y + 60)
    p.obj("reply-msg", "prepend replyport", 300, y + 60)
    p.obj("token-msg", "prepend token", 440, y + 60)
    p.obj("stream-msg", "prepend stream", 590, y + 60)
    p.obj("nudge-msg", "prepend nudge", 720, y + 60)
    p.obj("volume-msg", "prepend volume", 840, y + 60)
    p.message("tick", "tick", 980, y + 60)
    for source, destination in [("host", "host-text"), ("host-text", "host-msg"), ("port-default", "server-port"),
                                ("server-port", "port-msg"), ("reply-default", "reply-port"),
                                ("reply-port", "reply-msg"), ("token", "token-text"), ("token-text", "token-msg"),
                                ("stream", "stream-msg"), ("nudge", "nudge-msg"), ("volume-default", "volume"),
                                ("volume", "volume-msg"), ("metro-on", "metro"), ("metro", "tick")]:
        p.connect(source, 0, destination, 0)

    # --- 4. The client ------------------------------------------------------------------------
    y = p.section("4. THE CLIENT. stemserver_client.js speaks docs/protocol.md: every 2 s (metro) it registers the "
                  "reply port (/stemserver/register) and pings (/stemserver/ping); Find makes a request id and asks "
                  "for a snapshot or a stream. The replies come back into it from below. It starts each message with "
                  "its destination; this route delivers them. Light: grey = looking for the server, green = it "
                  "answers, orange = it answers but something is wrong, red = silence.", y + 100)
    p.obj("client", f"js {CLIENT_JS}", 20, y, 200)
    p.obj("client-route", "route " + " ".join(CLIENT_DESTINATIONS), 20, y + 40, 760)
    for key in ["input-msg", "instrument-msg", "tempo-msg", "find-msg", "k-msg", "host-msg", "port-msg", "reply-msg",
                "token-msg", "stream-msg", "nudge-msg", "volume-msg", "tick"]:
        p.connect(key, 0, "client", 0)
    p.connect("client", 0, "client-route", 0)
    out = {name: i for i, name in enumerate(CLIENT_DESTINATIONS)}
    p.ui("light", "panel", 20, y + 80, 16, 16, present=(6, 8, 12, 12), shape=1, rounded=0, mode=0,
         bgcolor=[0.55, 0.55, 0.55, 1.0])
    p.message("health", "looking for the server...", 50, y + 80, 440, present=(24, 4, 420, 20))
    p.message("info", "type an instrument, press Find", 520, y + 80, 600, present=(6, 100, 438, 40))
    p.connect("client-route", out["light"], "light", 0)
    p.connect("client-route", out["health"], "health", 0)
    p.connect("client-route", out["info"], "info", 0)

    # --- 5. Snapshot and streaming --------------------------------------------------------------
    y = p.section("5. SNAPSHOT AND STREAM. snapshot~ samples record~'s position (0..1) just before each request: "
                  "there sits the oldest sample. stemserver_stream.js copies the ring into ---snap oldest first and "
                  "makes it writewave the WAV that /stemserver/query/file names; or it streams the same audio as "
                  "/stemserver/stream/begin, /stemserver/stream/floats (1536 samples, under 8 KB each), "
                  "/stemserver/stream/end, paced. It tells the client when the file is written or the upload sent.",
                  y + 130)
    p.obj("audio-order", "t a b", 20, y)
    p.obj("head", "snapshot~", 240, y + 30)
    p.obj("head-msg", "prepend head", 240, y + 60)
    p.obj("stream-js", f"js {STREAM_JS} ---ring ---snap", 20, y + 100, 250)
    p.obj("snap", "buffer~ ---snap 8000 2", 300, y + 140)
    p.connect("client-route", out["audio"], "audio-order", 0)
    p.connect("audio-order", 1, "head", 0)
    p.connect("record", 0, "head", 0)
    p.connect("head", 0, "head-msg", 0)
    p.connect("head-msg", 0, "stream-js", 0)
    p.connect("audio-order", 0, "stream-js", 0)
    p.connect("stream-js", 1, "snap", 0)
    p.connect("stream-js", 2, "client", 0)
    p.connect("size", 0, "snap", 0)

    # --- 6. Network ---------------------------------------------------------------------------
    y = p.section("6. NETWORK. udpsend carries every OSC message to the server (127.0.0.1 9000 unless Server and "
                  "its port say otherwise). The server answers on the registered reply port: udpreceive gets the "
                  "replies, route sorts them by address, prepend names them for the client.", y + 190)
    p.obj("udpsend", "udpsend 127.0.0.1 9000", 20, y)
    p.obj("udpreceive", "udpreceive 7401", 300, y)
    p.obj("replies", "route " + " ".join(ROUTE_REPLIES), 300, y + 40, 580)
    for i, name in enumerate(REPLY_MESSAGES):
        key = f"reply-{name}"
        p.obj(key, f"prepend {name}", 300 + 120 * i, y + 80, 110)
        p.connect("replies", i, key, 0)
        p.connect(key, 0, "client", 0)
    p.connect("client-route", out["osc"], "udpsend", 0)
    p.connect("stream-js", 0, "udpsend", 0)
    p.connect("client-route", out["listen"], "udpreceive", 0)
    p.connect("udpreceive", 0, "replies", 0)

    # --- 7. Results and audition -------------------------------------------------------------------
    y = p.section("7. RESULTS AND AUDITION. Pick a stem in the menu: its path shows below it (select it to copy it, "
                  "or find the file to drag it into Live), buffer~ ---stem loads it, and once it is loaded the client "
                  "starts groove~ at offset_at_end_s plus the time since Find times the stem's stretch, so the stem "
                  "plays in time with the music that has kept playing. sig~ sets groove~'s speed to the stretch, "
                  "time-stretched (@timestretch 1: the pitch stays), and pitchshiftcent transposes it into the mix's "
                  "key. The audition goes to dac~ (Max) or plugout~ (Live), where the track's own sound passes "
                  "through unchanged.", y + 120)
    p.ui("results", "umenu", 20, y, 330, 22, present=(6, 52, 330, 20))
    p.obj("select-msg", "prepend select", 20, y + 30)
    p.ui("path", "textedit", 20, y + 60, 440, 22, present=(6, 76, 438, 20), text="", readonly=1, lines=1)
    p.ui("play", "textbutton", 380, y, 50, 22, present=(342, 52, 48, 20), text="Play")
    p.message("play-msg", "play", 380, y + 30)
    p.ui("stop", "textbutton", 440, y, 50, 22, present=(394, 52, 50, 20), text="Stop")
    p.message("stop-msg", "stop", 440, y + 30)
    p.obj("stem", "buffer~ ---stem", 520, y)
    p.message("loaded-msg", "loaded", 520, y + 30)
    p.connect("client-route", out["menu"], "results", 0)
    p.connect("results", 0, "select-msg", 0)
    p.connect("select-msg", 0, "client", 0)
    p.connect("client-route", out["path"], "path", 0)
    p.connect("play", 0, "play-msg", 0)
    p.connect("play-msg", 0, "client", 0)
    p.connect("stop", 0, "stop-msg", 0)
    p.connect("stop-msg", 0, "client", 0)
    p.connect("client-route", out["stem"], "stem", 0)
    p.connect("stem", 1, "loaded-msg", 0)
    p.connect("loaded-msg", 0, "client", 0)

    p.obj("rate", "sig~ 1", 700, y)
    p.obj("input-receive", "r ---inputmode", 940, y)
    p.obj("groove", "groove~ ---stem 2 @timestretch 1", 700, y + 60, 220)
    p.obj("gain-l", "*~ 0.", 700, y + 100)
    p.obj("gain-r", "*~ 0.", 780, y + 100)
    p.obj("out-l", "gate~ 2 1", 700, y + 140)
    p.obj("out-r", "gate~ 2 1", 820, y + 140)
    p.obj("plugin-through", "plugin~", 940, y + 140)
    p.obj("dac", "dac~ 1 2", 700, y + 190)
    p.obj("plugout", "plugout~", 840, y + 190)
    p.ui("audio-on", "ezdac~", 1060, y + 130, 40, 40, present=(610, 4, 24, 24))
    p.connect("client-route", out["rate"], "rate", 0)
    p.connect("rate", 0, "groove", 0)
    p.connect("client-route", out["groove"], "groove", 0)
    p.connect("client-route", out["loopend"], "groove", 2)
    p.connect("groove", 0, "gain-l", 0)
    p.connect("groove", 1, "gain-r", 0)
    p.connect("client-route", out["level"], "gain-l", 1)
    p.connect("client-route", out["level"], "gain-r", 1)
    p.connect("input-receive", 0, "out-l", 0)
    p.connect("input-receive", 0, "out-r", 0)
    p.connect("gain-l", 0, "out-l", 1)
    p.connect("gain-r", 0, "out-r", 1)
    p.connect("out-l", 0, "dac", 0)
    p.connect("out-r", 0, "dac", 1)
    p.connect("out-l", 1, "plugout", 0)
    p.connect("out-r", 1, "plugout", 1)
    p.connect("plugin-through", 0, "plugout", 0)  # Max for Live: the track's own sound passes through
    p.connect("plugin-through", 1, "plugout", 1)

    # --- Presentation labels -----------------------------------------------------------------------
    y = p.section("Labels of the device view (they show in presentation mode only):", y + 250)
    labels = [("stemserver", (450, 4, 150, 20)), ("Instrument", (6, 28, 66, 20)), ("k", (212, 28, 16, 20)),
              ("Server", (450, 52, 46, 20)), ("Reply", (450, 76, 46, 20)), ("Stream", (578, 76, 56, 20)),
              ("Token", (450, 100, 46, 20)), ("Nudge (ms)", (450, 124, 70, 20)), ("Seconds", (450, 148, 70, 20)),
              ("Vol", (6, 148, 30, 20))]
    for i, (text, rect) in enumerate(labels):
        p.comment(text, 20 + 110 * i, y, 100, present=rect)
    return p.json()


def main() -> None:
    path = HERE / "stemserver.maxpat"
    path.write_text(json.dumps(build(), indent="\t") + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
