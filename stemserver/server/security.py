"""Who may open a WebSocket: the handshake's Origin, Host and token.

Browsers let a script on any web site open a WebSocket to 127.0.0.1, and they say which page
asked in the `Origin` header; native clients (the CLI, Node, Max, scripts) send none. So a
handshake that carries an Origin is refused unless the user allowed that origin. A page can also
reach a loopback server under a name of its own (DNS rebinding: its domain starts resolving to
127.0.0.1); the browser then sends that name as `Host`, so on loopback the Host must be a
loopback name.
"""

from __future__ import annotations

import hmac
from urllib.parse import unquote, urlsplit

from stemserver.server.protocol import is_loopback

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def parse_origin(text: str) -> str:
    """An origin as browsers send it (scheme://host[:port], lower case, default port left out);
    raises ValueError saying what is wrong."""
    if text.strip().lower() == "null":
        raise ValueError("'null' is the origin of sandboxed pages and local files: any page can present it")
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has a port that is not a number from 0 to 65535") from None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment \
            or parts.username is not None:
        raise ValueError(f"{text!r} is not an origin: give scheme://host[:port], e.g. http://localhost:3000")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown_port = "" if port is None or DEFAULT_PORTS.get(parts.scheme) == port else f":{port}"
    return f"{parts.scheme.lower()}://{host.lower()}{shown_port}"


def origin_refusal(origins: list[str], allowed: frozenset[str]) -> str | None:
    """Why a handshake with these Origin header values is refused, or None to accept it."""
    if not origins:
        return None
    if len(origins) == 1 and origins[0].lower() in allowed:
        return None
    shown = ", ".join(origins)
    return (f"a web page (Origin: {shown}) may not use this server; native clients send no Origin header. "
            f"To let this page connect, start the server with --allow-origin {origins[0]}")


def host_refusal(hosts: list[str]) -> str | None:
    """On loopback: why a handshake with these Host header values is refused, or None to accept it."""
    if len(hosts) == 1 and is_loopback(host_name(hosts[0])):
        return None
    shown = ", ".join(hosts) or "none"
    return (f"Host {shown} is not a loopback name (localhost, 127.0.0.1, [::1]): a web page may be reaching this "
            "server by DNS rebinding. Connect to localhost, 127.0.0.1 or [::1]; to serve other names, listen on "
            "them with --host ADDRESS --token SECRET")


def host_name(host: str) -> str:
    """The name in a Host header value, without its port ("[::1]:8765" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def token_presented(authorization: str | None, query: str) -> str | None:
    """The token a handshake presents: `Authorization: Bearer T`, else the URL-decoded `?token=T`."""
    if authorization:
        return authorization.removeprefix("Bearer ").strip()
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key) == "token":
            return unquote(value)
    return None


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
