"""The wire contract shared by the OSC and WebSocket front ends (docs/protocol.md is its prose).

Everything a client can send is validated here into plain requests; everything the server says
back is built here from engine results. Any problem is a `ProtocolError` with a code from
`ERROR_CODES`, which both front ends turn into a typed error reply carrying the request id.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from stemserver.errors import AudioError, CheckpointError, LibraryError, StemserverError, UnknownLabelError
from stemserver.music import MAX_STATED_MIX_BPM, MIN_STATED_MIX_BPM, parse_key
from stemserver.selection import AUDIO_EXTENSIONS, Filters
from stemserver.window import QUERY_SECONDS

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("stemserver.server")

PROTOCOL_VERSION = 1
MAX_K = 100
MAX_UPLOAD_SECONDS = 30.0
MAX_UPLOAD_RATE = 192_000
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_CHUNK_BYTES = 8192  # macOS drops UDP datagrams over 9216 bytes; a chunk and its header fit
MAX_ID_CHARS = 128  # a request id comes back in every reply, which must fit one datagram


class SampleFormat(NamedTuple):
    dtype: str  # numpy's name for it; numpy itself is imported only to decode (the client never does)
    itemsize: int


SAMPLE_FORMATS = {"int16": SampleFormat("<i2", 2), "float32": SampleFormat("<f4", 4)}
# The order of a result's fields in an OSC /stemserver/result message (after the request id).
RESULT_FIELDS = ("rank", "path", "score", "offset_s", "offset_at_end_s", "alignment_score", "duration_s", "label",
                 "loop", "tempo_bpm", "key", "stretch", "transpose", "key_relation", "offset_beats", "offset_bars")
# OSC has no null: an unknown number travels as -1 (tempo, stretch, beats: positive when known), unknown
# text as "". A transpose is known exactly when its key_relation is.
UNKNOWN_NUMBER, UNKNOWN_TEXT = -1.0, ""
TEXT_RESULT_FIELDS = frozenset({"key", "key_relation"})

ERROR_CODES = {
    "bad_request": "the message has the wrong arguments or types",
    "unknown_address": "no such OSC address or WebSocket message type",
    "bad_json": "a WebSocket text frame that is not a JSON object",
    "unauthorized": "the server requires a token and the message did not carry the right one",
    "bad_audio": "audio that cannot be used: NaN/Inf, too short, silent, wrong format",
    "bad_file": "a file-path query whose path is not a readable audio file under the size limit",
    "missing_chunks": "a streamed upload ended with chunks missing (named in the message)",
    "duplicate_chunk": "a streamed upload received the same chunk twice (the upload is discarded)",
    "upload_timeout": "a streamed upload was not finished in time and was dropped",
    "unknown_upload": "a chunk or end for a request id with no upload in progress",
    "too_large": "a message or upload over the size limit",
    "unknown_instrument": "an instrument name the model cannot embed (the message names close ones)",
    "no_capture": "a 'now' query, but the server was not started with --capture",
    "not_in_library": "a preview whose stem is not a file of the server's library (use a result's path)",
    "library": "the library cannot be used (missing, empty, built with another model)",
    "busy": "the query queue is full: try again shortly",
    "shutting_down": "the server is stopping",
    "internal": "an unexpected server error (logged)",
}


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProtocolError(Exception):
    def __init__(self, code: str, message: str):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message


def error_from_exception(error: BaseException) -> ProtocolError:
    """The typed error a client gets for an exception raised while answering it."""
    if isinstance(error, ProtocolError):
        return error
    if isinstance(error, UnknownLabelError):
        return ProtocolError("unknown_instrument", str(error))
    if isinstance(error, AudioError):
        return ProtocolError("bad_audio", str(error))
    if isinstance(error, (LibraryError, CheckpointError)):
        return ProtocolError("library", str(error))
    if isinstance(error, StemserverError):
        return ProtocolError("bad_request", str(error))
    return ProtocolError("internal", f"unexpected error ({type(error).__name__}); see the server log")


def log_failure(client, request_id, error: BaseException) -> ProtocolError:
    """Log a failed request once, with the client's address (an unexpected error with its traceback, so that it
    can be fixed), and return the typed error to reply with."""
    reply = error_from_exception(error)
    unexpected = reply is not error and reply.code == "internal"
    log.log(logging.ERROR if unexpected else logging.WARNING, "%s: request %r: %s: %s", client, request_id,
            reply.code, reply.message, exc_info=error if unexpected else None)
    return reply


def check_request_id(value) -> None:
    """A request id as the client sent it, if short enough to come back in every reply."""
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ProtocolError("bad_request", f"request ids are at most {MAX_ID_CHARS} characters, got {len(value)}")


class QueryOptions(NamedTuple):
    instrument: str
    k: int = 10
    seconds: float = QUERY_SECONDS
    filters: Filters = Filters()
    tempo: float | None = None  # the mix's BPM, when the client knows it
    key: str | None = None  # the mix's key, when the client knows it


def query_options(instrument, k=10, seconds=QUERY_SECONDS, filters: dict | None = None, tempo=None,
                  key=None) -> QueryOptions:
    """Validate the parts of a query both protocols share."""
    if not isinstance(instrument, str) or not instrument.strip():
        raise ProtocolError("bad_request", "instrument must be a non-empty string, e.g. 'bass'")
    if not _is_number(k) or not 1 <= k <= MAX_K or k != int(k):  # the range check first: int() of NaN/Inf raises
        raise ProtocolError("bad_request", f"k must be a whole number from 1 to {MAX_K}, got {_shown(k)}")
    if not _is_number(seconds) or not 2.0 <= seconds <= MAX_UPLOAD_SECONDS:
        raise ProtocolError("bad_request", f"seconds must be from 2 to {MAX_UPLOAD_SECONDS:.0f}, got {_shown(seconds)}")
    if tempo is not None and (not _is_number(tempo) or not MIN_STATED_MIX_BPM <= tempo <= MAX_STATED_MIX_BPM):
        raise ProtocolError("bad_request", f"tempo must be the mix's BPM, from {MIN_STATED_MIX_BPM:.0f} to "
                                           f"{MAX_STATED_MIX_BPM:.0f}, got {_shown(tempo)}")
    if key is not None and (not isinstance(key, str) or parse_key(key, bare_tonic=True) is None):
        raise ProtocolError("bad_request",
                            f"key must be a key such as 'A minor', 'F#m' or 'Bb major', got {_shown(key)}")
    return QueryOptions(instrument.strip(), int(k), float(seconds), parse_filters(filters or {}),
                        None if tempo is None else float(tempo), key)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value) -> str:
    """A client's value in a message: in full when short (a reply must fit one datagram)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


