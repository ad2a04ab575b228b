"""Serving under load: concurrent clients against `train.py --serve`, against the same requests one at a time.

    python bench/serve_load.py [--clients 16] [--requests 48] [--max-tokens 48] [--model smollm2-135m-instruct]

1. A root with two adapter versions of the model, each trained by a real one-shot run on 8 examples; only the
   first is committed when the server starts.
2. One at a time: the requests (short chat questions, greedy, `max_tokens` each) sent one after another.
3. Concurrent: the same requests from `--clients` threads at once. Half-way through, the second version is
   committed (state.json renamed over, as the daemon commits): no request may fail, and answers from both
   versions are counted.
Prints requests/s, p50/p95 latency and output tokens/s of each arm and the ratio. Run it alone (two torch
processes on 2 cores slow each other by up to 7x). Loopback only. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.generation_speed import processor  # noqa: E402


def post(url: str, body: dict) -> tuple[int, dict, float]:
    started = time.perf_counter()
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read()), time.perf_counter() - started
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), time.perf_counter() - started


def summary(latencies: list[float], tokens: int, seconds: float) -> dict:
    ordered = sorted(latencies)
    return {"requests_per_s": round(len(latencies) / seconds, 3), "seconds": round(seconds, 2),
            "p50_latency_s": round(statistics.median(ordered), 3),
            "p95_latency_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
            "output_tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--model", default="smollm2-135m-instruct")
    args = p.parse_args()

    from core.synthetic import integer_sums

    root = Path(tempfile.mkdtemp(prefix="serve-load-"))
    config = {"model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
              "training": {"batch_size": 4, "logging_steps": 1, "promotion": {"enabled": False}},
              "serve": {"max_batch": args.clients}}
    (root / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, seed in (("a", 1), ("b", 2)):
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in integer_sums(8, seed=seed)))
        subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(root / "config.json"), str(data)],
                       cwd=root, env=env, check=True, capture_output=True)
        shutil.copy(root / "data" / "state.json", root / f"state.after-{name}.json")
    shutil.copy(root / "state.after-a.json", root / "data" / "state.json")

    out = open(root / "serve.out", "wb")
    server = subprocess.Popen([sys.executable, str(REPO / "train.py"), "--config", str(root / "config.json"),
                               "--serve", "--port", "0"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not (m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", (root / "serve.out").read_text())):
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start:\n{(root / 'serve.out').read_text()}")
            time.sleep(0.2)
        base = f"http://127.0.0.1:{m.group(1)}"
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        url = base + "/v1/chat/completions"
        bodies = [{"messages": [{"role": "user", "content": f"What is {7 * k + 3} plus {11 * k + 5}? Answer briefly."}],
                   "temperature": 0, "max_tokens": args.max_tokens} for k in range(args.requests)]
        post(url, bodies[0])  # warm-up: the first adapter loaded, first batch shapes

        started = time.perf_counter()
        single = [post(url, b) for b in bodies]
        single_s = time.perf_counter() - started

        def swap():
            time.sleep(single_s / len(bodies) * 2)  # a little into the load
            tmp = root / "data" / "state.json.tmp"
            shutil.copy(root / "state.after-b.json", tmp)
            os.replace(tmp, root / "data" / "state.json")

        swapper = threading.Thread(target=swap)
        started = time.perf_counter()
        swapper.start()
        with ThreadPoolExecutor(args.clients) as pool:
            concurrent = list(pool.map(lambda b: post(url, b), bodies))
        concurrent_s = time.perf_counter() - started
        swapper.join()
    finally:
        server.kill()
        server.wait()

    def tokens(results):
        return sum(r["usage"]["completion_tokens"] for code, r, _ in results if code == 200)

    failed = sum(1 for code, _, _ in single + concurrent if code != 200)
    versions = {}
    for code, r, _ in concurrent:
        if code == 200:
            versions[r["model"]] = versions.get(r["model"], 0) + 1
    one = summary([t for _, _, t in single], tokens(single), single_s)
    many = summary([t for _, _, t in concurrent], tokens(concurrent), concurrent_s)
    ratio = many["requests_per_s"] / one["requests_per_s"]
    print(f"processor: {processor()}; model {args.model}; {args.requests} requests of up to {args.max_tokens} tokens")
    print(f"one at a time:      {one}")
    print(f"{args.clients} clients at once: {many}")
    print(f"throughput ratio {ratio:.2f}x; answered by {versions} (v0002 committed mid-load); failed {failed}")
    print(json.dumps({"processor": processor(), "model": args.model, "clients": args.clients,
                      "requests": args.requests, "max_tokens": args.max_tokens, "one_at_a_time": one,
                      "concurrent": many, "throughput_ratio": round(ratio, 2), "answered_by": versions,
                      "failed_requests": failed}))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
