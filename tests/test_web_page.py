"""The browser page as a person uses it: Debian's Chromium, headless, driven by Playwright, against a
real `stemserver serve` subprocess with the shipped default model and a library indexed from the demo
stems. Mixes are chosen and dropped, results come from the real engine, the audition is checked on the
page's own audio graph, and a hostile page on another local port is refused."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import soundfile
from test_server import Server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from stemserver.defaults import BUNDLED_DEMO as DEMO
from stemserver.defaults import BUNDLED_MODEL as MODEL

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium (scripts/test.sh installs it: apt-get install chromium chromium-driver)",
                allow_module_level=True)
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    pytest.skip("needs the playwright package (pip install -e '.[test]')", allow_module_level=True)

pytestmark = pytest.mark.slow  # a server, an index of demo stems and a browser (README: test tiers)

DEMO_FILES = json.loads((DEMO / "demo.json").read_text())["files"]
MIX = DEMO / next(f["path"] for f in DEMO_FILES if f["kind"] == "mix")  # the one the printed first query sends
FOLDERS = ("bass", "drums", "guitar")
INDEXED = sum(len(list((DEMO / "stems" / folder).iterdir())) for folder in FOLDERS)
ADDED_LATER = DEMO / next(f["path"] for f in DEMO_FILES if f["path"].startswith("stems/piano/"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream"]
WAIT_MS = 60_000
# Before the page's own script runs: record every AudioBufferSourceNode.start, as the audio graph sees it.
RECORD_STARTS = """
window.recordedStarts = [];
const start = AudioBufferSourceNode.prototype.start;
AudioBufferSourceNode.prototype.start = function (when, offset, duration) {
  window.recordedStarts.push({when, offset, now: this.context.currentTime, duration: this.buffer.duration,
                              rate: this.playbackRate.value, detune: this.detune.value, loop: this.loop,
                              loopEnd: this.loopEnd});
  return start.apply(this, arguments);
};
window.recordedGains = [];  // the page's GainNodes, in the order it makes them: the mix's, then the stem's
const createGain = BaseAudioContext.prototype.createGain;
BaseAudioContext.prototype.createGain = function () {
  const node = createGain.apply(this, arguments);
  window.recordedGains.push(node);
  return node;
};
"""


def index_demo_stems(source: Path, library: Path, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "stemserver", "index", str(source), "--library", str(library),
                    "--checkpoint", str(MODEL), "--device", "cpu", "--threads", "1"],
                   check=True, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Three folders of demo stems and one file no decoder reads (a failure the library view lists)."""
    root = tmp_path_factory.mktemp("samples")
    for folder in FOLDERS:
        shutil.copytree(DEMO / "stems" / folder, root / folder)
    (root / "guitar" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    return root


@pytest.fixture(scope="module")
def library(source: Path, tmp_path_factory) -> Path:
    library = tmp_path_factory.mktemp("library")
    index_demo_stems(source, library, {**os.environ, "STEMSERVER_CONFIG": ""})
    return library


@pytest.fixture(scope="module")
def server(library: Path):
    server = Server(MODEL, library)
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Session:
    """The page in one tab, with every request, console message and WebSocket frame it made."""

    def __init__(self, browser, url: str):
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.grant_permissions(["microphone", "clipboard-read", "clipboard-write"], origin=self.origin)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.replies: list[dict] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: message.type in ("error", "warning")
                     and self.problems.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("websocket", lambda socket: socket.on(
            "framereceived", lambda frame: isinstance(frame, str) and self.replies.append(json.loads(frame))))
        self.page.add_init_script(RECORD_STARTS)
        self.page.goto(url)

    def starts(self) -> list[dict]:
        return self.page.evaluate("() => window.recordedStarts")

    def wait(self, expression: str, arg=None) -> None:
        # A function, not a string: the page's Content-Security-Policy forbids eval, which a string predicate uses.
        self.page.wait_for_function(f"(arg) => {expression}", arg=arg, timeout=WAIT_MS)

    def search(self, instrument: str) -> dict:
        """Search with the mix the page holds; the result the server sent."""
        before = len([reply for reply in self.replies if reply["type"] in ("result", "error")])
        answered = self.page.evaluate("() => window.stemserverPage.searches")
        self.page.fill("#instrument", instrument)
        self.page.click("#search")
        self.wait("window.stemserverPage.searches > arg", answered)
        replies = [reply for reply in self.replies if reply["type"] in ("result", "error")]
        assert len(replies) > before, "the page showed an answer the server never sent"
        return replies[-1]


@pytest.fixture(scope="module")
def session(browser, server):
    session = Session(browser, server.page)
    expect(session.page.locator("#status")).to_contain_text("connected", timeout=WAIT_MS)
    yield session
    session.context.close()  # before the server stops: it would wait for the page's connection to close


def wav_bytes(path: Path, seconds: float) -> bytes:
    """The first `seconds` of an audio file as a WAV: a mix whose length no demo stem has."""
    audio, rate = soundfile.read(path, dtype="float32")
    out = io.BytesIO()
    soundfile.write(out, audio[: int(seconds * rate)], rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


# True when something was drawn on a canvas (toDataURL: getImageData would make Chromium warn the page).
DRAWN = """(canvas) => {
  const blank = document.createElement("canvas");
  [blank.width, blank.height] = [canvas.width, canvas.height];
  return canvas.toDataURL() !== blank.toDataURL();
}"""
DROP = """([name, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "audio/wav"}));
  const zone = document.querySelector("#drop-zone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
  }
}"""


# -- the page, the mix and the results ------------------------------------------------------------


def test_the_page_loads_offline_with_its_status(session: Session, server):
    expect(session.page.locator("#status")).to_contain_text(f"library {INDEXED} files")
    expect(session.page.locator("#capture")).to_be_disabled()  # the server was started without --capture
    assert "--capture" in session.page.get_attribute("#capture", "title")
    assert session.page.locator("#instrument-list option[value=bass]").count() == 1
    assert session.problems == []
    assert session.requests and all(url.startswith(session.origin + "/") for url in session.requests)


@pytest.fixture(scope="module")
def searched(session: Session) -> dict:
    """A demo mix chosen, then its first 20 s dropped (the mix from then on), the window from 4 s, bass searched:
    the result the server sent."""
    page = session.page
    page.set_input_files("#mix-file", str(MIX))
    expect(page.locator("#mix-name")).to_contain_text(f"{MIX.name} · 30.0 s", timeout=WAIT_MS)
    page.evaluate(DROP, ["first 20 s.wav", base64.b64encode(wav_bytes(MIX, 20.0)).decode()])
    expect(page.locator("#mix-name")).to_contain_text("first 20 s.wav · 20.0 s", timeout=WAIT_MS)
    page.fill("#window-start", "4")
    page.dispatch_event("#window-start", "change")
    result = session.search("bass")
    assert result["type"] == "result", result
    return result


def test_a_chosen_then_a_dropped_mix_is_searched_and_listed_as_the_server_answered(session: Session, searched):
    page, result = session.page, searched
    assert result["query_seconds"] == pytest.approx(8.0, abs=0.01)
    items = page.locator("li.result")
    expect(items).to_have_count(len(result["matches"]))
    assert 0 < len(result["matches"]) <= 10
    for item, match in zip(items.all(), result["matches"]):
        assert item.get_attribute("data-rank") == str(match["rank"])
        assert item.get_attribute("data-file-id") == match["file_id"]
        assert item.get_attribute("draggable") == "true"
        assert item.locator(".name").inner_text() == Path(match["path"]).name
        assert item.locator(".folder").inner_text() == match["folder"]
        assert float(item.locator(".score").inner_text()) == pytest.approx(match["score"], abs=5e-4)
        assert f"offset {match['offset_s']:.2f} s" in item.locator(".offset").inner_text()
        expect(item.locator(".loop")).to_have_count(1 if match["loop"] else 0)
    assert {match["folder"] for match in result["matches"]} <= set(FOLDERS)
    # each thumbnail is drawn from the stem's audio, fetched by its id: some pixels are not blank
    session.wait(f"[...document.querySelectorAll('canvas.thumb')].every({DRAWN})")


def test_arrow_keys_move_the_selection(session: Session, searched):
    page = session.page
    items = page.locator("li.result")
    page.locator("#results").click(position={"x": 5, "y": 5})  # focus off the text inputs
    expect(items.nth(0)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_have_attribute("aria-selected", "true")
    expect(items.nth(1)).to_have_class("result selected")
    expect(items.nth(0)).to_have_attribute("aria-selected", "false")
    page.keyboard.press("ArrowUp")
    expect(items.nth(0)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowUp")  # at the top it stays
    expect(items.nth(0)).to_have_attribute("aria-selected", "true")
    page.locator("#instrument").focus()
    page.keyboard.press("ArrowDown")  # in a text input the keys are the input's
    expect(items.nth(0)).to_have_attribute("aria-selected", "true")


# -- the audition -----------------------------------------------------------------------------------


def play(session: Session, match: dict) -> list[dict]:
    """Press play with `match` selected; the starts the audio graph received for it."""
    page = session.page
    page.evaluate("() => { window.recordedStarts = []; }")
    page.locator(f"li.result[data-rank='{match['rank']}']").click()
    page.click("#play")
    session.wait("window.recordedStarts.length >= 2")
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "true")
    starts = session.starts()
    page.click("#play")
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "false")
    return starts


def mix_and_stem(starts: list[dict]) -> tuple[dict, dict]:
    (mix,) = [start for start in starts if start["duration"] == pytest.approx(20.0, abs=0.01)]
    (stem,) = [start for start in starts if start is not mix]
    return mix, stem


def test_the_stem_starts_at_its_offset_on_the_mix_clock(session: Session, searched):
    result = searched
    match = next((m for m in result["matches"] if m["offset_s"] > 0 and not m["loop"]), result["matches"][0])
    mix, stem = mix_and_stem(play(session, match))
    assert mix["when"] == stem["when"] and mix["when"] > mix["now"]  # one moment, ahead on the one clock
    assert mix["offset"] == pytest.approx(4.0, abs=1e-6)  # the window start the query was made with
    assert stem["offset"] == pytest.approx(match["offset_s"], abs=1e-6)
    assert stem["duration"] == pytest.approx(match["duration_s"], abs=0.05)
    assert (stem["rate"], stem["detune"], mix["rate"]) == (1, 0, 1)
    schedule = session.page.evaluate("() => window.stemserverPage.lastSchedule")
    assert schedule["when"] == mix["when"] and schedule["stemOffset"] == pytest.approx(match["offset_s"], abs=1e-6)


def test_fit_plays_the_stem_at_the_mix_tempo_from_the_same_offset(session: Session, searched):
    result = searched
    match = next(m for m in result["matches"] if m["stretch"] and abs(m["stretch"] - 1) > 0.01)
    session.page.check("#fit")
    try:
        mix, stem = mix_and_stem(play(session, match))
    finally:
        session.page.uncheck("#fit")
    assert stem["rate"] == pytest.approx(match["stretch"], rel=1e-6) and mix["rate"] == 1
    # WebAudio's detune is a rate too: anything but 0 would undo the stretch
    assert stem["detune"] == 0
    assert stem["offset"] == pytest.approx(match["offset_s"], abs=1e-6) and stem["when"] == mix["when"]


def test_looping_the_window_schedules_the_next_pass_ahead(session: Session, searched):
    result = searched
    match = result["matches"][0]
    session.page.check("#loop")
    try:
        starts = play(session, match)
    finally:
        session.page.uncheck("#loop")
    first = starts[0]["when"]
    passes = sorted({start["when"] for start in starts})
    assert passes[:2] == [first, pytest.approx(first + result["query_seconds"], abs=1e-6)]
    for when in passes[:2]:
        mix, stem = mix_and_stem([start for start in starts if start["when"] == when])
        assert mix["offset"] == pytest.approx(4.0, abs=1e-6)
        assert stem["offset"] == pytest.approx(match["offset_s"] % stem["duration"] if match["loop"]
                                               else match["offset_s"], abs=1e-6)


def test_mute_solo_and_gain_set_the_levels_mix_and_stem_play_at(session: Session, searched):
    def levels() -> list[float]:
        return session.page.evaluate("() => window.recordedGains.slice(0, 2).map(node => node.gain.value)")

    assert levels() == [1, 1]
    for box, expected in (("#stem-mute", [1, 0]), ("#mix-mute", [0, 1]), ("#mix-solo", [1, 0]), ("#stem-solo", [0, 1])):
        session.page.check(box)
        try:
            assert levels() == expected, box
        finally:
            session.page.uncheck(box)
    session.page.check("#mix-solo")
    session.page.check("#stem-solo")  # both soloed: both play
    assert levels() == [1, 1]
    session.page.uncheck("#mix-solo")
    session.page.uncheck("#stem-solo")
    session.page.fill("#stem-gain", "-6")
    try:
        assert levels() == [1, pytest.approx(10 ** (-6 / 20), rel=1e-5)]
        expect(session.page.locator("#stem-gain-value")).to_have_text("-6 dB")
    finally:
        session.page.fill("#stem-gain", "0")
    assert levels() == [1, 1]


def test_the_server_preview_is_rendered_and_played_or_its_error_shown(session: Session, searched):
    page = session.page
    page.locator("li.result").first.click()
    page.evaluate("() => { window.recordedStarts = []; }")
    page.click("#render-preview")
    session.wait("document.querySelector('#preview-status').textContent.startsWith('preview ready') "
                 "|| !document.querySelector('#error').hidden")
    answer = [reply for reply in session.replies if reply["type"] in ("preview", "error")][-1]
    if importlib.util.find_spec("pedalboard") is None:  # the server cannot render: the page says what it said
        assert answer["type"] == "error"
        expect(page.locator("#error")).to_have_text(answer["message"])
        return
    assert answer["type"] == "preview", answer
    expect(page.locator("#preview-status")).to_contain_text(f"{answer['duration_s']:.1f} s")
    session.wait("window.recordedStarts.length === 1")
    (start,) = session.starts()
    assert start["duration"] == pytest.approx(answer["duration_s"], abs=0.05)
    page.click("#play")  # stops it
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "false")


# -- drag out, copy, and the audio by id --------------------------------------------------------------


def test_a_result_drags_out_as_its_audio_and_copies_its_path(session: Session, searched):
    page = session.page
    match = searched["matches"][0]
    item = page.locator("li.result").first
    dragged = item.evaluate("""(item) => {
      const transfer = new DataTransfer();
      item.dispatchEvent(new DragEvent("dragstart", {dataTransfer: transfer, bubbles: true}));
      return {download: transfer.getData("DownloadURL"), uri: transfer.getData("text/uri-list"),
              text: transfer.getData("text/plain")};
    }""")
    url = f"{session.origin}/audio/{match['file_id']}"
    assert dragged == {"download": f"audio/ogg:{Path(match['path']).name}:{url}", "uri": url, "text": match["path"]}
    expected = Path(match["path"]).read_bytes()
    fetched = page.evaluate("""async (url) => {
      const whole = await fetch(url);
      const part = await fetch(url, {headers: {Range: "bytes=0-99"}});
      return {status: whole.status, size: (await whole.arrayBuffer()).byteLength,
              type: whole.headers.get("content-type"), partStatus: part.status,
              part: [...new Uint8Array(await part.arrayBuffer())]};
    }""", url)
    assert (fetched["status"], fetched["size"], fetched["type"]) == (200, len(expected), "audio/ogg")
    assert (fetched["partStatus"], bytes(fetched["part"])) == (206, expected[:100])

    item.locator("button.copy-path").click()
    expect(item.locator("button.copy-path")).to_have_text("copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == match["path"]


# -- the library view ---------------------------------------------------------------------------------


def test_the_library_view_lists_folders_and_failures_and_reindexes_with_progress(session: Session, source: Path):
    page = session.page
    page.click("#library-tab")
    expect(page.locator("#library-view")).to_be_visible()
    folders = page.locator("#library-folders tbody tr")
    expect(folders).to_have_count(len(FOLDERS))
    counts = {row.locator("td").nth(0).inner_text(): row.locator("td").nth(1).inner_text() for row in folders.all()}
    assert counts == {folder: str(len(list((DEMO / "stems" / folder).iterdir()))) for folder in FOLDERS}
    failure = page.locator("#library-failures tbody tr")
    expect(failure).to_have_count(1)
    assert failure.locator("td").nth(0).inner_text() == str(source / "guitar" / "broken.wav")
    assert failure.locator("td").nth(1).inner_text()  # the reason
    expect(page.locator("#library-files tbody tr:not(.group)")).to_have_count(INDEXED)

    (source / "piano").mkdir()
    shutil.copy2(ADDED_LATER, source / "piano" / ADDED_LATER.name)
    page.click("#reindex")
    expect(page.locator("#reindex-status")).to_contain_text("reindexed: 1 added", timeout=WAIT_MS)
    progress = [reply for reply in session.replies if reply["type"] == "progress"]
    assert progress and any(reply["done"] == reply["total"] for reply in progress)
    bar = page.locator("#reindex-progress")
    assert bar.evaluate("(bar) => bar.value === bar.max && bar.max >= 1")
    expect(folders).to_have_count(len(FOLDERS) + 1)
    expect(page.locator("#library-files tbody tr:not(.group)")).to_have_count(INDEXED + 1)
    expect(page.locator("#status")).to_contain_text(f"library {INDEXED + 1} files")
    page.click("#search-tab")
    expect(page.locator("#search-view")).to_be_visible()


# -- recording from the microphone ------------------------------------------------------------------


def test_a_recording_from_the_microphone_becomes_the_mix_and_is_searched(session: Session):
    page = session.page
    page.click("#record")
    expect(page.locator("#record")).to_have_attribute("aria-pressed", "true")
    session.wait("window.stemserverPage.recordedSeconds >= 3")  # Chromium's fake device: a beep a second
    page.click("#record")
    expect(page.locator("#mix-name")).to_contain_text("recording", timeout=WAIT_MS)
    seconds = float(page.locator("#mix-name").inner_text().split(" · ")[-1].removesuffix(" s"))
    assert seconds >= 2.5
    assert page.locator("#mix-waveform").evaluate(DRAWN)
    answer = session.search("bass")
    if answer["type"] == "result":
        expect(page.locator("li.result")).to_have_count(len(answer["matches"]))
    else:  # a beep may be too little music: the page shows the server's reason
        expect(page.locator("#error")).to_have_text(answer["message"])


# -- the screenshot, and what the whole session fetched ------------------------------------------------


def test_a_screenshot_after_a_search(session: Session, tmp_path: Path):
    page = session.page
    page.evaluate(DROP, [f"{MIX.stem} (first 20 s).wav", base64.b64encode(wav_bytes(MIX, 20.0)).decode()])
    expect(page.locator("#mix-name")).to_contain_text("20.0 s", timeout=WAIT_MS)
    assert session.search("bass")["type"] == "result"
    page.locator("li.result").nth(1).click()
    page.mouse.move(0, 0)
    session.wait(f"[...document.querySelectorAll('canvas.thumb')].every({DRAWN})")
    paths = [tmp_path / "web-page.png"]
    if os.environ.get("STEMSERVER_SCREENSHOT"):
        paths.append(Path(os.environ["STEMSERVER_SCREENSHOT"]))
    for path in paths:
        page.screenshot(path=str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", path.read_bytes()[16:24]) == (1280, 800)


def test_nothing_was_fetched_from_outside_and_nothing_went_wrong(session: Session):
    assert session.problems == [], session.problems
    assert all(url.startswith(session.origin + "/") for url in session.requests)


# -- refusals: another origin, another host name ---------------------------------------------------------

HOSTILE = """<!doctype html><title>hostile</title><script>
const report = {};
const target = "127.0.0.1:%(port)s";
const socket = new WebSocket(`ws://${target}/`);
socket.onopen = () => { report.socket = "open"; };
socket.onclose = () => { report.socket = report.socket || "refused"; };
fetch(`http://${target}/audio/%(id)s`).then((r) => { report.fetch = r.status; }, () => { report.fetch = "refused"; });
const audio = new Audio(`http://${target}/audio/%(id)s`);
audio.onloadedmetadata = () => { report.audio = "loaded"; };
audio.onerror = () => { report.audio = "refused"; };
window.report = report;
</script>"""


def hostile_site(port: int, file_id: str) -> ThreadingHTTPServer:
    body = (HOSTILE % {"port": port, "id": file_id}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site


def test_a_page_from_another_origin_is_refused(browser, server, searched):
    port = urlsplit(server.page).port
    file_id = searched["matches"][0]["file_id"]
    site = hostile_site(port, file_id)
    context = browser.new_context()
    statuses: dict[str, list[int]] = {}
    try:
        hostile = context.new_page()
        # what the server answered, which the hostile script itself may not see (CORS hides a fetch's status)
        hostile.on("response", lambda response: statuses.setdefault(response.url, []).append(response.status))
        hostile.goto(f"http://127.0.0.1:{site.server_address[1]}/")
        hostile.wait_for_function("() => report.socket && report.fetch && report.audio", timeout=WAIT_MS)
        assert hostile.evaluate("() => report") == {"socket": "refused", "fetch": "refused", "audio": "refused"}
    finally:
        context.close()
        site.shutdown()
    # the fetch and the <audio> element: 403, where the page's own origin got 200 for the same id
    assert set(statuses.get(f"http://127.0.0.1:{port}/audio/{file_id}", [])) == {403}, statuses


@pytest.mark.parametrize("path", ["/", "/app.js", "/audio/ID"])
def test_a_rebound_host_name_is_refused(server, searched, path: str):
    url = server.page.rstrip("/") + path.replace("ID", searched["matches"][0]["file_id"])
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.status == 200  # the same request with the real host name is served
    request = urllib.request.Request(url, headers={"Host": f"evil.example:{urlsplit(url).port}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    refused.value.close()  # its connection: left open, the server's shutdown would wait for it
    assert refused.value.code == 403


def test_a_rebound_host_name_cannot_open_the_websocket(server):
    port = urlsplit(server.page).port
    with connect(f"ws://127.0.0.1:{port}/", open_timeout=30) as native:  # the same handshake, the real name
        native.send(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(native.recv(timeout=30))["type"] == "pong"
    # DNS rebinding: evil.example resolved to 127.0.0.1, so the browser connects here and says its name
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock, pytest.raises(InvalidStatus) as refused:
        connect(f"ws://evil.example:{port}/", sock=sock, open_timeout=30)
    assert refused.value.response.status_code == 403


def test_with_a_token_the_page_passes_it_on_to_the_websocket_and_the_audio(browser, library: Path):
    token = "a b/c+d"
    own = Server(MODEL, library, "--token", token)
    try:
        refused = Session(browser, own.page)  # no token in its URL: the WebSocket handshake gets 401
        try:
            expect(refused.page.locator("#status")).to_contain_text("this server needs its token: open this page as "
                                                                    "/?token=YOUR_TOKEN", timeout=WAIT_MS)
            assert refused.page.evaluate("() => window.stemserverPage.searches") == 0
        finally:
            refused.context.close()
        session = Session(browser, f"{own.page}?token={quote(token, safe='')}")
        try:
            expect(session.page.locator("#status")).to_contain_text("connected", timeout=WAIT_MS)
            session.page.set_input_files("#mix-file", str(MIX))
            expect(session.page.locator("#mix-name")).to_contain_text(MIX.name, timeout=WAIT_MS)
            result = session.search("bass")
            assert result["type"] == "result" and result["matches"], result
            session.wait(f"[...document.querySelectorAll('canvas.thumb')].every({DRAWN})")  # audio fetched
            audio = [url for url in session.requests if "/audio/" in url]
            assert audio and all(url.endswith(f"?token={quote(token, safe='')}") for url in audio), audio
        finally:
            session.context.close()
    finally:
        assert own.stop() == 0
