"""`serve.notify_vllm_url`: a vLLM server told of each promoted adapter, so a fleet serves the newest one.

On each `done` event whose adapter was promoted, a background thread posts
`{"lora_name": "<prefix>-<version>", "lora_path": ...}` to the server's
`/v1/load_lora_adapter` (vLLM's dynamic LoRA loading; the server needs
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`). Each version gets its own name, never a reload
of one name: vLLM has reused stale prefix-cache blocks after a same-name reload
(vllm#42125). A failed call is logged and retried with backoff; training never waits for it.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from core.events import EventLog

ATTEMPTS = 5
FIRST_WAIT = 2.0  # seconds before the first retry; doubled each time


class VLLMNotifier:
    def __init__(self, url: str, prefix: str, adapters: Path, events: EventLog, *, first_wait: float = FIRST_WAIT):
        self.endpoint = url.rstrip("/").removesuffix("/v1") + "/v1/load_lora_adapter"
        self.prefix, self.adapters, self.events, self.first_wait = prefix, Path(adapters).resolve(), events, first_wait
        self.threads: list[threading.Thread] = []

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

    def load(self, version: str) -> bool:
        name = f"{self.prefix}-{version}"
        body = json.dumps({"lora_name": name, "lora_path": str(self.adapters / version)}).encode()
        wait = self.first_wait
        for attempt in range(1, ATTEMPTS + 1):
            request = urllib.request.Request(self.endpoint, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                self.events.emit("vllm", f"{self.endpoint}: loaded adapter {version} as {name}", adapter=version,
                                 lora_name=name)
                return True
            except urllib.error.HTTPError as e:
                reason = f"HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
                final = e.code < 500 and e.code not in (408, 429)  # the request itself is refused: asking again won't help
            except (OSError, ValueError) as e:
                reason, final = f"{type(e).__name__}: {e}", False
            last = final or attempt == ATTEMPTS
            self.events.emit("error", f"vLLM at {self.endpoint} did not load {name} ({reason}); "
                             + ("giving up; load it by hand" if last else f"retrying in {wait:.0f}s"),
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
                            Path(root) / "data" / "adapters", events)
    events.listeners.append(notifier.on_event)
    return notifier
