"""Messages as they travel between the server and its clients, built, checked and read here by both sides:
OSC datagrams (and the argument order of every reply) and the WebSocket result. The server that writes a
reply and the client that reads it share these functions, so they cannot disagree.

Imports neither torch nor numpy: the client that the REAPER scripts spawn on every "Find" imports it.
"""

from __future__ import annotations

import struct

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from stemserver.server.protocol import (
    RESULT_FIELDS,
    TEXT_RESULT_FIELDS,
    UNKNOWN_NUMBER,
    UNKNOWN_TEXT,
    ProtocolError,
)

PREFIX = "/stemserver"
BUNDLE_PREFIX = b"#bundle\0"
MAX_BUNDLE_DEPTH = 4  # liblo and Max nest one or two deep; deeper is only ever a probe
MAX_BUNDLE_MESSAGES = 64  # one small datagram must not make the server send thousands of replies


def osc_message(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        if isinstance(arg, bool):
            builder.add_arg(int(arg), "i")
        elif isinstance(arg, int):
            builder.add_arg(arg, "i" if -(2**31) <= arg < 2**31 else "h")
        elif isinstance(arg, float):
            builder.add_arg(arg, "f")
        elif isinstance(arg, bytes):
            builder.add_arg(arg, "b")
        else:
            builder.add_arg(str(arg), "s")
    return builder.build().dgram


def parse_datagram(data: bytes) -> list[tuple[str, list]]:
    """The (address, arguments) of every message in an OSC datagram, a message or a bundle of them.
    Raises ProtocolError on anything else."""
    if check_bundles(data) > MAX_BUNDLE_MESSAGES:
        raise ProtocolError("bad_request", f"a bundle of more than {MAX_BUNDLE_MESSAGES} messages")
    try:
        messages = OscPacket(data).messages
    except Exception as e:  # python-osc raises assorted errors on garbage
        raise ProtocolError("bad_request", f"not an OSC message ({type(e).__name__})") from None
    return [(timed.message.address, list(timed.message.params)) for timed in messages]


def check_bundles(data: bytes, depth: int = 0) -> int:
    """Refuse bundles that python-osc cannot be trusted with: its parser (1.10.2) loops forever on an element
    size that is negative, and silently skips elements that are neither a message nor a bundle. Returns the
    number of messages the datagram holds."""
    if not data.startswith(BUNDLE_PREFIX):
        return 1
    messages = 0
    if depth >= MAX_BUNDLE_DEPTH:
        raise ProtocolError("bad_request", f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
    index = len(BUNDLE_PREFIX) + 8  # the time tag
    if index >= len(data):
        raise ProtocolError("bad_request", "a bundle without any element")
    while index < len(data):
        if index + 4 > len(data):
            raise ProtocolError("bad_request", "a bundle element's size is cut off")
        (size,) = struct.unpack_from(">i", data, index)
        index += 4
        if size <= 0 or size % 4 or index + size > len(data):
            raise ProtocolError("bad_request", f"a bundle element of {size} bytes (sizes are positive multiples "
                                               f"of 4 within the datagram)")
        element = data[index : index + size]
        if not element.startswith((b"/", BUNDLE_PREFIX)):
            raise ProtocolError("bad_request", "a bundle element that is neither a message nor a bundle")
        messages += check_bundles(element, depth + 1)
        index += size
    return messages


def result_replies(request_id, result: dict) -> list[tuple[str, list]]:
    """The OSC replies to an answered query: one /result per match, best first, then /done."""
    replies = [(f"{PREFIX}/result", [request_id, *(_osc_value(field, match[field]) for field in RESULT_FIELDS)])
               for match in result["matches"]]
    done = [request_id, len(result["matches"]), result["timings_ms"]["total"],
            _osc_value("mix_tempo_bpm", result.get("mix_tempo_bpm")), _osc_value("mix_key", result.get("mix_key"))]
    return replies + [(f"{PREFIX}/done", done)]


def _osc_value(field: str, value):
    """A result's value as OSC carries it: None as UNKNOWN_TEXT or UNKNOWN_NUMBER (OSC has no null)."""
    if value is not None:
        return float(value) if field in _FLOAT_FIELDS else value
    if field in TEXT_RESULT_FIELDS or field == "mix_key":
        return UNKNOWN_TEXT
    return -1 if field == "transpose" else UNKNOWN_NUMBER


def _from_osc(field: str, value, match: dict):
    if field == "transpose":
        return None if match.get("key_relation") in (None, UNKNOWN_TEXT) else value
    if field in TEXT_RESULT_FIELDS:
        return None if value == UNKNOWN_TEXT else value
    if field in _FLOAT_FIELDS and value == UNKNOWN_NUMBER:
        return None
    return value


_FLOAT_FIELDS = frozenset({"tempo_bpm", "stretch", "offset_beats", "offset_bars", "mix_tempo_bpm"})


def match_from_result(args: list) -> dict:
    """A /stemserver/result's arguments after the id, as the match of a WebSocket result (a server older
    than the tempo and key fields sends fewer: they are absent)."""
    match = dict(zip(RESULT_FIELDS, args))
    match["loop"] = bool(match["loop"])
    for field in RESULT_FIELDS[RESULT_FIELDS.index("loop") + 1:]:
        if field in match:
            match[field] = _from_osc(field, match[field], match)
    return match


def mix_from_done(args: list) -> dict:
    """The mix's tempo and key from a /stemserver/done's arguments after the id, count and time."""
    tempo, key = (list(args) + [UNKNOWN_NUMBER, UNKNOWN_TEXT])[:2]
    return {"mix_tempo_bpm": None if tempo == UNKNOWN_NUMBER else tempo, "mix_key": key or None}


def result_message(request_id, result: dict) -> dict:
    """The WebSocket reply to an answered query (and what `stemserver query --server --json` prints)."""
    return {"type": "result", "id": request_id, **result}
