"""What the server does, whichever protocol asked: queries, status, reload, instruments.

Both front ends (OSC, WebSocket) parse their messages into calls on one `Service`, so behaviour,
limits and errors are the same on both wires.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemserver import __version__, audio
from stemserver.engine import Engine, Query, QueryResult
from stemserver.preview import preview_file, prune_previews
from stemserver.server.capture import LiveCapture
from stemserver.server.protocol import (
    PROTOCOL_VERSION,
    PreviewRequest,
    ProtocolError,
    QueryOptions,
    error_from_exception,
)
from stemserver.server.worker import Worker

log = logging.getLogger("stemserver.server")
PREVIEW_FOLDER = "previews"  # in the library folder: the server owns it
PREVIEWS_KEPT = 32  # older previews are deleted, so they cannot fill the disk
MAX_PREVIEWS = 2  # rendering at once; more get busy (each is seconds of Rubber Band on a CPU core)


@dataclass(frozen=True)
class AudioSource:
    """Where a query's audio comes from: samples sent by the client, a file path, or live capture."""

    samples: np.ndarray | None = None  # (frames, channels) float32
    sample_rate: int | None = None
    path: Path | None = None
    live: bool = False


class Service:
    def __init__(self, engine: Engine, capture: LiveCapture | None = None, max_queue: int = 16, max_batch: int = 8):
        self.engine = engine
        self.capture = capture
        self.worker = Worker(self._answer, max_queue=max_queue, max_batch=max_batch)
        self.started = time.time()
        self.answered = 0
        self.stopped = False
        self.previews = 0  # rendering now (changed on the event loop only)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        """Finish the batch in hand, answer queued queries with shutting_down, release the capture device.
        Only the first call does anything."""
        if self.stopped:
            return
        self.stopped = True
        self.worker.stop()
        if self.capture is not None:
            self.capture.close()

    async def query(self, source: AudioSource, options: QueryOptions) -> dict:
        """Answer one query: the engine's result as a JSON-ready dict. Raises ProtocolError."""
        if source.live and self.capture is None:
            raise ProtocolError("no_capture", "this server has no live input: start it with --capture DEVICE")
        try:
            result = await self.worker.submit((source, options))
        except ProtocolError:
            raise
        except Exception as e:
            error = error_from_exception(e)
            if error.code == "internal":
                log.error("query failed", exc_info=e)
            raise error from e
        self.answered += 1
        return result.to_dict()

    def _answer(self, jobs: list[tuple[AudioSource, QueryOptions]]) -> list:
        """Runs in the worker thread: prepare each query's audio, then one batched engine call."""
        queries, results, decode_ms = [], [None] * len(jobs), [0.0] * len(jobs)
        for i, (source, options) in enumerate(jobs):
            start = time.perf_counter()
            try:
                queries.append((i, Query(self._samples(source, options), options.instrument, options.k,
                                         options.filters, options.tempo, options.key)))
            except Exception as e:
                results[i] = e
            decode_ms[i] = (time.perf_counter() - start) * 1e3
        if queries:
            try:
                answers = self.engine.query_batch([q for _, q in queries])
            except Exception:  # one bad query (e.g. an unknown instrument) must not fail the others
                answers = []
                for _, q in queries:
                    try:
                        answers.append(self.engine.query(q))
                    except Exception as e:
                        answers.append(e)
            for (i, _), answer in zip(queries, answers):
                if isinstance(answer, QueryResult):
                    answer.add_decode_time(decode_ms[i])
                results[i] = answer
        return results

    def _samples(self, source: AudioSource, options: QueryOptions) -> np.ndarray:
        if source.path is not None:
            samples, _ = audio.load(source.path, self.engine.sample_rate, self.engine.settings.max_audio_seconds)
            return self.engine.prepare_query(samples, self.engine.sample_rate, options.seconds, source=source.path.name)
        if source.live:
            return self.engine.prepare_query(self.capture.last(options.seconds), self.capture.sample_rate,
                                             options.seconds, source="live input")
        return self.engine.prepare_query(source.samples, source.sample_rate, options.seconds, source="uploaded audio")

    def ping(self) -> dict:
        return {"version": __version__, "protocol": PROTOCOL_VERSION}

    def status(self) -> dict:
        index = self.engine.index
        return {
            "version": __version__, "protocol": PROTOCOL_VERSION, "device": str(self.engine.device),
            "checkpoint": self.engine.checkpoint_path.name, "library_files": len(index.files),
            "library_windows": len(index), "index_generation": index.info["generation"],
            "queue_depth": self.worker.depth, "answered": self.answered,
            "uptime_s": round(time.time() - self.started, 1),
            "capture": self.capture.device_name if self.capture else None,
        }

    async def reload(self) -> dict:
        """Switch to the library's newest index (off the event loop: it reads files)."""
        try:
            info = await asyncio.get_running_loop().run_in_executor(None, self.engine.reload)
        except Exception as e:
            raise error_from_exception(e) from e
        return {"generation": info["generation"], "files": info["files"], "windows": info["windows"]}

    def instruments(self) -> list[str]:
        return self.engine.known_instruments()

    async def preview(self, request: PreviewRequest) -> dict:
        """Render a preview of a library stem into the library's previews folder and say where (off the event
        loop: it decodes and stretches audio). Raises ProtocolError."""
        library_paths = {record.path for record in self.engine.index.files.values()}
        if str(request.stem) not in library_paths:  # a preview must not read out any file the server can
            raise ProtocolError("not_in_library", f"{request.stem} is not a file of this server's library: preview "
                                                  "a stem a query returned, by its path")
        if self.stopped:
            raise ProtocolError("shutting_down", "the server is stopping")
        if self.previews >= MAX_PREVIEWS:
            raise ProtocolError("busy", f"{MAX_PREVIEWS} previews are already rendering; try again when one is done")
        self.previews += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._render_preview, request)
        except Exception as e:
            raise error_from_exception(e) from e
        finally:
            self.previews -= 1

    def _render_preview(self, request: PreviewRequest) -> dict:
        folder = self.engine.library_dir.absolute() / PREVIEW_FOLDER
        out = folder / f"preview-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.wav"
        summary = preview_file(request.mix, request.stem, out, request.offset_s, request.stretch, request.transpose,
                               request.seconds, request.stem_gain_db, self.engine.settings.max_audio_seconds)
        prune_previews(folder, PREVIEWS_KEPT)
        return summary
