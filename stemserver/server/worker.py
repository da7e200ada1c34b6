"""Inference off the event loop: one worker thread, a bounded queue, batches of waiting queries.

The event loop must never block on the model, so every query becomes a job on a bounded queue
and the caller awaits its future. When the queue is full the caller is told "busy" at once,
never left waiting in silence. The worker takes every job that is waiting (up to `max_batch`) and
answers them with one call of `answer`, so queries that arrive together share a forward pass. A
query whose caller gave up (its future cancelled, e.g. the client disconnected) is dropped unseen:
it neither takes a place in the queue nor costs a forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stemserver.server.protocol import ProtocolError

log = logging.getLogger("stemserver.server")

# Answers a batch of payloads: one result per payload, an exception instance where one failed.
Answer = Callable[[list[Any]], list[Any]]


@dataclass(frozen=True)
class Job:
    payload: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop

    @property
    def abandoned(self) -> bool:
        # Read from the worker thread: a plain read of the future's state, never a change to it.
        return self.future.cancelled()


class Worker:
    def __init__(self, answer: Answer, max_queue: int = 16, max_batch: int = 8):
        self.answer = answer
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.jobs: deque[Job] = deque()
        self.changed = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="stemserver-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def depth(self) -> int:
        """Queries waiting, not counting those whose caller has given up."""
        with self.changed:
            self._drop_abandoned()
            return len(self.jobs)

    def submit(self, payload: Any) -> asyncio.Future:
        """Queue a payload (from the event loop); raises ProtocolError busy/shutting_down at once.
        Cancel the future to withdraw the query: it is dropped before it is computed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.changed:
            if self.stopping:
                raise ProtocolError("shutting_down", "the server is stopping")
            self._drop_abandoned()
            if len(self.jobs) >= self.max_queue:
                raise ProtocolError("busy", f"{self.max_queue} queries are already waiting; try again shortly")
            self.jobs.append(Job(payload, future, loop))
            self.changed.notify()
        return future

    def stop(self) -> None:
        """Let the batch in hand finish, fail every queued job with shutting_down, end the thread. Only the
        first call does anything."""
        with self.changed:
            if self.stopping:
                return
            self.stopping = True
            queued, self.jobs = self.jobs, deque()
            self.changed.notify()
        for job in queued:
            _settle(job, ProtocolError("shutting_down", "the server stopped before this query ran"))
        if self.thread.ident is not None:
            self.thread.join(timeout=60)

    def _drop_abandoned(self) -> None:  # with self.changed held
        if any(job.abandoned for job in self.jobs):
            self.jobs = deque(job for job in self.jobs if not job.abandoned)

    def _next_batch(self) -> list[Job]:
        """Every live job waiting (up to max_batch), waiting for one if none is; [] once stopping."""
        with self.changed:
            while True:
                self._drop_abandoned()
                if self.jobs or self.stopping:
                    break
                self.changed.wait()
            return [self.jobs.popleft() for _ in range(min(self.max_batch, len(self.jobs)))]

    def _loop(self) -> None:
        while batch := self._next_batch():
            try:
                results = self.answer([job.payload for job in batch])
            except Exception as e:  # answer() is meant to return errors, not raise them
                log.exception("query batch failed")
                results = [e] * len(batch)
            for job, result in zip(batch, results):
                _settle(job, result)


def _settle(job: Job, result: Any) -> None:
    future = job.future

    def settle() -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        log.debug("dropped a result: the event loop is closed")