_FILTER_KEYS = {"folder": str, "label": str, "min_duration": (int, float), "max_duration": (int, float),
                "exclude": (str, list), "max_stretch": (int, float), "key_compatible": bool}


def parse_filters(raw: dict) -> Filters:
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", f"filters must be an object with keys from {', '.join(_FILTER_KEYS)}")
    for key, value in raw.items():
        if key not in _FILTER_KEYS:
            raise ProtocolError("bad_request", f"unknown filter {key!r}; known: {', '.join(_FILTER_KEYS)}")
        if isinstance(value, bool) != (_FILTER_KEYS[key] is bool) or not isinstance(value, _FILTER_KEYS[key]):
            raise ProtocolError("bad_request", f"filter {key} has the wrong type: {_shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError("bad_request", f"filter {key} must be a finite number, got {value!r}")
    exclude = raw.get("exclude", ())
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    if not all(isinstance(p, str) for p in exclude):
        raise ProtocolError("bad_request", "filter exclude must be a path or a list of paths")
    max_stretch = raw.get("max_stretch")
    if max_stretch is not None and not 1.0 <= max_stretch <= 4.0:
        raise ProtocolError("bad_request", f"filter max_stretch must be from 1 (the mix's tempo only) to 4, "
                                           f"got {_shown(max_stretch)}")
    return Filters(folder=raw.get("folder"), label=raw.get("label"), min_duration_s=raw.get("min_duration"),
                   max_duration_s=raw.get("max_duration"), exclude=exclude,
                   max_stretch=None if max_stretch is None else float(max_stretch),
                   key_compatible=bool(raw.get("key_compatible", False)))


def check_pcm_format(sample_rate, channels, sample_format) -> None:
    if sample_format not in SAMPLE_FORMATS:
        raise ProtocolError("bad_audio", f"sample format must be one of {', '.join(SAMPLE_FORMATS)}, "
                                         f"got {sample_format!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= MAX_UPLOAD_RATE:
        raise ProtocolError("bad_audio", f"sample rate must be a whole number from 8000 to {MAX_UPLOAD_RATE}, "
                                         f"got {sample_rate!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= 8:
        raise ProtocolError("bad_audio", f"channels must be 1 to 8, got {channels!r}")


def pcm_to_samples(data: bytes, sample_rate, channels, sample_format) -> np.ndarray:
    """Little-endian interleaved PCM -> float32 (frames, channels), validated."""
    import numpy as np  # here, not at the top: the client imports this module, and must start fast

    check_pcm_format(sample_rate, channels, sample_format)
    dtype = np.dtype(SAMPLE_FORMATS[sample_format].dtype)
    frame_bytes = dtype.itemsize * channels
    if len(data) == 0 or len(data) % frame_bytes:
        raise ProtocolError("bad_audio", f"{len(data)} bytes of audio is not a whole number of "
                                         f"{channels}-channel {sample_format} frames")
    frames = len(data) // frame_bytes
    if frames > MAX_UPLOAD_SECONDS * sample_rate:
        raise ProtocolError("too_large", f"{frames / sample_rate:.1f} s of audio; the limit is "
                                         f"{MAX_UPLOAD_SECONDS:.0f} s (send the last seconds of the mix)")
    samples = np.frombuffer(data, dtype=dtype).reshape(frames, channels)
    if sample_format == "int16":
        return samples.astype(np.float32) / 32768.0
    return samples.astype(np.float32)


def checked_audio_path(path) -> Path:
    """A file-path query's path, if it is a regular audio file under the size limit."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise ProtocolError("bad_request", "path must be a non-empty string without NUL characters")
    file = Path(path).expanduser()
    if not file.is_absolute():
        raise ProtocolError("bad_file", f"{path}: give an absolute path (the server's working folder is not yours)")
    if file.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ProtocolError("bad_file", f"{path}: not an audio file name ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    try:
        stat = file.stat()
    except OSError:
        raise ProtocolError("bad_file", f"{path}: no such file") from None
    if not file.is_file():
        raise ProtocolError("bad_file", f"{path}: not a regular file")
    if stat.st_size > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES >> 20
        raise ProtocolError("bad_file", f"{path}: {stat.st_size >> 20} MiB is over the limit, {limit} MiB")
    return file



class PreviewRequest(NamedTuple):
    mix: Path | None  # None: the client sends the mix's samples instead
    stem: Path
    offset_s: float = 0.0
    stretch: float = 1.0
    transpose: int = 0
    seconds: float = QUERY_SECONDS
    stem_gain_db: float = 0.0


PREVIEW_OPTIONS = ("seconds", "stem_gain_db")


def preview_request(mix, stem, offset=0.0, stretch=1.0, transpose=0, options: dict | None = None,
                    mix_sent: bool = False) -> PreviewRequest:
    """Validate a preview request of either protocol: two audio paths (or, `mix_sent`, the stem's alone: the
    client sends the mix's samples), a result's offset, stretch and transpose, and the optional `seconds` (the
    query window) and `stem_gain_db`. Whether the stem is a library file is the service's to check: it holds
    the library."""
    from stemserver.preview import check_settings  # here: it imports numpy, and the client imports this module

    options = dict(options or {})
    unknown = [key for key in options if key not in PREVIEW_OPTIONS]
    if unknown:
        raise ProtocolError("bad_request", f"unknown preview option {_shown(unknown[0])}; known: "
                                           f"{', '.join(PREVIEW_OPTIONS)}")
    values = {"offset": offset, "stretch": stretch, "transpose": transpose, **options}
    for name, value in values.items():
        if not _is_number(value) or not math.isfinite(value):
            raise ProtocolError("bad_request", f"preview {name} must be a finite number, got {_shown(value)}")
    if transpose != int(transpose):
        raise ProtocolError("bad_request", f"preview transpose must be whole semitones, got {_shown(transpose)}")
    if not 2.0 <= options.get("seconds", QUERY_SECONDS) <= MAX_UPLOAD_SECONDS:  # the query's window
        raise ProtocolError("bad_request", f"seconds must be from 2 to {MAX_UPLOAD_SECONDS:.0f}, the query's window, "
                                           f"got {_shown(options['seconds'])}")
    if mix_sent and mix is not None:
        raise ProtocolError("bad_request", "a preview sends its mix either as a path ('mix') or as audio "
                                           "(sample_rate, channels, format, then the PCM), not both")
    request = PreviewRequest(None if mix_sent else checked_audio_path(mix), checked_audio_path(stem), float(offset),
                             float(stretch), int(transpose), float(options.get("seconds", QUERY_SECONDS)),
                             float(options.get("stem_gain_db", 0.0)))
    try:
        check_settings(request.offset_s, request.stretch, request.transpose, request.seconds, request.stem_gain_db)
    except StemserverError as e:
        raise ProtocolError("bad_request", str(e)) from None
    return request
