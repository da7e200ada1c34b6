"""The page and its audio over HTTP on the WebSocket port, and the WebSocket messages the page needs
(`library`, `reindex`, a preview of uploaded audio): pure parts without sockets, then a real server
on loopback asked the way a browser asks (real HTTP requests with a browser's headers)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import soundfile
from conftest import build_library, melody
from test_server import RATE, Server, library, server, wait_for, write_mix  # noqa: F401  (library, server are fixtures)
from websockets.sync.client import connect

from stemserver.library import Library
from stemserver.server.web import WEB_FOLDER, AudioIds, byte_range, fetch_refusal, page_reply

EVIL = "https://evil.example.com"


# -- without sockets -------------------------------------------------------------------------------

@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-99", 1000, (0, 99)), ("bytes=100-", 1000, (100, 999)), ("bytes=-10", 1000, (990, 999)),
    ("bytes=0-5000", 1000, (0, 999)), ("bytes=990-5,0-1", 1000, None), ("bytes=1000-", 1000, None),
    ("bytes=-0", 1000, None), ("bytes=5-2", 1000, None), ("items=0-1", 1000, None), ("bytes=a-b", 1000, None),
    ("bytes=-", 1000, None), ("bytes=-2000", 1000, (0, 999)), ("bytes=0-0,5-9", 1000, (0, 0)), ("bytes=0-", 0, None),
])
def test_byte_ranges(header: str, size: int, expected):
    assert byte_range(header, size) == expected


def test_audio_ids_are_stable_opaque_and_only_those_issued():
    ids = AudioIds()
    first = ids.issue("/Samples/Bass/a.wav")
    assert first == ids.issue("/Samples/Bass/a.wav") != ids.issue("/Samples/Bass/b.wav")
    assert "Bass" not in first and len(first) == 32
    assert ids.path(first) == "/Samples/Bass/a.wav"
    assert ids.path("0" * 32) is None and ids.path("/Samples/Bass/a.wav") is None and ids.path(first.upper()) is None
    assert AudioIds().issue("/Samples/Bass/a.wav") != first  # another server's ids mean nothing here


def test_page_files_and_nothing_else():
    index = page_reply("/")
    assert index.status == 200 and index.body == (WEB_FOLDER / "index.html").read_bytes()
    headers = dict(index.headers)
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["Content-Type"].startswith("text/html")
    assert page_reply("/app.js").status == 200
    for path in ("/../server/web.py", "/..%2Fweb.py", "/nope.html", "/.hidden.js", "/sub/app.js", "/web.py",
                 "/index.html/.."):
        assert page_reply(path).status == 404, path


def test_only_same_origin_fetches_pass():
    assert fetch_refusal([]) is None and fetch_refusal(["same-origin"]) is None and fetch_refusal(["none"]) is None
    for sites in (["cross-site"], ["same-site"], ["same-origin", "cross-site"]):
        assert "another web site" in fetch_refusal(sites)


# -- a real server ---------------------------------------------------------------------------------

def get(base: str, path: str, **headers) -> tuple[int, dict, bytes]:
    """One HTTP GET as a browser sends it (its Host), with these extra headers."""
    host, port = base.removeprefix("ws://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def ask(url: str, *messages, until: str, origin: str | None = None) -> list[dict]:
    """Send these messages (dicts as JSON, bytes as binary frames) and collect replies up to one of type `until`."""
    with connect(url, max_size=None, origin=origin, open_timeout=30) as ws:
        for message in messages:
            ws.send(message if isinstance(message, bytes) else json.dumps(message))
        replies = []
        while not replies or replies[-1]["type"] not in (until, "error"):
            replies.append(json.loads(ws.recv(timeout=120)))
        return replies


@pytest.fixture(scope="module")
def found(server, tmp_path_factory) -> dict:  # noqa: F811
    """A query answered over WebSocket: the result whose file ids the HTTP tests fetch."""
    mix = write_mix(tmp_path_factory.mktemp("mix") / "mix.wav", 1, 2.0)
    (result,) = ask(server.ws, {"type": "query", "id": "q", "instrument": "bass", "k": 2, "sample_rate": RATE,
                                "channels": 1, "format": "float32"}, mix.astype("<f4").tobytes(), until="result")
    return result


def test_the_page_is_served_on_the_websocket_port_and_its_url_printed(server):  # noqa: F811
    status, headers, body = get(server.ws, "/", Host=server.ws.removeprefix("ws://"))
    assert status == 200 and body == (WEB_FOLDER / "index.html").read_bytes()
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert get(server.ws, "/app.js")[0] == 200 and get(server.ws, "/nothing.js")[0] == 404
    assert server.page == server.ws.replace("ws://", "http://") + "/"


def test_results_carry_ids_that_fetch_their_audio_whole_and_in_ranges(server, found):  # noqa: F811
    match = found["matches"][0]
    assert match["folder"] == Path(match["path"]).parent.name  # the files lie in the folder indexed
    data = Path(match["path"]).read_bytes()
    status, headers, body = get(server.ws, f"/audio/{match['file_id']}")
    assert status == 200 and body == data and headers["Content-Type"] == "audio/wav"
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = get(server.ws, f"/audio/{match['file_id']}", Range="bytes=0-99")
    assert status == 206 and body == data[:100] and headers["Content-Range"] == f"bytes 0-99/{len(data)}"
    status, headers, _ = get(server.ws, f"/audio/{match['file_id']}", Range=f"bytes={len(data)}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"


def test_audio_is_never_served_by_path_or_by_an_id_not_issued(server, found):  # noqa: F811
    path = found["matches"][0]["path"]
    for asked in (f"/audio/{quote(path)}", f"/audio/{'0' * 32}", "/audio/", f"/audio/..%2F..{quote(path)}", path):
        status, _, body = get(server.ws, asked)
        assert status == 404 and b"RIFF" not in body, asked


def test_other_web_sites_and_rebound_hosts_are_refused_page_audio_and_websocket(server, found):  # noqa: F811
    audio = f"/audio/{found['matches'][0]['file_id']}"
    for path in ("/", audio):
        status, _, body = get(server.ws, path, Origin=EVIL)
        assert status == 403 and b"--allow-origin" in body
        status, _, body = get(server.ws, path, Sec_Fetch_Site="cross-site")  # <audio src> from a web site
        assert status == 403 and b"another web site" in body
        status, _, body = get(server.ws, path, Host="evil.example.com:8765")  # DNS rebinding
        assert status == 403 and b"loopback" in body
    assert get(server.ws, audio, Sec_Fetch_Site="same-origin")[0] == 200
    with pytest.raises(Exception, match="403"):
        ask(server.ws, {"type": "ping", "id": 1}, until="pong", origin=EVIL)
    page_origin = server.page.rstrip("/")  # the page's own origin: the one a browser sends from it
    assert ask(server.ws, {"type": "ping", "id": 1}, until="pong", origin=page_origin)[-1]["type"] == "pong"
    localhost = page_origin.replace("127.0.0.1", "localhost")
    assert ask(server.ws, {"type": "ping", "id": 1}, until="pong", origin=localhost)[-1]["type"] == "pong"


def test_the_library_view_lists_files_folders_and_failures(server, library):  # noqa: F811
    (view,) = ask(server.ws, {"type": "library", "id": "l"}, until="library")
    paths = sorted(f["path"] for f in view["files"])
    assert len(paths) == 4 and all(Path(p).name.startswith("line") for p in paths)
    (folder,) = view["folders"]
    assert folder["files"] == 4 and folder["seconds"] == pytest.approx(80.0, abs=0.5)
    assert folder["folder"] == Path(paths[0]).parent.name and view["failures"] == []
    assert {f["folder"] for f in view["files"]} == {folder["folder"]}
    first = view["files"][0]
    assert get(server.ws, f"/audio/{first['file_id']}")[2] == Path(first["path"]).read_bytes()


def test_a_preview_of_uploaded_audio_is_fetched_by_its_id(server, found, tmp_path: Path):  # noqa: F811
    match = found["matches"][0]
    mix = melody(20.0, 1)[: 8 * RATE]
    header = {"type": "preview", "id": "p", "stem": match["path"], "offset": match["offset_s"], "stretch": 1.0,
              "transpose": 0, "seconds": 8.0, "sample_rate": RATE, "channels": 1, "format": "float32"}
    (reply,) = ask(server.ws, header, mix.astype("<f4").tobytes(), until="preview")
    assert reply["type"] == "preview" and reply["duration_s"] == pytest.approx(8.0, abs=1e-3), reply
    status, _, body = get(server.ws, f"/audio/{reply['file_id']}")
    assert status == 200 and body == Path(reply["path"]).read_bytes() and body[:4] == b"RIFF"
    (error,) = ask(server.ws, {**header, "mix": match["path"]}, until="preview")
    assert error["code"] == "bad_request" and "not both" in error["message"]
    outside = tmp_path / "outside.wav"
    shutil.copy(match["path"], outside)
    (error,) = ask(server.ws, {**header, "stem": str(outside)}, mix.astype("<f4").tobytes(), until="preview")
    assert error["code"] == "not_in_library"


def test_reindex_reports_progress_then_serves_the_new_file(identity_checkpoint, tmp_path):
    samples = tmp_path / "samples"
    (samples / "keys").mkdir(parents=True)
    for seed in range(2):
        soundfile.write(samples / "keys" / f"line{seed}.wav", melody(12.0, seed), RATE)
    more = tmp_path / "more"
    more.mkdir()
    soundfile.write(more / "pad.wav", melody(12.0, 7), RATE)
    build_library(more, tmp_path / "library", identity_checkpoint)
    library_dir = build_library(samples, tmp_path / "library", identity_checkpoint)
    own = Server(identity_checkpoint, library_dir)
    try:
        soundfile.write(samples / "keys" / "new.wav", melody(12.0, 5), RATE)
        (samples / "keys" / "broken.wav").write_bytes(b"RIFF not really")
        replies = ask(own.ws, {"type": "reindex", "id": "r"}, until="reindexed")
        *progress, done = replies
        assert done["type"] == "reindexed" and done["added"] == 1 and done["failed"] == 1, replies
        assert done["files"] == 4 and done["generation"] == 3
        assert [p["type"] for p in progress] == ["progress"] * len(progress) and progress[-1]["done"] == 5 == \
            progress[-1]["total"] and progress[0]["done"] == 0
        (view,) = ask(own.ws, {"type": "library", "id": "l"}, until="library")
        assert {f["name"] for f in view["files"]} == {"line0.wav", "line1.wav", "new.wav", "pad.wav"}
        assert view["folders"] == [{"folder": "keys", "files": 3, "seconds": 36.0},
                                   {"folder": "more", "files": 1, "seconds": 12.0}]
        assert [Path(f["path"]).name for f in view["failures"]] == ["broken.wav"] and view["failures"][0]["error"]
        shutil.rmtree(samples)  # a folder that is gone is named, and nothing is lost
        (error,) = ask(own.ws, {"type": "reindex", "id": "r2"}, until="reindexed")
        assert error["code"] == "library" and f"{samples}, a folder this library was indexed from, is missing" in \
            error["message"] and f"`stemserver library remove {samples}`" in error["message"]
        assert ask(own.ws, {"type": "status", "id": "s"}, until="status")[0]["library_files"] == 4
        with Library(library_dir) as edited:  # `stemserver library remove SAMPLES` while the server runs
            assert edited.remove([samples]) == 3
        (done,) = ask(own.ws, {"type": "reindex", "id": "r3"}, until="reindexed")[-1:]
        assert done["type"] == "reindexed" and done["files"] == 1, done  # the other folder's file alone
    finally:
        assert own.stop() == 0


def test_with_a_token_audio_needs_it_and_the_page_does_not(identity_checkpoint, library, found):  # noqa: F811
    own = Server(identity_checkpoint, library, "--token", "s3cret pass")
    try:
        assert get(own.ws, "/")[0] == 200  # the page asks for the token itself
        (result,) = ask(own.ws + "/?token=" + quote("s3cret pass"), {
            "type": "query_file", "id": "q", "path": found["matches"][0]["path"], "instrument": "bass", "k": 1},
            until="result")
        audio = f"/audio/{result['matches'][0]['file_id']}"
        assert get(own.ws, audio)[0] == 401
        assert get(own.ws, audio + "?token=wrong")[0] == 401
        assert get(own.ws, audio + "?token=" + quote("s3cret pass"))[0] == 200
        assert get(own.ws, audio, Authorization="Bearer s3cret pass")[0] == 200
    finally:
        assert own.stop() == 0


def test_uploaded_preview_audio_is_checked_like_a_query(server, found):  # noqa: F811
    header = {"type": "preview", "id": "p", "stem": found["matches"][0]["path"], "sample_rate": RATE, "channels": 1,
              "format": "float32"}
    (error,) = ask(server.ws, header, np.full(RATE * 3, np.nan, "<f4").tobytes(), until="preview")
    assert error["code"] == "bad_audio" and "NaN" in error["message"]
    (error,) = ask(server.ws, {**header, "sample_rate": 7}, until="preview")
    assert error["code"] == "bad_audio" and "rate" in error["message"]


def test_open_opens_the_page_in_the_users_browser(identity_checkpoint, library, tmp_path, monkeypatch):  # noqa: F811
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(browser))  # Python's webbrowser runs $BROWSER with the URL
    own = Server(identity_checkpoint, library, "--open", "--token", "t/k")
    try:
        wait_for(lambda: opened.is_file() and opened.read_text().strip(), "the browser to be started")
        assert opened.read_text().strip() == own.page + "?token=t%2Fk"
    finally:
        assert own.stop() == 0


def test_shutdown_drops_connections_that_sent_no_request(identity_checkpoint, library):  # noqa: F811
    """A browser opens spare connections and may send nothing on them: the server must not wait for their
    handshake timeout before it exits."""
    own = Server(identity_checkpoint, library)
    host, port = own.ws.removeprefix("ws://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as idle:
        wait_for(lambda: get(own.ws, "/")[0] == 200, "the server to answer beside the idle connection")
        assert own.stop() == 0
        assert "dropped 1 connection(s) that had sent no request" in own.log
        assert idle.recv(1) == b""  # closed by the server

