"""The browser page and the audio it plays, over HTTP on the WebSocket port.

The page (the files of stemserver/web/) is a client of the WebSocket protocol like any other; what
HTTP adds is only the page itself and the audio the page plays. Serving both from the WebSocket's
own port makes the page's origin the one origin the WebSocket lets in by default.

Audio is served by opaque ids the server issued in its replies (`AudioIds`), never by path: a page
can only ever fetch a file the library holds or a preview the server rendered. A hostile web site
can embed `<audio src="http://127.0.0.1:8765/audio/...">` without an Origin header, but not guess
an id, and Chromium and Firefox say `Sec-Fetch-Site: cross-site` on such a request, which is refused.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

WEB_FOLDER = Path(__file__).resolve().parent.parent / "web"
PAGE_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
              ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
              ".ico": "image/x-icon"}
AUDIO_TYPES = {".wav": "audio/wav", ".wave": "audio/wav", ".opus": "audio/ogg", ".ogg": "audio/ogg",
               ".oga": "audio/ogg", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".aif": "audio/aiff",
               ".aiff": "audio/aiff", ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".webm": "audio/webm"}
# No inline script or style, nothing from another host: an injected <script> (a file name shown on the
# page is text, but this is the second line of defence) cannot run or send anything away.
CONTENT_SECURITY_POLICY = ("default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
                           "media-src 'self' blob:; style-src 'self'; script-src 'self'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")
ALLOWED_FETCH_SITES = ("same-origin", "none")  # `none`: the user typed the URL or opened a bookmark
AUDIO_PREFIX = "/audio/"
FILE_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


class AudioIds:
    """Opaque ids for the audio files clients may fetch. An id is an HMAC of the path under a secret drawn
    at start-up: the same file keeps its id for the server's life, and nobody can make one up."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._paths: dict[str, str] = {}

    def issue(self, path: str | Path) -> str:
        path = str(path)
        file_id = hmac.new(self._secret, path.encode(), hashlib.sha256).hexdigest()[:32]
        self._paths[file_id] = path
        return file_id

    def path(self, file_id: str) -> str | None:
        """The path an id was issued for, or None (an id never issued, or not an id at all)."""
        return self._paths.get(file_id) if FILE_ID.fullmatch(file_id) else None


def fetch_refusal(sec_fetch_site: list[str]) -> str | None:
    """Why a browser request that says where it came from (Sec-Fetch-Site) is refused, or None."""
    if not sec_fetch_site or (len(sec_fetch_site) == 1 and sec_fetch_site[0].strip().lower() in ALLOWED_FETCH_SITES):
        return None
    return (f"a request from another web site (Sec-Fetch-Site: {', '.join(sec_fetch_site)}): only stemserver's own "
            "page may fetch from this server")


def page_reply(url_path: str) -> Reply:
    """A file of the page: `/` is index.html, `/NAME` a file of the web folder (no subfolders, no dot files)."""
    name = "index.html" if url_path in ("", "/") else url_path.removeprefix("/")
    file = WEB_FOLDER / name
    if "/" in name or "\\" in name or name.startswith(".") or file.suffix not in PAGE_TYPES or not file.is_file():
        return text_reply(HTTPStatus.NOT_FOUND, f"no such page: {url_path}")
    headers = [("Content-Type", PAGE_TYPES[file.suffix]), ("Cache-Control", "no-cache")]
    if file.suffix == ".html":
        headers += [("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "no-referrer")]
    return Reply(HTTPStatus.OK, file.read_bytes(), tuple(headers))


def audio_reply(path: Path, range_header: str | None) -> Reply:
    """An audio file, whole or the byte range asked for (`Range: bytes=a-b`, `a-`, `-n`: one range)."""
    size = path.stat().st_size
    headers = [("Content-Type", AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream")),
               ("Accept-Ranges", "bytes"), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
    if range_header is None:
        return Reply(HTTPStatus.OK, path.read_bytes(), tuple(headers))
    span = byte_range(range_header, size)
    if span is None:
        return Reply(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"",
                     (*headers, ("Content-Range", f"bytes */{size}")))
    start, end = span
    with path.open("rb") as file:
        file.seek(start)
        body = file.read(end - start + 1)
    return Reply(HTTPStatus.PARTIAL_CONTENT, body, (*headers, ("Content-Range", f"bytes {start}-{end}/{size}")))


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte (inclusive) of a one-range `Range` header, clipped to the file; None when it
    cannot be satisfied or is not one byte range (several ranges are answered with the first)."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes":
        return None
    first, dash, last = spec.split(",")[0].strip().partition("-")
    if not dash or not (first or last) or not all(part.isdigit() for part in (first, last) if part):
        return None
    if not first:  # the last N bytes
        length = int(last)
        return (max(0, size - length), size - 1) if length and size else None
    start, end = int(first), int(last) if last else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def text_reply(status: HTTPStatus, text: str) -> Reply:
    return Reply(status, (text + "\n").encode(), (("Content-Type", "text/plain; charset=utf-8"),))


def http_date() -> str:
    return email.utils.formatdate(usegmt=True)
