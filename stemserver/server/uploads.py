"""Reassembling audio streamed in numbered chunks (OSC), refusing to guess when chunks go missing.

UDP may drop, duplicate or reorder datagrams. Chunks are stored by sequence number; at the end
message the upload is complete only if every number from 0 to count - 1 arrived exactly once.
Otherwise the client gets an error naming the chunks, and must send again: a mix with a hole in
it would give a wrong answer that looks right.
"""

from __future__ import annotations

import time
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

MAX_PENDING_PER_CLIENT = 4


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
    """Uploads in progress, keyed by (client, request id)."""

    def __init__(self, timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.pending: dict[tuple, Upload] = {}

    def begin(self, client, request_id, sample_rate, channels, sample_format, options: QueryOptions) -> None:
        check_pcm_format(sample_rate, channels, sample_format)
        if sum(1 for key in self.pending if key[0] == client) >= MAX_PENDING_PER_CLIENT:
            raise ProtocolError("too_large", f"{MAX_PENDING_PER_CLIENT} uploads already in progress from this client")
        self.pending[(client, request_id)] = Upload(sample_rate, channels, sample_format, options)

    def chunk(self, client, request_id, seq, data: bytes) -> None:
        upload = self._get(client, request_id)
        if seq in upload.chunks:
            del self.pending[(client, request_id)]
            raise ProtocolError("duplicate_chunk", f"chunk {seq} arrived twice; the upload is discarded, send it again")
        frame_bytes = upload.channels * SAMPLE_FORMATS[upload.sample_format].itemsize
        limit = MAX_UPLOAD_SECONDS * upload.sample_rate * frame_bytes
        if upload.size + len(data) > limit:
            del self.pending[(client, request_id)]
            raise ProtocolError("too_large", f"the upload is over {MAX_UPLOAD_SECONDS:.0f} s of audio")
        upload.chunks[seq] = data
        upload.size += len(data)

    def end(self, client, request_id, count) -> tuple[np.ndarray, int, QueryOptions]:
        """The complete audio (frames, channels) float32, its rate, and the query options."""
        upload = self._get(client, request_id)
        del self.pending[(client, request_id)]
        missing = [seq for seq in range(count) if seq not in upload.chunks]
        extra = sorted(seq for seq in upload.chunks if not 0 <= seq < count)
        if missing or extra:
            named = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            detail = f"missing chunks {named}" if missing else ""
            detail += ("; " if missing and extra else "") + (f"chunks beyond the count: {extra[:20]}" if extra else "")
            raise ProtocolError("missing_chunks", f"{detail} (of {count}); send the audio again")
        data = b"".join(upload.chunks[seq] for seq in range(count))
        return pcm_to_samples(data, upload.sample_rate, upload.channels, upload.sample_format), upload.sample_rate, \
            upload.options

    def expire(self) -> list[tuple]:
        """Drop uploads older than the timeout; returns their (client, request id) keys."""
        now = time.monotonic()
        stale = [key for key, upload in self.pending.items() if now - upload.started > self.timeout_s]
        for key in stale:
            del self.pending[key]
        return stale

    def _get(self, client, request_id) -> Upload:
        try:
            return self.pending[(client, request_id)]
        except KeyError:
            raise ProtocolError("unknown_upload", f"no upload in progress for request {request_id!r}: "
                                                  "send /stemserver/stream/begin first") from None
