"""What the server does, whichever protocol asked: queries, status, reload, instruments.

Both front ends (OSC, WebSocket) parse their messages into calls on one `Service`, so behaviour,
limits and errors are the same on both wires.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemserver import __version__, audio
from stemserver.engine import Engine, Query, QueryResult
from stemserver.indexing import IndexOptions, index_folders, options_built_with
from stemserver.library import Library
from stemserver.preview import preview_audio, prune_previews
from stemserver.server.capture import LiveCapture
from stemserver.server.protocol import (
    PROTOCOL_VERSION,
    PreviewRequest,
    ProtocolError,
    QueryOptions,
    error_from_exception,
)
from stemserver.server.web import AudioIds
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
        self.reindexing = False  # a re-index is running (changed on the event loop only)
        self.audio_ids = AudioIds()

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
        answer = result.to_dict()
        folders = self.engine.index.folders
        for match in answer["matches"]:
            match.update(file_id=self.audio_ids.issue(match["path"]), folder=shown_folder(match["path"], folders))
        return answer

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

    async def preview(self, request: PreviewRequest, mix: AudioSource | None = None) -> dict:
        """Render a preview of a library stem into the library's previews folder and say where, with the id that
        fetches it over HTTP (off the event loop: it decodes and stretches audio). The mix is the request's path,
        or `mix`'s samples when a client sent them. Raises ProtocolError."""
        if str(request.stem) not in self.engine.index.paths:  # a preview must not read out any file the server can
            raise ProtocolError("not_in_library", f"{request.stem} is not a file of this server's library: preview "
                                                  "a stem a query returned, by its path")
        if self.stopped:
            raise ProtocolError("shutting_down", "the server is stopping")
        if self.previews >= MAX_PREVIEWS:
            raise ProtocolError("busy", f"{MAX_PREVIEWS} previews are already rendering; try again when one is done")
        self.previews += 1
        try:
            summary = await asyncio.get_running_loop().run_in_executor(None, self._render_preview, request, mix)
        except Exception as e:
            raise error_from_exception(e) from e
        finally:
            self.previews -= 1
        return {**summary, "file_id": self.audio_ids.issue(summary["path"])}

    def _render_preview(self, request: PreviewRequest, mix: AudioSource | None) -> dict:
        folder = self._preview_folder()
        out = folder / f"preview-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.wav"
        max_seconds = self.engine.settings.max_audio_seconds
        if mix is None:
            samples, rate = audio.decode(request.mix, max_seconds)
            source = str(request.mix)
        else:
            samples, rate, source = mix.samples, mix.sample_rate, "uploaded mix"
        summary = preview_audio(samples, rate, request.stem, out, request.offset_s, request.stretch, request.transpose,
                                request.seconds, request.stem_gain_db, max_seconds, mix_source=source)
        prune_previews(folder, PREVIEWS_KEPT)
        return summary

    def _preview_folder(self) -> Path:
        return self.engine.library_dir.absolute() / PREVIEW_FOLDER

    def audio_path(self, file_id: str) -> Path | None:
        """The file an id the server issued names, while a client may fetch it: a file of the library's current
        index, or a preview that is still kept. None for anything else."""
        path = self.audio_ids.path(file_id)
        if path is None:
            return None
        if path in self.engine.index.paths or (Path(path).parent == self._preview_folder() and Path(path).is_file()):
            return Path(path)
        return None

    async def library(self) -> dict:
        """The library as the page's library view shows it: its files (with ids to play them), its folders with
        counts, the files that failed and why, and the instruments the model predicts for its files."""
        return await asyncio.get_running_loop().run_in_executor(None, self._library)

    def _library(self) -> dict:
        index = self.engine.index
        records = sorted(index.files.values(), key=lambda record: record.path)
        predicted = {}
        if index.instruments is not None:
            with_vector = [r for r in records if r.id < len(index.instruments) and index.instruments[r.id].any()]
            if with_vector:
                names = self.engine.checkpoint.nearest_labels(index.instruments[[r.id for r in with_vector]])
                predicted = {r.path: name for r, name in zip(with_vector, names)}
        files, folders = [], {}
        for record in records:
            facts = index.music.get(record.path)
            folder = shown_folder(record.path, index.folders)
            files.append({"file_id": self.audio_ids.issue(record.path), "path": record.path, "folder": folder,
                          "name": Path(record.path).name, "label": record.label,
                          "instrument": predicted.get(record.path), "duration_s": round(record.duration_s, 3),
                          "tempo_bpm": facts.tempo_bpm if facts else None, "key": facts.key if facts else None,
                          "bars": facts.bars if facts else None})
            count, seconds = folders.get(folder, (0, 0.0))
            folders[folder] = (count + 1, seconds + record.duration_s)
        with Library(self.engine.library_dir) as library:
            failures = library.failures()
        return {"sources": [str(folder) for folder in index.folders], "generation": index.info["generation"],
                "folders": [{"folder": name, "files": count, "seconds": round(seconds, 1)}
                            for name, (count, seconds) in sorted(folders.items())],
                "files": files, "failures": [{"path": f["path"], "error": f["error"]} for f in failures],
                "instruments": sorted(set(predicted.values()))}

    async def reindex(self, on_progress: Callable[[dict], None]) -> dict:
        """Index the library's folders again (new, changed and removed files) with the server's model, as
        `stemserver index` does, then switch to the new index. `on_progress` gets {"stage", "done", "total"}
        on the event loop as files are done. One at a time: another gets busy."""
        if self.stopped:
            raise ProtocolError("shutting_down", "the server is stopping")
        if self.reindexing:
            raise ProtocolError("busy", "the library is being indexed already; wait for that to finish")
        engine = self.engine
        with Library(engine.library_dir) as library:  # as it is now: `library remove` may have forgotten a folder
            folders = library.folders()
            options = options_built_with(library, engine.index.info, engine.seconds_per_column)
        if not folders:
            raise ProtocolError("library", f"the library at {self.engine.library_dir} does not say which folders it "
                                           "was built from (it was indexed by an older stemserver): run `stemserver "
                                           "index FOLDER... --library DIR` once, then re-index from here")
        missing = [folder for folder in folders if not folder.is_dir()]
        if missing:
            raise ProtocolError("library", f"{missing[0]}, a folder this library was indexed from, is missing (an "
                                           "unmounted drive?): mount it again and re-index. Its files stay in the "
                                           "library until then; nothing was changed. If it is gone for good, "
                                           f"`stemserver library remove {missing[0]}` forgets it and its files")
        loop = asyncio.get_running_loop()

        def on_file(done: int, total: int) -> None:
            loop.call_soon_threadsafe(on_progress, {"stage": "indexing", "done": done, "total": total})

        self.reindexing = True
        try:
            return await loop.run_in_executor(None, self._reindex, folders, options, on_file)
        except Exception as e:
            raise error_from_exception(e) from e
        finally:
            self.reindexing = False

    def _reindex(self, folders: list[Path], options: IndexOptions, on_file: Callable[[int, int], None]) -> dict:
        engine = self.engine
        summary = index_folders(folders, engine.library_dir, engine.checkpoint_path, engine.settings, options,
                                progress=False, on_file=on_file)
        info = engine.reload()
        return {"added": summary["added"], "updated": summary["updated"], "removed": summary["removed"],
                "unchanged": summary["unchanged"], "failed": len(summary["failed"]),
                "generation": info["generation"], "files": info["files"], "windows": info["windows"]}


def shown_folder(path: str, folders: list[Path]) -> str:
    """A file's folder as a person reads it: relative to the audio folder it was indexed from ("bass",
    "drums/loops"), that folder's own name for a file directly in it, the parent's name when none is known."""
    parent = Path(path).parent
    for root in folders:
        if parent == root or root in parent.parents:
            relative = parent.relative_to(root)
            return root.name if str(relative) == "." else relative.as_posix()
    return parent.name
