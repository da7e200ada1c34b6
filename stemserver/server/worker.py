"""Inference off the event loop: one worker thread, a bounded queue, batches of waiting queries.

The event loop must never block on the model, so every query becomes a job on a bounded queue
and the caller awaits its future. When the queue is full the caller is told "busy" at once,
never left waiting in silence. The worker takes every job that is waiting (up to `max_batch`) and
answers them with one call of `answer`, so queries that arrive together share a forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from stemserver.server.protocol import ProtocolError

log = logging.getLogger("stemserver.server")
_STOP = object()

# Answers a batch of payloads: one result per payload, an exception instance where one failed.
Answer = Callable[[list[Any]], list[Any]]


class Worker:
    def __init__(self, answer: Answer, max_queue: int = 16, max_batch: int = 8):
        self.answer = answer
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.max_batch = max_batch
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="stemserver-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def depth(self) -> int:
        return self.jobs.qsize()

    def submit(self, payload: Any) -> asyncio.Future:
        """Queue a payload (from the event loop); raises ProtocolError busy/shutting_down at once."""
        if self.stopping:
            raise ProtocolError("shutting_down", "the server is stopping")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self.jobs.put_nowait((payload, future, loop))
        except queue.Full:
            raise ProtocolError("busy", f"{self.jobs.maxsize} queries are already waiting; try again shortly") from None
        return future

    def stop(self) -> None:
        """Let the batch in hand finish, fail every queued job with shutting_down, end the thread."""
        self.stopping = True
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                _settle(job, ProtocolError("shutting_down", "the server stopped before this query ran"))
        self.jobs.put(_STOP)
        self.thread.join(timeout=60)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    extra = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if extra is _STOP:
                    self.jobs.put(_STOP)
                    break
                batch.append(extra)
            try:
                results = self.answer([payload for payload, _, _ in batch])
            except Exception as e:  # answer() is meant to return errors, not raise them
                log.exception("query batch failed")
                results = [e] * len(batch)
            for job, result in zip(batch, results):
                _settle(job, result)


def _settle(job, result: Any) -> None:
    _, future, loop = job

    def settle() -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        log.debug("dropped a result: the event loop is closed")
