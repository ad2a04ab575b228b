"""`serve.notify_vllm_url`: a vLLM server told of each promoted adapter, so a fleet serves the newest one.

On each `done` event whose adapter was promoted, a background thread posts
`{"lora_name": "<prefix>-<version>", "lora_path": ...}` to the server's
`/v1/load_lora_adapter` (vLLM's dynamic LoRA loading; the server needs
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`). Each version gets its own name, never a reload
of one name: vLLM has reused stale prefix-cache blocks after a same-name reload
(vllm#42125). Then the versions it loaded beyond `training.keep_versions` are unloaded
(`/v1/unload_lora_adapter`), so a long-running daemon never fills vLLM's LoRA slots (`--max-loras`,
`--max-cpu-loras`); what it holds is kept in data/vllm.json and shown by `selfcorrect status`. A failed call
is logged and retried with backoff; training never waits for it. Rejected versions are never loaded.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from core.events import EventLog
from core.fsutil import atomic_write_json

ATTEMPTS = 5
FIRST_WAIT = 2.0  # seconds before the first retry; doubled each time


class VLLMNotifier:
    def __init__(self, url: str, prefix: str, adapters: Path, events: EventLog, *, keep: int, record: Path,
                 first_wait: float = FIRST_WAIT):
        """`keep`: how many of the versions this root loaded stay loaded (training.keep_versions); `record`: where
        their names are kept (data/vllm.json), so a restarted daemon still unloads what an earlier one loaded."""
        self.base = url.rstrip("/").removesuffix("/v1") + "/v1/"
        self.endpoint = self.base + "load_lora_adapter"
        self.prefix, self.adapters, self.events, self.first_wait = prefix, Path(adapters).resolve(), events, first_wait
        self.keep, self.record = keep, Path(record)
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def on_event(self, record: dict) -> None:
        if record["event"] == "done" and record.get("promoted") and record.get("adapter"):
            thread = threading.Thread(target=self.load, args=(record["adapter"],), name="vllm-notify", daemon=True)
            self.threads.append(thread)
            thread.start()

    def wait(self, timeout: float) -> None:
        """Give calls in flight up to `timeout` seconds to end (before the process exits)."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def held(self) -> list[str]:
        """The names this root loaded into vLLM and has not unloaded, oldest first."""
        try:
            return list(json.loads(self.record.read_text())["loaded"])
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _hold(self, name: str, *, loaded: bool) -> None:
        with self.lock:
            names = [n for n in self.held() if n != name] + ([name] if loaded else [])
            atomic_write_json(self.record, {"url": self.base, "loaded": names})

    def load(self, version: str) -> bool:
        """Load the version under its own name, then unload the loaded versions beyond `keep`."""
        name = f"{self.prefix}-{version}"
        if not self._post("load_lora_adapter", {"lora_name": name, "lora_path": str(self.adapters / version)},
                          what=f"load {name}", version=version):
            return False
        self.events.emit("vllm", f"{self.endpoint}: loaded adapter {version} as {name}", adapter=version,
                         lora_name=name)
        self._hold(name, loaded=True)
        for old in self.held()[:-self.keep]:
            if self._post("unload_lora_adapter", {"lora_name": old}, what=f"unload {old}", version=version,
                          gone_ok=True):
                self._hold(old, loaded=False)
                self.events.emit("vllm", f"{self.base}: unloaded {old} (training.keep_versions "
                                 f"{self.keep})", lora_name=old)
        return True

    def _post(self, path: str, body: dict, *, what: str, version: str, gone_ok: bool = False) -> bool:
        """One call, retried with backoff on server errors and timeouts; `gone_ok`: a 404 means done already."""
        wait = self.first_wait
        for attempt in range(1, ATTEMPTS + 1):
            request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                return True
            except urllib.error.HTTPError as e:
                if gone_ok and e.code == 404:
                    return True
                reason = f"HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
                final = e.code < 500 and e.code not in (408, 429)  # the request itself is refused: asking again won't help
            except (OSError, ValueError) as e:
                reason, final = f"{type(e).__name__}: {e}", False
            last = final or attempt == ATTEMPTS
            self.events.emit("error", f"vLLM at {self.base + path} did not {what} ({reason}); "
                             + ("giving up; do it by hand" if last else f"retrying in {wait:.0f}s"),
                             adapter=version)
            if not last:
                time.sleep(wait)
                wait *= 2
        return False


def attach_vllm_notifier(config, root: Path, events: EventLog) -> VLLMNotifier | None:
    """The notifier as a listener of the events, when serve.notify_vllm_url is set."""
    if not config.serve.notify_vllm_url:
        return None
    notifier = VLLMNotifier(config.serve.notify_vllm_url, config.serve.vllm_lora_prefix,
                            Path(root) / "data" / "adapters", events, keep=config.training.keep_versions,
                            record=Path(root) / "data" / "vllm.json")
    events.listeners.append(notifier.on_event)
    return notifier
