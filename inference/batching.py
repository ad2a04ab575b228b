"""Requests from many callers answered together by one worker thread, with continuous batching.

The server's HTTP handlers and the local provider's callers submit requests from any thread
or coroutine; one thread owns the model and answers them through the engine's `run`, which
asks for more work whenever completion slots are free. A submission is taken whole, and
only while it has the key (the adapter version it must be answered with) of the run in
progress and no submission for another key waits before it; that one gets the next run. So
concurrent requests share the decode loop, each request is answered by the version it was
submitted for, whatever was promoted meanwhile, and no version waits behind an endless stream
of another's requests.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Hashable

from .requests import Request, Result

Take = Callable[[int], list[tuple[object, Request]]]
Deliver = Callable[[object, Result], None]


@dataclass
class _Submission:
    key: Hashable
    requests: list[Request]
    future: Future
    results: list = field(default_factory=list)
    left: int = 0

    @property
    def size(self) -> int:
        return sum(r.n for r in self.requests)


class Batcher:
    def __init__(self, run: Callable[[Hashable, Take, Deliver], None], *, max_batch: int, name: str = "batcher"):
        self._run_key = run  # run(key, take, deliver): answer what take() gives, for this key
        self.max_batch = max_batch
        self._waiting: list[_Submission] = []
        self._cv = threading.Condition()
        self._closed = False
        self.busy = False  # a run is in progress
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, requests: list[Request]) -> Future:
        """A future of the requests' results, in order."""
        future: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._waiting.append(_Submission(key, list(requests), future, [None] * len(requests), len(requests)))
            self._cv.notify()
        return future

    @property
    def waiting(self) -> int:
        """Completions submitted and not yet taken."""
        with self._cv:
            return sum(s.size for s in self._waiting)

    def close(self) -> None:
        """Answer what is waiting, then stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    def _next_key(self):
        with self._cv:
            while not self._waiting and not self._closed:
                self._cv.wait()
            return (self._waiting[0].key,) if self._waiting else None

    def _work(self) -> None:
        while (next_key := self._next_key()) is not None:
            key, taken = next_key[0], []

            def take(free: int) -> list[tuple[object, Request]]:
                out = []
                with self._cv:
                    while self._waiting and self._waiting[0].key == key:
                        s = self._waiting[0]
                        if s.size > free and (out or free < self.max_batch):
                            break  # it waits for room; one larger than a batch goes alone
                        self._waiting.pop(0)
                        if not s.future.set_running_or_notify_cancel():
                            continue  # its caller gave up before it started
                        taken.append(s)
                        out += [((s, i), r) for i, r in enumerate(s.requests)]
                        free -= s.size
                return out

            def deliver(ticket, result: Result) -> None:
                s, i = ticket
                s.results[i] = result
                s.left -= 1
                if s.left == 0:
                    s.future.set_result(s.results)

            self.busy = True
            try:
                self._run_key(key, take, deliver)
            except BaseException as e:  # each caller still waiting gets the error; the worker goes on
                for s in taken:
                    if not s.future.done():
                        s.future.set_exception(e)
            finally:
                self.busy = False
            for s in taken:  # a run that returned without answering everything it took is a bug: say so
                if not s.future.done():
                    s.future.set_exception(RuntimeError(f"{s.left} request(s) taken but never answered"))
