"""Requests from many callers answered in shared batches by one worker thread.

The server's HTTP handlers and the local provider's callers submit requests from any
thread or coroutine; one thread owns the model and answers them. Each turn it takes the
oldest waiting submission and every other waiting one for the same key (the adapter
version it must be answered with), up to `max_batch` completions, and answers them in one
call. So concurrent requests share a decode loop, and a request is answered by the version
it was submitted for, whatever was promoted meanwhile.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Hashable

from .sampling import Request, Result


@dataclass
class _Submission:
    key: Hashable
    requests: list[Request]
    future: Future

    @property
    def size(self) -> int:
        return sum(r.n for r in self.requests)


class Batcher:
    def __init__(self, answer: Callable[[Hashable, list[Request]], list[Result]], *, max_batch: int,
                 name: str = "batcher"):
        self._answer = answer
        self.max_batch = max_batch
        self._waiting: list[_Submission] = []
        self._cv = threading.Condition()
        self._closed = False
        self.busy = False  # a batch is being answered
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, requests: list[Request]) -> Future:
        """A future of the requests' results, in order."""
        future: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._waiting.append(_Submission(key, list(requests), future))
            self._cv.notify()
        return future

    @property
    def waiting(self) -> int:
        with self._cv:
            return sum(s.size for s in self._waiting)

    def close(self) -> None:
        """Answer what is waiting, then stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def _take(self) -> list[_Submission]:
        """The next batch: the oldest submission and those after it with the same key, while they fit."""
        with self._cv:
            while not self._waiting and not self._closed:
                self._cv.wait()
            if not self._waiting:
                return []
            key, batch, size = self._waiting[0].key, [], 0
            for s in list(self._waiting):
                if s.key == key and (not batch or size + s.size <= self.max_batch):
                    batch.append(s)
                    size += s.size
                    self._waiting.remove(s)
            return batch

    def _run(self) -> None:
        while batch := self._take():
            batch = [s for s in batch if s.future.set_running_or_notify_cancel()]  # skip those cancelled meanwhile
            if not batch:
                continue
            self.busy = True
            try:
                results = self._answer(batch[0].key, [r for s in batch for r in s.requests])
            except BaseException as e:  # each caller gets the error; the worker goes on
                for s in batch:
                    s.future.set_exception(e)
                continue
            finally:
                self.busy = False
            at = 0
            for s in batch:
                s.future.set_result(results[at:at + len(s.requests)])
                at += len(s.requests)
