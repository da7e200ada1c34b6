"""Who may use a running server: web pages (Origin), DNS rebinding (Host), tokens, and what a client
can write into the log. A real server on loopback, real websockets clients presenting the headers a
browser would."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from test_server import OscClient, Server, library, server  # noqa: F401  (library, server are fixtures)
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from stemserver.errors import ConfigError
from stemserver.server.app import ServerOptions, check_security
from stemserver.server.logs import escape_control
from stemserver.server.security import host_name, parse_origin

EVIL = "https://evil.example.com"


def ping(url: str, **connect_args) -> dict:
    with connect(url, proxy=None, open_timeout=30, **connect_args) as ws:
        ws.send(json.dumps({"type": "ping", "id": "p"}))
        return json.loads(ws.recv(timeout=30))


def refusal(url: str, **connect_args) -> tuple[int, str]:
    """The HTTP status and body with which the server refuses this handshake."""
    with pytest.raises(InvalidStatus) as refused:
        ping(url, **connect_args)
    response = refused.value.response
    return response.status_code, response.body.decode()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_web_page_is_refused_and_told_which_flag_allows_it(server):  # noqa: F811
    status, body = refusal(server.ws, origin=EVIL)
    assert status == 403 and EVIL in body and f"--allow-origin {EVIL}" in body
    assert f"WebSocket connection refused: a web page (Origin: {EVIL})" in server.log
    assert refusal(server.ws, origin="null")[0] == 403  # sandboxed pages and file:// send this


def test_native_clients_send_no_origin_and_are_served(server):  # noqa: F811
    assert ping(server.ws)["type"] == "pong"


def test_an_allowed_origin_is_served_and_others_still_refused(identity_checkpoint: Path, library: Path):  # noqa: F811
    allowed = Server(identity_checkpoint, library, "--allow-origin", "http://localhost:3000/",
                     "--allow-origin", "https://page.example.com:443")
    try:
        assert ping(allowed.ws, origin="http://localhost:3000")["type"] == "pong"
        assert ping(allowed.ws, origin="https://page.example.com")["type"] == "pong"
        assert refusal(allowed.ws, origin=EVIL)[0] == 403
        assert refusal(allowed.ws, origin="http://localhost:3001")[0] == 403
    finally:
        assert allowed.stop() == 0


def to_server(server_url: str) -> dict:
    """Connect to the server's own socket, whatever name the URL (hence the Host header) gives: what a
    browser does once DNS rebinding made that name resolve to 127.0.0.1."""
    return {"sock": socket.create_connection(("127.0.0.1", port_of(server_url)), timeout=30)}


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_names_are_accepted_in_host(server, host):  # noqa: F811
    url = f"ws://{host}:{port_of(server.ws)}"
    assert ping(url, **to_server(server.ws))["type"] == "pong"


def test_a_rebinding_host_is_refused(server):  # noqa: F811
    url = f"ws://evil.example.com:{port_of(server.ws)}"
    status, body = refusal(url, **to_server(server.ws))
    assert status == 403 and "evil.example.com" in body and "DNS rebinding" in body and "--host" in body
    assert "WebSocket connection refused: Host evil.example.com" in server.log


def test_a_percent_encoded_token_is_decoded(identity_checkpoint: Path, library: Path):  # noqa: F811
    token = "a b&c=d/%+é"
    guarded = Server(identity_checkpoint, library, "--token", token)
    try:
        assert ping(f"{guarded.ws}?token={quote(token, safe='')}")["type"] == "pong"
        assert ping(guarded.ws, additional_headers={"Authorization": f"Bearer {token}"})["type"] == "pong"
        assert refusal(f"{guarded.ws}?token={quote(token[:-1], safe='')}")[0] == 401
        assert refusal(guarded.ws)[0] == 401
        assert refusal(f"{guarded.ws}?token={quote(token, safe='')}", origin=EVIL)[0] == 403  # a token is no pass
    finally:
        assert guarded.stop() == 0


def test_a_blank_token_is_refused_at_start(identity_checkpoint: Path, library: Path):  # noqa: F811
    result = subprocess.run([sys.executable, "-m", "stemserver", "serve", "--checkpoint", str(identity_checkpoint),
                             "--library", str(library), "--token", "  \t"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--token: must not be empty" in result.stderr
    with pytest.raises(ConfigError, match="token is empty"):
        check_security(ServerOptions(host="0.0.0.0", token=" "))


def test_origins_and_hosts_are_read_as_browsers_write_them():
    assert parse_origin("HTTPS://Page.Example.com:443/") == "https://page.example.com"
    assert parse_origin("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("null", "localhost:3000", "http://x/path", "http://x?q", "http://x:99999", "http://u@x"):
        with pytest.raises(ValueError):
            parse_origin(bad)
    assert [host_name(h) for h in ("localhost:8765", "[::1]:8765", "[::1]", "127.0.0.1", "Localhost")] == [
        "localhost", "::1", "::1", "127.0.0.1", "localhost"]


FORGED = "2026-01-01 00:00:00,000 ERROR forged line"


def test_what_clients_send_cannot_forge_log_lines(server, tmp_path: Path):  # noqa: F811
    path = f"{tmp_path}/mix\n{FORGED}\u2028.wav"
    with connect(server.ws, proxy=None) as ws:
        ws.send(json.dumps({"type": "query_file", "id": "x\ry", "path": path, "instrument": "bass", "k": 1}))
        assert json.loads(ws.recv(timeout=30))["code"] == "bad_file"
    osc = OscClient(server.osc)
    try:
        osc.send("/stemserver/query/file", "o1", path, "bass", 1)
        assert osc.until("o1")[-1][1][1] == "bad_file"
    finally:
        osc.close()
    lines = server.log.splitlines()
    assert not any(line.startswith(FORGED) for line in lines)
    assert sum(escape_control(path) in line for line in lines) == 2  # both refusals, each on its own line


def test_escaping_keeps_printable_text():
    assert escape_control("/Samples/Bässe\\01 \x1b[2J\n.wav\t") == "/Samples/Bässe\\01 \\x1b[2J\\n.wav\\t"
