"""Reassembling audio streamed in numbered chunks (OSC), refusing to guess when chunks go missing.

UDP may drop, duplicate or reorder datagrams. Chunks are stored by sequence number; at the end
message the upload is complete only if every number from 0 to count - 1 arrived exactly once.
Otherwise the client gets an error naming the chunks, and must send again: a mix with a hole in
it would give a wrong answer that looks right.

What uploads in progress may hold is bounded per host (its IP address: a client has as many source ports
as it likes) and in total, and the end message's count costs time in proportion to the chunks received,
never to the count claimed: no client can make the server allocate or compute without sending the bytes.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from stemserver.server.protocol import (
    MAX_UPLOAD_SECONDS,
    SAMPLE_FORMATS,
    ProtocolError,
    QueryOptions,
    check_pcm_format,
    pcm_to_samples,
)

MAX_PENDING_PER_HOST = 8
MIB = 1 << 20
MAX_HOST_BYTES = 192 * MIB  # one upload at the largest format (30 s of 192 kHz 8-channel float32: 176 MiB)
MAX_TOTAL_BYTES = 384 * MIB


@dataclass
class Upload:
    sample_rate: int
    channels: int
    sample_format: str
    options: QueryOptions
    started: float = field(default_factory=time.monotonic)
    chunks: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Uploads:
    """Uploads in progress, keyed by (client, request id); a client is its (host, port)."""

    def __init__(self, timeout_s: float = 30.0, max_host_bytes: int = MAX_HOST_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES):
        self.timeout_s = timeout_s
        self.max_host_bytes = max_host_bytes
        self.max_total_bytes = max_total_bytes
        self.pending: dict[tuple, Upload] = {}
        self.host_bytes: Counter[str] = Counter()
        self.host_uploads: Counter[str] = Counter()
        self.total_bytes = 0

    def begin(self, client, request_id, sample_rate, channels, sample_format, options: QueryOptions) -> None:
        check_pcm_format(sample_rate, channels, sample_format)
        self._drop((client, request_id))  # a begin under an id in progress starts it again
        if self.host_uploads[client[0]] >= MAX_PENDING_PER_HOST:
            raise ProtocolError("too_large", f"{MAX_PENDING_PER_HOST} uploads already in progress from this host: "
                                             "finish them first")
        self.pending[(client, request_id)] = Upload(sample_rate, channels, sample_format, options)
        self.host_uploads[client[0]] += 1

    def chunk(self, client, request_id, seq, data: bytes) -> None:
        key = (client, request_id)
        upload = self._get(client, request_id)
        if seq in upload.chunks:
            self._drop(key)
            raise ProtocolError("duplicate_chunk", f"chunk {seq} arrived twice; the upload is discarded, send it again")
        frame_bytes = upload.channels * SAMPLE_FORMATS[upload.sample_format].itemsize
        limit = MAX_UPLOAD_SECONDS * upload.sample_rate * frame_bytes
        if upload.size + len(data) > limit:
            self._drop(key)
            raise ProtocolError("too_large", f"the upload is over {MAX_UPLOAD_SECONDS:.0f} s of audio")
        if self.host_bytes[client[0]] + len(data) > self.max_host_bytes:
            self._drop(key)
            raise ProtocolError("too_large", f"uploads in progress from this host hold over "
                                             f"{self.max_host_bytes // MIB} MiB; the upload is discarded")
        if self.total_bytes + len(data) > self.max_total_bytes:
            self._drop(key)
            raise ProtocolError("too_large", f"uploads in progress hold over {self.max_total_bytes // MIB} MiB; "
                                             "the upload is discarded, send it again shortly")
        upload.chunks[seq] = data
        upload.size += len(data)
        self.host_bytes[client[0]] += len(data)
        self.total_bytes += len(data)

    def end(self, client, request_id, count) -> tuple[np.ndarray, int, QueryOptions]:
        """The complete audio (frames, channels) float32, its rate, and the query options."""
        upload = self._get(client, request_id)
        self._drop((client, request_id))
        expected = max(count, 0)
        extra = sorted(seq for seq in upload.chunks if not 0 <= seq < expected)
        missing = expected - (len(upload.chunks) - len(extra))
        if missing or extra:
            # The first missing numbers are found within len(chunks) + 20 steps, whatever the count claims.
            named = itertools.islice((seq for seq in itertools.count() if seq not in upload.chunks), min(missing, 20))
            detail = f"missing chunks {', '.join(map(str, named))}{' ...' if missing > 20 else ''}" if missing else ""
            detail += ("; " if missing and extra else "") + (f"chunks beyond the count: {extra[:20]}" if extra else "")
            raise ProtocolError("missing_chunks", f"{detail} (of {count}); send the audio again")
        data = b"".join(upload.chunks[seq] for seq in range(expected))
        return pcm_to_samples(data, upload.sample_rate, upload.channels, upload.sample_format), upload.sample_rate, \
            upload.options

    def expire(self) -> list[tuple]:
        """Drop uploads older than the timeout; returns their (client, request id) keys."""
        now = time.monotonic()
        stale = [key for key, upload in self.pending.items() if now - upload.started > self.timeout_s]
        for key in stale:
            self._drop(key)
        return stale

    def drop_all(self) -> list[tuple]:
        """Drop every upload in progress (at shutdown); returns their (client, request id) keys."""
        keys = list(self.pending)
        for key in keys:
            self._drop(key)
        return keys

    def _drop(self, key: tuple) -> None:
        upload = self.pending.pop(key, None)
        if upload is not None:
            host = key[0][0]
            self.host_bytes[host] -= upload.size
            self.total_bytes -= upload.size
            self.host_uploads[host] -= 1
            if not self.host_uploads[host]:  # keep the counters as small as the hosts with uploads
                del self.host_bytes[host], self.host_uploads[host]

    def _get(self, client, request_id) -> Upload:
        try:
            return self.pending[(client, request_id)]
        except KeyError:
            raise ProtocolError("unknown_upload", f"no upload in progress for request {request_id!r}: "
                                                  "send /stemserver/stream/begin first") from None
