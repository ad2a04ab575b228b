"""The model behind the server: the base model, loaded once, and each committed adapter version on first use.

Which version is current is read from data/state.json, the daemon's commit point: a version
exists for the server only once a state commit names it, so an adapter the daemon was
writing when it was killed is never loaded. peft keeps several adapters on the one base
model; the worker thread of the `Batcher` answers each batch with the version its requests
were resolved to when they arrived, so requests in flight finish on the weights they
started with while new ones get the newly promoted version.

The server never trains, so where the hardware has native bf16 the base weights are
converted once (the engine then merges each batch's LoRA into bf16 copies of the few
weights it touches).
"""
from __future__ import annotations

import copy
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path

import torch

from core.adapters import AdapterStore
from core.config import Config
from core.events import EventLog
from core.models import load_adapter
from core.state import TrainingState
from inference.batching import Batcher
from inference.loading import load_base
from inference.requests import Result
from inference.sampling import SamplingEngine
from inference.weights import decode_dtype


def without_paths(text: str, root: Path) -> str:
    """A message for clients: paths under the root relative to it, any other absolute path cut to its last part
    (the log keeps the whole message; a client learns nothing of the machine's folders)."""
    text = text.replace(str(Path(root).resolve()) + os.sep, "").replace(str(root) + os.sep, "")
    return re.sub(r"(?<![\w.~:/])/(?:[^\s/:'\"]+/)*([^\s/:'\"]+)", r".../\1", text)


class UnknownModel(LookupError):
    pass


class ModelHost:
    def __init__(self, config: Config, root: Path, events: EventLog):
        self.config, self.root, self.events = config, Path(root), events
        self.ready = threading.Event()
        self.error: str | None = None  # why loading failed, without local paths (the server answers 503 with it)
        self.engine: SamplingEngine | None = None
        self.counter: SamplingEngine | None = None  # prompt lengths, on the event loop's thread (own tokenizer)
        self.batcher: Batcher | None = None
        self.context = 0  # the model's context length, in tokens
        self.vocab = 0  # token ids a prompt may hold: 0 to vocab - 1
        self.loaded: list[str] = []  # adapter versions held by the model
        self.answered: Counter = Counter()  # requests answered per version
        self.finished: Counter = Counter()  # completions by how they ended (a client that left: "cancelled")
        self.started = time.time()
        self._current: str | None = None  # the current version last seen, to log a swap once

    # -- loading (in a thread: the server answers 503 meanwhile) -------------------------------------------

    def load(self) -> None:
        try:
            config = self.config
            base = load_base(config, self.root)
            self.model_path, model, tokenizer, use_template, plan = (base.path, base.model, base.tokenizer,
                                                                     base.use_template, base.plan)
            dtype = decode_dtype(model) if config.serve.dtype == "auto" else getattr(torch, config.serve.dtype)
            if dtype == next(model.parameters()).dtype:
                dtype = None
            for p in model.parameters():  # buffers (rotary frequencies) keep their precision
                if dtype is not None:
                    p.data = p.data.to(dtype)
            model.eval()
            self.engine = SamplingEngine(model, tokenizer, use_template=use_template,
                                         max_batch=config.serve.max_batch, dtype=None)
            self.counter = SamplingEngine(model, copy.deepcopy(tokenizer), use_template=use_template, dtype=None)
            self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
            self.vocab = model.get_input_embeddings().num_embeddings
            self.batcher = Batcher(self._answer, max_batch=config.serve.max_batch, name="serve-batcher")
            self.events.emit("serve", f"model {config.model.name_or_path} loaded on {plan.device} "
                             f"({str(next(model.parameters()).dtype).removeprefix('torch.')} weights); "
                             f"current adapter {self.current()}", device=plan.device)
            self.ready.set()
        except Exception as e:  # the server stays up and says why
            self.events.emit("error", f"serve: the model did not load: {type(e).__name__}: {e}")
            self.error = without_paths(f"{type(e).__name__}: {e}", self.root)

    # -- which version ---------------------------------------------------------------------------------

    def state(self) -> TrainingState:
        return TrainingState.load(self.root / "data" / "state.json")

    def current(self, state: TrainingState | None = None) -> str:
        version = (state or self.state()).current_adapter or "base"
        if version != self._current:
            if self._current is not None:
                self.events.emit("serve", f"now serving {version} as current (was {self._current})", adapter=version)
            self._current = version
        return version

    def versions(self, state: TrainingState | None = None) -> list[str]:
        """Committed versions still on disk, oldest first."""
        store = AdapterStore(self.root / "data" / "adapters")
        return [v for v in (state or self.state()).versions if store.path(v).is_dir()]

    def resolve(self, name: str) -> str:
        """The version a request for model `name` is answered with: 'current' (or the base model's own name)
        -> the current version; 'base'; or a committed version such as 'v0003'."""
        state = self.state()
        if name in ("current", self.config.model.name_or_path):
            return self.current(state)
        if name == "base" or name in self.versions(state):
            return name
        raise UnknownModel(name)

    def models(self) -> list[dict]:
        state = self.state()
        current = self.current(state)
        entries = [("current", current), ("base", "base"), *((v, v) for v in reversed(self.versions(state)))]
        return [{"id": name, "object": "model", "created": int(self.started), "owned_by": "selfcorrect-daemon",
                 "root": version, "parent": None if version == "base" else "base"} for name, version in entries]

    # -- answering (the batcher's worker thread only) -----------------------------------------------------

    def _answer(self, version: str, take, deliver) -> None:
        """One run of the engine with this version's weights, for as long as its requests keep coming."""
        from peft import PeftModel

        def counted(ticket, result: Result) -> None:
            self.answered[version] += 1
            self.finished.update(c.finish_reason for c in result.completions)
            deliver(ticket, result)

        engine = self.engine
        if version == "base":
            if isinstance(engine.model, PeftModel):
                with engine.model.disable_adapter():
                    return engine.run(take, counted)
            return engine.run(take, counted)
        if version not in self.loaded:
            path = AdapterStore(self.root / "data" / "adapters").path(version)
            engine.model = load_adapter(engine.model, path, model_path=self.model_path, trainable=False, name=version)
            engine.model.eval()
            self.loaded.append(version)
            self.events.emit("serve", f"loaded adapter {version}", adapter=version)
        engine.model.set_adapter(version)
        self._forget(keep={version, self._current})
        return engine.run(take, counted)

    def _forget(self, keep: set) -> None:
        """Drop adapters the daemon no longer keeps on disk (pruned), so memory does not grow with versions."""
        committed = set(self.versions())
        for version in [v for v in self.loaded if v not in keep and v not in committed]:
            self.engine.model.delete_adapter(version)
            self.loaded.remove(version)
